// orq's dashboard: the overview (workers, jobs, throughput, the task stream, limits and locks)
// and a job page (its tasks, a task's output and why it waits). It reads /api/v1 (the shapes of
// `orq ... --json`) once a second and follows /api/v1/stream (Server-Sent Events) for the task
// stream. Everything it keeps is bounded, so a page open for hours stays as small as at first.
"use strict";

const HISTORY = 300;        // samples of throughput and queue length: 5 minutes at 1 s
const STREAM_WINDOW = 120;  // seconds of the task stream drawn
const MAX_BARS = 20000;     // bars kept for it, at most
const PAGE = 100;           // tasks per page of the job page

const $ = (id) => document.getElementById(id);
const state = {
  csrf: "", status: null, jobs: [], history: [], lastFinished: null, lastAt: 0,
  bars: [], open: new Map(), lanes: new Map(), after: 0, source: null,
  job: null, filter: "all", cursor: 0, cursors: [], selected: null, labels: new Map(),
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "on") for (const [e, f] of Object.entries(v)) node.addEventListener(e, f);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function age(seconds) {
  if (seconds == null || seconds < 0) return "";
  seconds = Math.round(seconds);
  if (seconds < 60) return seconds + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m" + String(seconds % 60).padStart(2, "0") + "s";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h" + String(Math.floor(seconds / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(seconds / 86400) + "d" + String(Math.floor(seconds / 3600) % 24).padStart(2, "0") + "h";
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { showLogin(); throw new Error("the dashboard needs its token"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path) {
  return api(path, { method: "POST", headers: { "X-Orq-Csrf": state.csrf } });
}

function ask(text) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

// ---- the token

function showLogin() {
  $("login").hidden = false;
  $("overview").hidden = true;
  $("jobpage").hidden = true;
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const response = await fetch("/api/v1/login", { method: "POST", body: $("token").value });
  if (response.ok) location.reload();
  else $("login-error").textContent = "that is not this dashboard's token";
});

// ---- the overview

function progress(job, big) {
  const bar = el("div", { class: "bar" + (big ? " big" : "") });
  const total = Math.max(job.tasks, 1);
  for (const part of ["ok", "failed", "cancelled", "running", "queued", "delayed", "waiting"]) {
    if (!job[part]) continue;
    const span = el("span", { class: part, title: job[part] + " " + part });
    span.style.width = (100 * job[part] / total) + "%";
    bar.append(span);
  }
  return bar;
}

function renderCounts(s) {
  const dl = $("counts");
  dl.replaceChildren();
  for (const [name, value] of Object.entries(s.tasks)) dl.append(el("dt", {}, name), el("dd", {}, value));
}

function renderWorkers(s) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  for (const w of s.workers) {
    const slots = w.slots.cpu + w.slots.shell;  // (async slots are thousands: timers, not cores)
    const resources = Object.entries(w.resources || {}).map(([k, v]) => k + "=" + v).join(", ");
    body.append(el("tr", {}, el("td", {}, w.host), el("td", {}, w.remote ? "remote" : "local"),
      el("td", {}, w.pid), el("td", { title: "async slots: " + w.slots.async }, w.running + " / " + slots),
      el("td", {}, resources),
      el("td", {}, age(w.last_heard) + " ago"), el("td", {}, w.done), el("td", {}, w.failed)));
  }
}

function renderJobs() {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const j of [...state.jobs].reverse().slice(0, 50)) {
    const done = j.ok + j.failed + j.cancelled;
    const actions = el("td");
    if (!j.finished) {
      actions.append(el("button", { class: "danger", "data-job": j.id, on: { click: async (e) => {
        e.stopPropagation();
        if (await ask("Cancel job " + j.id + " (" + (j.tasks - done) + " tasks not finished)?")) {
          await post("/api/v1/jobs/" + j.id + "/cancel").catch(report);
          refresh();
        }
      } } }, "cancel"));
    }
    const row = el("tr", { class: "link", "data-job": j.id, on: { click: () => { location.hash = "#/job/" + j.id; } } },
      el("td", {}, j.id), el("td", { class: "cmd", title: j.command }, j.command),
      el("td", {}, progress(j)), el("td", {}, done + " / " + j.tasks),
      el("td", {}, j.eta != null ? age(j.eta) : ""), el("td", {}, age(j.age)), actions);
    body.append(row);
  }
}

function renderGates(s) {
  const body = $("gates").tBodies[0];
  body.replaceChildren();
  for (const l of s.limits)
    body.append(el("tr", {}, el("td", {}, l.name), el("td", {}, "limit"),
      el("td", {}, l.running + (l.max != null ? " / " + l.max : "")), el("td", {}, l.holders.join(" ")),
      el("td", {}, l.waiting)));
  for (const l of s.locks)
    body.append(el("tr", {}, el("td", {}, l.name), el("td", {}, "lock (" + (l.mode || "free") + ")"),
      el("td", {}, l.held), el("td", {}, l.holders.join(" ")), el("td", {}, l.waiting)));
  if (!s.limits.length && !s.locks.length)
    body.append(el("tr", {}, el("td", { colspan: 5 }, "none (orq limit set NAME N; tasks' locks show here while held)")));
}

function sample(s) {
  const now = Date.now() / 1000;
  const finished = s.metrics.tasks_finished;
  let rate = 0;
  if (state.lastFinished != null && now > state.lastAt) rate = Math.max(0, finished - state.lastFinished) / (now - state.lastAt);
  state.lastFinished = finished;
  state.lastAt = now;
  state.history.push({ at: now, rate, queued: s.tasks.queued });
  if (state.history.length > HISTORY) state.history.shift();
}

function renderChart() {
  const svg = $("chart");
  const h = state.history;
  svg.replaceChildren();
  if (h.length < 2) return;
  const maxRate = Math.max(1, ...h.map((p) => p.rate));
  const maxQueued = Math.max(1, ...h.map((p) => p.queued));
  const x = (i) => 600 * i / (HISTORY - 1) + 600 * (HISTORY - h.length) / (HISTORY - 1);
  const line = (key, max, color) => {
    const points = h.map((p, i) => x(i).toFixed(1) + "," + (135 - 125 * p[key] / max).toFixed(1)).join(" ");
    const ns = "http://www.w3.org/2000/svg";
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("points", points);
    poly.setAttribute("fill", "none");
    poly.setAttribute("stroke", color);
    poly.setAttribute("stroke-width", "2");
    poly.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(poly);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4");
    label.setAttribute("y", key === "rate" ? "14" : "28");
    label.setAttribute("font-size", "11");
    label.setAttribute("fill", color);
    label.textContent = (key === "rate" ? "max " + max.toFixed(1) + "/s" : "max " + max + " queued");
    svg.append(label);
  };
  line("rate", maxRate, "#2e9d5b");
  line("queued", maxQueued, "#c28a00");
}

// ---- the task stream: a bar per task attempt, on its worker's slot rows

const KIND_COLORS = { sleep: "#7dd3fc", echo: "#a5b4fc", cpu: "#fbbf24", shell: "#60a5fa" };

function laneFor(worker) {
  // One row per slot of each worker: a task takes the first free row of its worker.
  let w = state.lanes.get(worker);
  if (!w) { w = { busy: [] }; state.lanes.set(worker, w); }
  let i = w.busy.indexOf(false);
  if (i < 0) { i = w.busy.length; w.busy.push(false); }
  w.busy[i] = true;
  return i;
}

function onEvent(e) {
  state.after = Math.max(state.after, e.seq);
  if (e.event === "task_started") {
    const bar = { id: e.id, kind: e.kind, worker: e.worker, attempt: e.attempt, start: e.time, end: null, status: null };
    bar.lane = laneFor(e.worker);
    state.open.set(e.id + "#" + e.attempt, bar);
    state.bars.push(bar);
    if (state.bars.length > MAX_BARS) state.bars.splice(0, state.bars.length - MAX_BARS);
  } else if (e.event === "task_ended") {
    const bar = state.open.get(e.id + "#" + e.attempt);
    if (bar) {
      bar.end = e.time;
      bar.status = e.status;
      state.open.delete(e.id + "#" + e.attempt);
      const w = state.lanes.get(bar.worker);
      if (w) w.busy[bar.lane] = false;
    }
  } else if (e.event === "worker_left") {
    for (const [key, bar] of state.open) {
      if (bar.worker === e.worker) { bar.end = e.time; bar.status = "worker_lost"; state.open.delete(key); }
    }
    state.lanes.delete(e.worker);
  }
}

function rows() {
  // Rows in worker order: each worker as many as its cpu and shell slots, or as it has used.
  const order = [];
  for (const w of state.status ? state.status.workers : []) {
    const used = state.lanes.has(w.pid) ? state.lanes.get(w.pid).busy.length : 0;
    order.push([w.pid, Math.min(Math.max(used, w.slots.cpu + w.slots.shell, 1), 60)]);
  }
  return order;
}

function drawStream() {
  const canvas = $("stream");
  const layout = rows();
  const rowH = 10;
  const lanes = layout.reduce((n, [, k]) => n + k, 0);
  const height = Math.max(40, Math.min(lanes, 60) * rowH + 10);
  const width = canvas.clientWidth || 800;
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const now = Date.now() / 1000;
  const from = now - STREAM_WINDOW;
  // Bars that ended before the window go (bounded memory), wherever they are: a long task still
  // running does not keep those behind it.
  if (state.bars.length && state.bars[0].start < from)
    state.bars = state.bars.filter((b) => b.end == null || b.end >= from);
  const top = new Map();
  let y = 5;
  for (const [pid, k] of layout) { top.set(pid, y); y += k * rowH; ctx.fillStyle = "#e3e6eb"; ctx.fillRect(0, y - 1, width, 1); }
  state.drawn = [];
  for (const bar of state.bars) {
    const base = top.get(bar.worker);
    if (base == null) continue;
    const end = bar.end != null ? bar.end : now;
    if (end < from) continue;
    const x0 = Math.max(0, (bar.start - from) / STREAM_WINDOW * width);
    const x1 = Math.max(x0 + 2, (end - from) / STREAM_WINDOW * width);
    const y0 = base + (bar.lane % 60) * rowH;
    ctx.fillStyle = bar.status && bar.status !== "ok" ? "#d64545" : (KIND_COLORS[bar.kind] || "#60a5fa");
    ctx.fillRect(x0, y0 + 1, x1 - x0, rowH - 2);
    if (bar.end == null) { ctx.fillStyle = "#1d4ed8"; ctx.fillRect(x1 - 2, y0 + 1, 2, rowH - 2); }
    state.drawn.push([x0, y0, x1, y0 + rowH, bar]);
  }
  $("stream").dataset.bars = String(state.drawn.length);
}

async function labelOf(id) {
  if (state.labels.has(id)) return state.labels.get(id);
  const [job, index] = id.split(".");
  state.labels.set(id, "…");
  if (state.labels.size > 500) state.labels.delete(state.labels.keys().next().value);
  try {
    const page = await api("/api/v1/jobs/" + job + "/tasks?from=" + index + "&limit=1");
    state.labels.set(id, page.tasks.length ? page.tasks[0].command : "");
  } catch (e) { state.labels.set(id, ""); }
  return state.labels.get(id);
}

$("stream").addEventListener("mousemove", async (e) => {
  const rect = e.target.getBoundingClientRect();
  const x = (e.clientX - rect.left) * (e.target.width / rect.width);
  const y = (e.clientY - rect.top) * (e.target.height / rect.height);
  const hit = (state.drawn || []).find(([x0, y0, x1, y1]) => x >= x0 && x <= x1 && y >= y0 && y <= y1);
  const tip = $("tip");
  if (!hit) { tip.hidden = true; return; }
  const bar = hit[4];
  const duration = ((bar.end != null ? bar.end : Date.now() / 1000) - bar.start).toFixed(2) + " s";
  const show = (label) => {
    tip.textContent = bar.id + "  " + bar.kind + (label ? "\n" + label : "") + "\nattempt " + bar.attempt +
      ", worker " + bar.worker + "\n" + (bar.status || "running") + ", " + duration;
  };
  show(state.labels.get(bar.id));
  tip.style.left = (e.clientX - rect.left + 12) + "px";
  tip.style.top = (e.clientY - rect.top + 12) + "px";
  tip.hidden = false;
  if (!state.labels.has(bar.id)) show(await labelOf(bar.id));
});
$("stream").addEventListener("mouseleave", () => { $("tip").hidden = true; });

function legend() {
  const box = $("stream-legend");
  for (const [kind, color] of Object.entries(KIND_COLORS)) {
    const sw = el("span", { class: "sw" });
    sw.style.background = color;
    box.append(sw, kind);
  }
  const sw = el("span", { class: "sw failed" });
  box.append(sw, "did not end ok");
}

function follow() {
  if (state.source) state.source.close();
  const source = new EventSource("/api/v1/stream?after=" + state.after);
  state.source = source;
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "badge good"; };
  source.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not an event */ } };
  source.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge bad"; };
}

