// Drives Debian's chromium (headless, through puppeteer-core) through orq's dashboard; run by
// tests/dashboard_test.cc with the broker up. Environment: ORQ (the binary), ORQ_HOME (its home),
// DASHBOARD_URL (the login URL `orq dashboard` prints, with its token), SCREENSHOTS (a
// directory), CHROMIUM (the browser). Exits 0 when every check holds; otherwise prints the check
// that failed and exits 1.
import { execFileSync } from "node:child_process";
import puppeteer from "puppeteer-core";

const { ORQ, DASHBOARD_URL: url, SCREENSHOTS: shots, CHROMIUM } = process.env;
const base = url.split("?")[0];  // the page, once the login URL has given the browser its cookie
// (stdin /dev/null: a command with no ::: does not read its arguments from it)
const orq = (...args) =>
  execFileSync(ORQ, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
const step = (what) => console.log(`-- ${what}`);
// The page redraws its tables as the broker's events arrive, so an element found by one call may
// be replaced before the next one clicks it ("Node is detached from document"). This finds and
// clicks it in one turn of the page's own loop, waiting until it is there.
const clickWhenThere = (page, selector) =>
  page.waitForFunction((s) => {
    const element = document.querySelector(s);
    if (!element) return false;
    element.click();
    return true;
  }, { polling: 100 }, selector);

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const errors = [];
let failed = false;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.setDefaultTimeout(60000);

  step("the login URL opens the overview, which lists both workers, and leaves no token in view");
  await page.goto(url, { waitUntil: "load" });
  if (page.url() !== base) throw new Error(`the login URL left the browser at ${page.url()}`);
  await page.waitForFunction(() => document.querySelectorAll("#workers tbody tr").length === 2);

  step("a job with failures runs to its end on the page");
  const quick = orq("submit", "--", "sh", "-c",
    "sleep 0.4; echo out {}; echo 'trouble in {}' >&2; exit $(({} % 3 == 0))",
    ":::", "1", "2", "3", "4", "5", "6");
  const long = orq("submit", "--", "sleep", "300");

  await page.waitForFunction((job) => {
    const row = document.querySelector(`#jobs tr[data-job="${job}"]`);
    return row && row.cells[3].textContent === "6 / 6";
  }, { polling: 100 }, quick);
  const bar = await page.$$eval(`#jobs tr[data-job="${quick}"] .bar span`, (spans) => spans.map((s) => s.className));
  if (!bar.includes("ok") || !bar.includes("failed")) throw new Error(`the progress bar of ${quick} is ${bar}`);

  step("the task stream draws a bar per task");
  await page.waitForFunction(() => Number(document.getElementById("stream").dataset.bars || 0) >= 7);
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });

  step("clicking a failed task shows its stderr");
  await clickWhenThere(page, `#jobs tr[data-job="${quick}"] td`);
  await page.waitForSelector("#jobpage:not([hidden]) #tasks tbody tr");
  await page.select("#filter", "failed");
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#tasks tbody tr")];
    return rows.length === 2 && rows.every((r) => r.cells[1].textContent === "failed");
  });
  await clickWhenThere(page, "#tasks tbody tr td");
  await page.waitForFunction(() => /trouble in 3/.test(document.getElementById("output").textContent));
  await page.screenshot({ path: `${shots}/job.png`, fullPage: true });

  step("cancelling the running job from the page (confirmed) cancels it");
  await page.goto(base + "#/", { waitUntil: "load" });
  await clickWhenThere(page, `#jobs button[data-job="${long}"]`);
  await page.waitForSelector("#confirm[open]");
  await page.click("#confirm-yes");
  const deadline = Date.now() + 30000;
  for (;;) {
    const status = JSON.parse(orq("status", "--json", long));
    if (status.cancelled === 1) break;
    if (Date.now() > deadline) throw new Error(`orq status ${long}: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.waitForFunction((job) => !document.querySelector(`#jobs button[data-job="${job}"]`), {}, long);

  step("no errors on the console");
  if (errors.length) throw new Error(`console errors: ${errors.join(" | ")}`);
  step("ok");
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  if (errors.length) console.error(`console errors: ${errors.join(" | ")}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
