// The job page follows a running job without reloading: it polls the job's states once a second and
// updates each task's state and progress; when the job ends it reloads once, to show the figures.
(function () {
  "use strict";
  const badge = document.getElementById("job-state");
  if (!badge || ["succeeded", "failed", "cancelled"].includes(badge.textContent)) return;
  const url = "/ui/jobs/" + encodeURIComponent(badge.dataset.job) + "/state.json";
  const find = (kind, t) => document.querySelector(
    kind + '[data-task="' + CSS.escape(t.task) + '"][data-party="' + CSS.escape(t.party) + '"]');
  async function poll() {
    const answer = await fetch(url, {cache: "no-store"});
    if (!answer.ok) return;
    const job = await answer.json();
    for (const t of job.tasks) {
      const state = find("span.state", t);
      if (state) { state.textContent = t.state; state.className = "state " + t.state; }
      const progress = find("span.progress", t);
      if (progress && t.total && t.state === "running") {
        progress.textContent = Math.round(100 * t.done / t.total) + "% " + t.message;
      } else if (progress) { progress.textContent = ""; }
    }
    badge.textContent = job.state;
    badge.className = "state " + job.state;
    if (["succeeded", "failed", "cancelled"].includes(job.state)) { window.location.reload(); return; }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();