// ---- the job page

function selectJob(id) {
  if (state.job !== id) { state.job = id; state.cursor = 0; state.cursors = []; state.selected = null; $("detail").hidden = true; }
}

async function renderJobPage() {
  const id = state.job;
  let job;
  try { job = await api("/api/v1/jobs/" + id); } catch (e) { $("job-title").textContent = e.message; return; }
  if (state.job !== id) return;
  const done = job.ok + job.failed + job.cancelled;
  $("job-title").textContent = job.id + " — " + job.command;
  $("job-bar").replaceWith(Object.assign(progress(job, true), { id: "job-bar" }));
  $("job-summary").textContent = done + " of " + job.tasks + " done: " + job.ok + " ok, " + job.failed + " failed, " +
    job.cancelled + " cancelled; " + job.running + " running, " + job.queued + " queued, " + job.waiting + " waiting" +
    (job.finished ? "; finished" : (job.eta != null ? "; ETA " + age(job.eta) : "")) + "; submitted " + age(job.age) + " ago";
  $("job-cancel").disabled = job.finished;
  $("job-retry").disabled = !job.finished || job.failed + job.cancelled === 0;
  const started = performance.now();
  const page = await api("/api/v1/jobs/" + id + "/tasks?state=" + state.filter + "&from=" + state.cursor + "&limit=" + PAGE);
  if (state.job !== id) return;
  const body = $("tasks").tBodies[0];
  body.replaceChildren();
  for (const t of page.tasks) {
    const duration = t.started && t.finished ? (t.finished - t.started).toFixed(2) + " s" : "";
    const row = el("tr", { class: "link" + (state.selected === t.id ? " selected" : ""), "data-task": t.id,
      on: { click: () => showTask(t) } },
      el("td", {}, t.id), el("td", {}, t.status || t.state), el("td", { class: "cmd", title: t.command }, t.command),
      el("td", {}, t.attempts), el("td", {}, t.worker || ""), el("td", {}, duration));
    body.append(row);
  }
  state.next = page.next;
  $("page-info").textContent = "tasks " + state.cursor + "–" + Math.max(state.cursor, page.next - 1) + " of " + page.size +
    " looked at (" + page.tasks.length + " shown, " + Math.round(performance.now() - started) + " ms)";
  $("prev").disabled = state.cursors.length === 0;
  $("next").disabled = page.next >= page.size;
  if (state.selected) {
    const t = page.tasks.find((x) => x.id === state.selected);
    if (t) fillTask(t);
  }
}

