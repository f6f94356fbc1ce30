// The status page: reads /api/v1 with the key the user gives; values only ever become text.
"use strict";
// Values from the API only ever become text nodes: nothing is parsed as HTML.
const REFRESH_MS = 2000;
// The key lives in this tab's session storage: it is gone when the tab closes, and "Sign out"
// forgets it at once. A key left in local storage by an older page is removed.
const STORE = "runner-key";
localStorage.removeItem(STORE);
let key = sessionStorage.getItem(STORE) || "";
let shown = null;   // the run whose detail is open
let logNext = 0;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

function runStatus(run) {
  // A dry or limited run never passes for a real one.
  return run.status + (run.mode && run.mode !== "normal" ? " (" + run.mode.replace("-", " ") + ")" : "");
}

function written(run) {
  // A dry run wrote nothing: its rows are the ones it would have written.
  return run.mode === "dry-run" ? "would " + (run.rows_would_write || 0) : run.rows_written;
}

async function api(path) {
  const response = await fetch("/api/v1" + path, { headers: { "Authorization": "Bearer " + key } });
  if (response.status === 401 || response.status === 403) {
    showSignedIn(false);
    throw new Error("the API key was refused: enter a valid key");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function when(ts) {
  // A timestamp from the API, shown in the browser's time zone.
  if (!ts) return null;
  const date = new Date(ts);
  return isNaN(date) ? ts : date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function runsPath(ref) {
  const [namespace, name] = ref.split("/");
  return "/jobs/" + encodeURIComponent(name) + "/runs?limit=10&filter=all&namespace=" + encodeURIComponent(namespace);
}

let refreshing = false;  // a slow refresh is not overlapped by the next one

function showSignedIn(signedIn) {
  document.getElementById("login").hidden = signedIn;
  document.getElementById("signout").hidden = !signedIn;
}

async function refresh() {
  if (!key) { showSignedIn(false); return; }
  if (refreshing) return;
  refreshing = true;
  try {
    const status = await api("/status");
    const agent = [status.mode === "daemon" ? "daemon running" : "read-only server",
      status.paused ? "scheduling paused" : "scheduling on",
      "revision " + status.revision + (status.git_commit ? " (git " + status.git_commit.slice(0, 12) + ")" : ""),
      status.running.length ? "running: " + status.running.join(", ") : "nothing running"];
    document.getElementById("agent").textContent = agent.join(" · ");

    const jobs = await api("/jobs");
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren();
    const runs = [];
    for (const job of jobs) {
      const row = body.insertRow();
      row.dataset.job = job.job;
      cell(row, job.job);
      const after = (job.after || []).map(t => "after " + t.job + " " + (t.when || "succeeded"));
      cell(row, [job.schedule ? job.schedule.cron + " (" + (job.schedule.timezone || "UTC") + ")" : null, ...after].filter(Boolean).join(", ") || "-");
      cell(row, when(job.next_run));
      const last = job.last_run;
      cell(row, last ? runStatus(last) + " " + when(last.finished_at || last.started_at) : null, last ? last.status : "");
      cell(row, last ? written(last) : null, "num");
      const now = [];
      if (job.running) now.push("running " + job.running.run_id);
      if (job.pending_update) now.push("update pending");
      if (job.suspended) now.push("suspended");
      cell(row, now.join(", ") || "-", job.running ? "running" : "");
      for (const run of await api(runsPath(job.job))) {
        runs.push(Object.assign({}, run, { job: job.job }));
      }
    }
    runs.sort((a, b) => (a.run_id < b.run_id ? 1 : -1));
    const runBody = document.querySelector("#runs tbody");
    runBody.replaceChildren();
    for (const run of runs.slice(0, 25)) {
      const row = runBody.insertRow();
      row.className = "run";
      row.dataset.run = run.run_id;
      cell(row, run.run_id);
      cell(row, run.job);
      cell(row, runStatus(run), run.status);
      cell(row, when(run.started_at));
      cell(row, run.seconds, "num");
      cell(row, written(run), "num");
      cell(row, run.trigger);
      row.addEventListener("click", () => { shown = run.run_id; logNext = 0; document.getElementById("log").replaceChildren(); showRun(); });
    }
    if (shown) await showRun();
    document.getElementById("error").textContent = "";
  } catch (error) {
    document.getElementById("error").textContent = error.message;
  } finally {
    refreshing = false;
  }
}

async function showRun() {
  const run = await api("/runs/" + encodeURIComponent(shown));
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = "Run " + run.run_id + " of " + run.namespace + "/" + run.job + ": " + runStatus(run) + (run.error ? " — " + run.error : "");
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren();
  for (const task of run.tasks || []) {
    const row = body.insertRow();
    cell(row, task.name); cell(row, task.status, task.status); cell(row, task.rows_read, "num");
    cell(row, task.inserted, "num"); cell(row, task.updated, "num"); cell(row, task.deleted, "num"); cell(row, task.error);
  }
  const part = await api("/runs/" + encodeURIComponent(shown) + "/log?after=" + logNext);
  const log = document.getElementById("log");
  for (const line of part.lines) {
    const div = document.createElement("div");
    const fields = Object.entries(line).filter(([k]) => !["ts", "level", "message"].includes(k)).map(([k, v]) => k + "=" + JSON.stringify(v));
    div.textContent = line.ts + " " + line.level.toUpperCase().padEnd(7) + " " + line.message + (fields.length ? "  " + fields.join(" ") : "");
    div.className = "line " + line.level;
    log.appendChild(div);
  }
  logNext = part.next;
}

document.getElementById("login").addEventListener("submit", event => {
  event.preventDefault();
  const input = document.getElementById("key");
  key = input.value.trim();
  input.value = "";
  sessionStorage.setItem(STORE, key);
  showSignedIn(true);
  refresh();
});

document.getElementById("signout").addEventListener("click", () => {
  key = "";
  sessionStorage.removeItem(STORE);
  localStorage.removeItem(STORE);
  shown = null;
  for (const id of ["jobs", "runs", "tasks"]) document.querySelector("#" + id + " tbody").replaceChildren();
  document.getElementById("log").replaceChildren();
  document.getElementById("detail").hidden = true;
  document.getElementById("agent").textContent = "signed out";
  document.getElementById("error").textContent = "";
  showSignedIn(false);
});

showSignedIn(Boolean(key));
refresh();
setInterval(refresh, REFRESH_MS);
