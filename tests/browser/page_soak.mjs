// A benchmark, not a test: keeps a dashboard page open in Debian's chromium for MINUTES while work
// flows (a job of 300 short shell tasks every 10 s, a fifth of them failing), and prints the
// page's JavaScript heap (after a collection), its DOM nodes and the task-stream bars it keeps
// every 30 s: a page open for long should stay as light as at first (docs/PERFORMANCE.md, issue 21).
//   ORQ=build/orq ORQ_HOME=... DASHBOARD_URL="$(orq dashboard)" MINUTES=5 node tests/browser/page_soak.mjs
// (with `orq up -w 2 --http 0` in that ORQ_HOME).
import { execFileSync } from "node:child_process";
import puppeteer from "puppeteer-core";

const { ORQ, DASHBOARD_URL: url } = process.env;
const minutes = Number(process.env.MINUTES || 5);
const orq = (...args) =>
  execFileSync(ORQ, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--js-flags=--expose-gc"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1400, height: 1000 });
await page.goto(url, { waitUntil: "load" });
const start = Date.now();
let next = 0, sample = 0, submitted = 0;
console.log("seconds  heap_MiB  dom_nodes  bars  tasks_submitted");
while (Date.now() - start < minutes * 60000) {
  const t = (Date.now() - start) / 1000;
  if (t >= next) {
    const args = [];
    for (let i = 1; i <= 300; i++) args.push(String(i));
    orq("submit", "--", "sh", "-c", "sleep 0.0{}; exit $(({} % 5 == 0))", ":::", ...args);
    submitted += 300;
    next += 10;
  }
  if (t >= sample) {
    sample += 30;
    await page.evaluate(() => window.gc());  // what the page holds, not what awaits collection
    const m = await page.metrics();
    const bars = await page.evaluate(() => document.getElementById("stream").dataset.bars || "0");
    console.log(`${Math.round(t).toString().padStart(7)}  ${(m.JSHeapUsedSize / 1048576).toFixed(1).padStart(8)}  ${String(m.Nodes).padStart(9)}  ${bars.padStart(4)}  ${submitted}`);
  }
  await new Promise((r) => setTimeout(r, 1000));
}
await browser.close();