function fillTask(t) {
  const fields = $("detail-fields");
  fields.replaceChildren();
  const add = (k, v) => { if (v !== "" && v != null) fields.append(el("dt", {}, k), el("dd", {}, v)); };
  add("state", t.status || t.state);
  add("command", t.command);
  add("attempts", t.attempts);
  add("worker", t.worker);
  if (t.started) add("started", new Date(t.started * 1000).toLocaleTimeString());
  if (t.started && t.finished) add("duration", (t.finished - t.started).toFixed(3) + " s");
  add("after", t.after.join(" "));
  add("error", t.error);
  $("task-cancel").disabled = t.state === "finished";
}

async function showTask(t) {
  state.selected = t.id;
  for (const row of $("tasks").tBodies[0].rows) row.classList.toggle("selected", row.dataset.task === t.id);
  $("detail").hidden = false;
  $("detail-title").textContent = t.id;
  $("output").textContent = "";
  fillTask(t);
  const reasons = $("reasons");
  reasons.replaceChildren();
  if (t.state !== "finished") {
    try {
      const why = await api("/api/v1/tasks/" + t.id + "/explain");
      for (const r of why.reasons) reasons.append(el("li", {}, r));
    } catch (e) { reasons.append(el("li", {}, e.message)); }
  } else if (t.status !== "ok") {
    showOutput("stderr");
  }
}

