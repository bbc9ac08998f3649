// A job's page follows the job without reloading: it polls the job's states once a second and updates
// each task's state, times and progress; when the job ends it reloads once, to show results and figures.
(function () {
  "use strict";
  const badge = document.getElementById("job-state");
  const done = ["succeeded", "failed", "cancelled"];
  if (!badge || done.includes(badge.textContent)) return;
  const url = "/ui/jobs/" + encodeURIComponent(badge.dataset.job) + "/state.json";
  const cells = (selector, t) => document.querySelectorAll(
    selector + '[data-task="' + CSS.escape(t.task) + '"][data-party="' + CSS.escape(t.party) + '"]');
  async function poll() {
    const answer = await fetch(url, {cache: "no-store", credentials: "same-origin"});
    if (!answer.ok) { setTimeout(poll, 3000); return; }
    const job = await answer.json();
    for (const t of job.tasks) {
      for (const state of cells("span.state", t)) { state.textContent = t.state; state.className = "state " + t.state; }
      for (const cell of cells("td.when", t)) { cell.textContent = (t[cell.dataset.what] || "").slice(11, 19); }
      for (const progress of cells("span.progress", t)) {
        progress.textContent = t.total && t.state === "running" ? Math.round(100 * t.done / t.total) + "% " + t.message : "";
      }
    }
    for (const [party, state] of Object.entries(job.approvals || {})) {
      const mark = document.querySelector('span.approval[data-approval="' + CSS.escape(party) + '"]');
      if (mark) { mark.textContent = party + ": " + state; mark.className = "approval " + state; }
    }
    const byTask = {};
    for (const t of job.tasks) { (byTask[t.task] = byTask[t.task] || []).push(t.state); }
    for (const [task, states] of Object.entries(byTask)) {  // the graph's boxes: as dag.py colours them
      const state = ["failed", "cancelled", "running", "queued"].find(s => states.includes(s)) || "succeeded";
      const box = document.querySelector('g.task[data-task="' + CSS.escape(task) + '"] rect');
      if (box) box.setAttribute("class", state);
    }
    badge.textContent = job.state;
    badge.className = "state " + job.state;
    if (done.includes(job.state)) {  // every badge shows the end for a moment, then the results are drawn
      setTimeout(() => window.location.reload(), 1500);
      return;
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();

// A running task's log page follows the log: it polls the latest tail every two seconds until the run ends.
(function () {
  "use strict";
  const log = document.querySelector("pre.log[data-follow]");
  if (!log) return;
  const state = document.getElementById("log-state");
  async function poll() {
    const answer = await fetch(log.dataset.follow, {cache: "no-store", credentials: "same-origin"});
    if (answer.ok) {
      const last = await answer.json();
      log.textContent = last.log;
      if (state) { state.textContent = last.state; state.className = "state " + last.state; }
      if (last.state !== "running") return;
    }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