async function showOutput(stream) {
  const id = state.selected;
  if (!id) return;
  try {
    const out = await api("/api/v1/tasks/" + id + "/logs?stream=" + stream);
    if (state.selected !== id) return;
    $("output").dataset.stream = stream;
    $("output").textContent = out.text || "(" + (out.note || "nothing on " + stream) + ")";
  } catch (e) { $("output").textContent = e.message; }
}

$("show-stdout").addEventListener("click", () => showOutput("stdout"));
$("show-stderr").addEventListener("click", () => showOutput("stderr"));
$("task-cancel").addEventListener("click", async () => {
  if (state.selected && await ask("Cancel task " + state.selected + "?")) {
    await post("/api/v1/tasks/" + state.selected + "/cancel").catch(report);
    renderJobPage();
  }
});
$("job-cancel").addEventListener("click", async () => {
  if (await ask("Cancel job " + state.job + "? Its running tasks are stopped.")) {
    await post("/api/v1/jobs/" + state.job + "/cancel").catch(report);
    renderJobPage();
  }
});
$("job-retry").addEventListener("click", async () => {
  if (await ask("Run job " + state.job + "'s failed tasks again, as a new job?")) {
    try {
      const retried = await post("/api/v1/jobs/" + state.job + "/retry");
      location.hash = "#/job/" + retried.job;
    } catch (e) { report(e); }
  }
});
$("filter").addEventListener("change", () => { state.filter = $("filter").value; state.cursor = 0; state.cursors = []; renderJobPage(); });
$("next").addEventListener("click", () => { state.cursors.push(state.cursor); state.cursor = state.next; renderJobPage(); });
$("prev").addEventListener("click", () => { state.cursor = state.cursors.pop() || 0; renderJobPage(); });

function report(e) { $("broker").textContent = "error: " + e.message; }

// ---- the loop

async function refresh() {
  try {
    const [s, j] = await Promise.all([api("/api/v1/status"), api("/api/v1/jobs")]);
    state.status = s;
    state.jobs = j.jobs;
    sample(s);
    $("broker").textContent = "broker pid " + s.broker.pid + " · " + s.workers.length + " workers · " + s.jobs + " jobs";
    $("journal").textContent = s.journal_problem ? s.journal_problem : "journal ok";
    $("journal").className = "badge " + (s.journal_problem ? "bad" : "good");
    if (!$("overview").hidden) {
      renderCounts(s); renderWorkers(s); renderJobs(); renderGates(s); renderChart();
    }
  } catch (e) {
    $("broker").textContent = "the broker does not answer (" + e.message + ")";
  }
}

function route() {
  const m = location.hash.match(/^#\/job\/(j\d+)$/);
  $("login").hidden = true;
  $("overview").hidden = !!m;
  $("jobpage").hidden = !m;
  if (m) { selectJob(m[1]); renderJobPage(); } else { state.job = null; refresh(); }
}

async function start() {
  try {
    const session = await api("/api/v1/session");
    state.csrf = session.csrf;
  } catch (e) { return; }  // (the login form shows)
  legend();
  window.addEventListener("hashchange", route);
  route();
  follow();
  setInterval(refresh, 1000);
  setInterval(() => { if (state.job && !$("jobpage").hidden) renderJobPage(); }, 2000);
  setInterval(() => { if (!$("overview").hidden && !document.hidden) drawStream(); }, 250);
}

start();
