"""The coordinator: validates jobs, gets every involved node's approval, and dispatches tasks in DAG
order, one task at a time per job, each to all of its parties at once. It sees states, errors, log
tails and metrics, never data: nodes run the work and exchange protocol messages among themselves.

All scheduling state lives in the database and the scheduler is a loop over it, so a restarted
coordinator simply carries on: it polls the nodes for the tasks it had dispatched and continues.
The API and the scheduler run in separate processes (so that status queries never wait behind the
scheduler for the GIL); the database is all they share, and each job state change is a conditional
update, so neither overwrites the other's (a job that finishes as it is cancelled stays cancelled).
A node that stays silent longer than ``node_timeout`` fails its job with that reason; one that
restarted reports its lost runs as failed. A node refuses to start a (job, task) that already
runs there, so no task ever runs twice at once, even across coordinator restarts.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..jobs.components import check_components, load_builtin_components
from ..jobs.runner import new_job_id
from ..jobs.spec import JobSpec, JobSpecError, parse_job
from ..jobs.store import JobRecord, TaskRecord
from ..runtime.component import get_component
from .audit import AuditEntry, AuditLog
from .config import CoordinatorConfig
from .coordinator_store import CoordinatorStore
from .model_registry import Registry
from .node_client import NodeClient, NodeRefused, NodeUnreachable

FINISHED = ("succeeded", "failed", "cancelled")
MAX_REQUEST_TIMEOUT_S = 5.0
FAILURE_GRACE_S = 2.0
APPROVAL_POLL_S = 2.0
APPROVAL_BACKOFF_S = 10.0
LIVE_LOG_S = 2.0  # how often a running task's log tail is kept
PRIVATE_RESULTS = ("report", "importance")  # what a node reports for its own people only
ECHOES = ("aborted by party", "PeerUnreachable:", "PeerTimeout:", "PeerRejected:")
_log = logging.getLogger(__name__)


class CoordinatorError(Exception):
    """A request the coordinator refuses; `status` is the HTTP status, `extra` goes into the answer."""

    def __init__(self, status: int, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


class Coordinator:
    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        load_builtin_components()  # to validate jobs and to recognise the models they produce
        self.store = CoordinatorStore(config.database_url)
        self.registry = Registry(self.store.engine)
        self.audit = AuditLog(self.store.engine)  # registry imports and deletions (refused ones too), reruns
        tls = config.tls
        timeout = min(config.node_timeout, MAX_REQUEST_TIMEOUT_S)
        self.nodes = {party: NodeClient(party, url, tls, timeout) for party, url in config.nodes.items()}
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._silent_since: dict[tuple[str, str], float] = {}
        self._failing_since: dict[str, float] = {}
        self._progress_seen: dict[tuple[str, str, str], tuple[float, float, str]] = {}
        self._approvals_read: dict[str, float] = {}  # job -> when its nodes' decisions were last read
        self._approval_silent: dict[str, float] = {}  # party -> when it last failed to answer about one
        self._log_seen: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._specs: dict[str, JobSpec] = {}
        # Few threads: each holds a database connection (the pool has 15) that API requests also need.
        self._pool = ThreadPoolExecutor(max_workers=min(8, config.max_concurrent_jobs + 2), thread_name_prefix="sched")
        self._stop = threading.Event()

    # ---- API operations -------------------------------------------------------------------------
    def submit(self, spec_text: str, submitter: str) -> str:
        """Validate, ask every node for approval, queue; a refusal is raised, naming node and rule."""
        try:
            spec = parse_job(spec_text, "the submitted job")
            check_components(spec)
        except JobSpecError as err:
            raise CoordinatorError(400, f"invalid job: {err}") from err
        unknown = [p for p in spec.parties if p not in self.nodes]
        if unknown:
            raise CoordinatorError(400, f"job party(ies) {', '.join(unknown)} have no node: add them under 'nodes' "
                                        f"in the coordinator config (known: {', '.join(self.nodes)})")
        job_id = new_job_id(spec.job)
        document = spec.model_dump(mode="json")
        approvals = {p: self._pool.submit(self.nodes[p].approve, job_id, document, submitter) for p in spec.parties}
        awaiting = []
        for party, approval in approvals.items():
            try:
                if approval.result().get("pending"):
                    awaiting.append(party)
            except NodeRefused as err:
                raise CoordinatorError(403 if err.status == 403 else 400, f"job {spec.job!r} refused: {err}",
                                       node=party) from err
            except NodeUnreachable as err:
                raise CoordinatorError(503, f"job {spec.job!r} not submitted: {err}", node=party) from err
        self.store.create(job_id, spec.job, json.dumps(document),
                          {task: spec.parties_for(task) for task in spec.topological_order()}, submitter, awaiting)
        return job_id

    def cancel(self, job_id: str, actor: str) -> None:
        """Cancel a queued or running job and interrupt its running tasks at the nodes."""
        job = self._job(job_id)
        if not self.store.transition(job_id, ("queued", "running"), "cancelled", f"cancelled by {actor!r}"):
            raise CoordinatorError(409, f"job {job_id!r} already {self._job(job_id).state}; nothing to cancel")
        self._stop_tasks(job_id, "not run: the job was cancelled" if job.state == "queued"
                         else "not finished: the job was cancelled")

    def rerun(self, job_id: str, actor: str) -> int:
        """Queue a failed or cancelled job again from its first unfinished task; returns the attempt. The
        coordinator's audit log records who asked (`actor`)."""
        job = self._job(job_id)
        tasks = self.store.states.tasks(job_id)
        if any(t.state == "running" for t in tasks):
            raise CoordinatorError(409, f"job {job_id!r} is still stopping its tasks; rerun it in a moment")
        attempt = self.store.requeue(job_id, sorted({t.task for t in tasks if t.state != "succeeded"}))
        if attempt is None:
            raise CoordinatorError(409, f"job {job_id!r} is {job.state}; only failed or cancelled jobs rerun")
        self.audit.append(AuditEntry("rerun", actor, job_id, detail=f"attempt {attempt}"))
        return attempt

    def job(self, job_id: str) -> dict[str, Any]:
        found = self.store.view(job_id)
        if found is None:
            raise CoordinatorError(404, f"no job {job_id!r}; list jobs with GET /jobs")
        job, meta, tasks = found
        return {"id": job.id, "name": job.name, "state": job.state, "error": job.error, "submitter": meta.submitter,
                "approvals": self.approvals(job_id),
                "attempt": meta.attempt, "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at),
                "tasks": [{"task": t.task, "party": t.party, "state": t.state, "error": t.error,
                           "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at)}
                          for t in tasks]}

    def approvals(self, job_id: str) -> dict[str, str]:
        """{party: pending | approved | rejected} for the nodes whose operators must approve the job by hand
        (policy `approval: manual`), as last read from them; {} when none must."""
        return {party: row.state for party, row in sorted(self.store.approvals(job_id).items())}

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        return [{"id": j.id, "name": j.name, "state": j.state, "created_at": _iso(j.created_at),
                 "finished_at": _iso(j.finished_at)} for j in self.store.states.jobs(limit)]

    def logs(self, job_id: str, caller: str | None = None) -> list[dict[str, Any]]:
        """Each party's report of each task run: task, party, attempt, state, log tail, `metrics` (the component's
        metrics.json), `notes`, and the party's `report` and feature `importance`, which go only to that party
        itself (`caller`; None: the board, which filters by person)."""
        self._job(job_id)
        out = []
        for r in self.store.reports(job_id):
            metrics = json.loads(r.metrics)  # stored together (no migration), handed out apart
            extra = {key: metrics.pop(key) for key in (*PRIVATE_RESULTS, "notes") if key in metrics}
            if caller is not None and caller != r.party:
                extra = {key: value for key, value in extra.items() if key not in PRIVATE_RESULTS}
            out.append({"task": r.task, "party": r.party, "attempt": r.attempt, "state": r.state,
                        "metrics": metrics, "log": r.log, **extra})
        return out

    def node_status(self) -> dict[str, dict[str, Any]]:
        def probe(client: NodeClient) -> dict[str, Any]:
            start = time.perf_counter()
            try:
                health = client.health()
            except (NodeUnreachable, NodeRefused) as err:
                return {"url": client.url, "ok": False, "error": str(err)}
            return {"url": client.url, "ok": True, "latency_ms": round(1000 * (time.perf_counter() - start), 1),
                    **{key: health.get(key) for key in ("running", "datasets", "version", "approval", "shared",
                                                        "certificate_expires", "waiting")}}
        return dict(zip(self.nodes, self._pool.map(probe, self.nodes.values()), strict=True))

    def import_model(self, document: dict[str, Any], caller: str) -> dict[str, Any]:
        """Register an exported model again, only if it names a task of a job this coordinator ran.

        The job's spec, not the document, says which component and parties the entry refers to, so an
        import cannot point the registry (and a later deletion) at anything else."""
        model = self.registry.check_export(document)
        job_id, task = str(model["job_id"]), str(model["task"])
        spec = self._spec_or_none(job_id)
        if spec is None or task not in spec.tasks:
            self.audit.append(AuditEntry("import-refused", caller, job_id[:200], task[:200],
                                         detail="no such job and task at this coordinator"))
            raise CoordinatorError(400, f"model export refers to task {task[:80]!r} of job {job_id[:80]!r}, which "
                                        "this coordinator never ran; import only exports of its own jobs")
        record = self.registry.register(str(model["name"]), job_id, task, spec.tasks[task].component,
                                        spec.parties_for(task), model.get("metrics") or {},
                                        imported_from=str(model["id"]))
        self.audit.append(AuditEntry("import", caller, job_id, task, detail=f"model {record.name}:{record.version}"))
        return record.to_json()

    def delete_model(self, ref: str, caller: str) -> dict[str, Any]:
        """Remove a model from the registry, and each party's part at its node once no other entry refers to it.

        Only the job's submitter or a coordinator admin may; the audit record is written before the
        deletion and again if it fails."""
        record = self.registry.get(ref)
        submitter = self.store.meta(record.job_id).submitter
        if caller != submitter and caller not in self.config.admins:
            self.audit.append(AuditEntry("delete-refused", caller, record.job_id, record.task,
                                         detail=f"model {record.name}:{record.version}"))
            raise CoordinatorError(403, f"{caller!r} may not delete model {record.name}:{record.version}: only its "
                                        f"job's submitter ({submitter!r}) or an admin (coordinator config `admins`)")
        self.audit.append(AuditEntry("delete", caller, record.job_id, record.task,
                                     detail=f"deleting model {record.name}:{record.version}"))
        self.registry.delete(record.id)
        parts = {}
        if not self.registry.refers_to(record.job_id, record.task):
            for party in json.loads(record.parties):
                try:
                    parts[party] = "deleted" if self.nodes[party].delete_outputs(record.job_id, record.task) \
                        else "absent"
                except (KeyError, NodeUnreachable, NodeRefused) as err:
                    parts[party] = f"not deleted: {err}"
                    self.audit.append(AuditEntry("delete-failed", caller, record.job_id, record.task,
                                                 detail=f"party {party!r}: {err}"))
        return {"deleted": record.to_json(), "parts": parts}

    def _spec_or_none(self, job_id: str) -> JobSpec | None:
        try:
            return self._spec(job_id)
        except CoordinatorError:
            return None

    # ---- scheduler (its own process: see coordinator_api.serve) ----------------------------------
    def run_scheduler(self) -> None:
        """Schedule until `close` (or the process ends)."""
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the scheduler must outlive any one bad tick
                _log.exception("scheduler tick failed")
            self._stop.wait(self.config.poll_interval)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self.nodes.values():
            client.close()
        self.store.states.close()

    def tick(self) -> None:
        """Advance every running job, then start queued ones while below the concurrency limit."""
        running = [job.id for job in self.store.in_state("running")]
        list(self._pool.map(self._guarded, [self._advance] * len(running), running))
        waiting = self.store.awaiting_approval()
        list(self._pool.map(self._guarded, [self._check_approvals] * len(waiting), waiting))
        free = self.config.max_concurrent_jobs - self.store.count("running")
        if free > 0:  # jobs waiting for operators do not hold up the queue (one just approved starts next pass)
            queued = [job.id for job in self.store.in_state("queued", limit=free + len(waiting))
                      if job.id not in waiting][:free]
            list(self._pool.map(self._guarded, [self._start] * len(queued), queued))

    def _guarded(self, step: Callable[[str], None], job_id: str) -> None:
        """Run one job's scheduling step; a bug or a broken record fails that job, not the scheduler."""
        try:
            step(job_id)
        except Exception as err:  # noqa: BLE001 - reported as the job's error
            _log.exception("scheduling job %s failed", job_id)
            with self._lock(job_id):
                self._end(job_id, "failed", f"coordinator error while scheduling: {type(err).__name__}: {err}")

    def _check_approvals(self, job_id: str) -> None:
        """Read the decisions of the nodes whose operators must approve the job (the coordinator cannot
        decide for them), each at most every APPROVAL_POLL_S, a node that did not answer not again for
        APPROVAL_BACKOFF_S; a rejection fails the job with the operator's reason."""
        now = time.monotonic()
        if now - self._approvals_read.get(job_id, -math.inf) < APPROVAL_POLL_S:
            return
        self._approvals_read[job_id] = now
        for party, row in self.store.approvals(job_id).items():
            if row.state != "pending" or now - self._approval_silent.get(party, -math.inf) < APPROVAL_BACKOFF_S:
                continue
            try:
                decision = self.nodes[party].approval(job_id)
            except (NodeUnreachable, NodeRefused) as err:
                self._approval_silent[party] = time.monotonic()
                _log.warning("could not read node %s's decision on job %s: %s", party, job_id, err)
                continue
            if decision["state"] in ("approved", "rejected"):
                self.store.set_approval(job_id, party, decision["state"], decision.get("reason") or "")
            if decision["state"] == "rejected":
                with self._lock(job_id):
                    self._end(job_id, "failed", f"job refused by the operator of node {party!r}: "
                                                f"{decision.get('reason') or 'no reason given'}")
                return

    def _start(self, job_id: str) -> None:
        self._approvals_read.pop(job_id, None)  # (it no longer waits for any operator)
        with self._lock(job_id):
            if self._job(job_id).state != "queued":
                return
            spec = self._spec(job_id)
            ports: dict[str, int] = {}
            for party in spec.parties:
                try:
                    ports[party] = self.nodes[party].open_job(job_id)
                except (NodeUnreachable, NodeRefused) as err:
                    self._end(job_id, "failed", f"node {party!r} could not open the job: {err}")
                    return
            self.store.set_ports(job_id, ports)
            if self.store.transition(job_id, ("queued",), "running"):  # not if cancelled meanwhile
                self._advance(job_id)

    def _advance(self, job_id: str) -> None:
        with self._lock(job_id):
            if self._job(job_id).state != "running":
                return
            attempt = self.store.meta(job_id).attempt
            for row in self.store.states.tasks(job_id):
                if row.state == "running":
                    outcome = self._poll(job_id, row, attempt)
                    if outcome is not None:
                        self.store.states.set_task_state(job_id, row.task, row.party, *outcome)
            rows = self.store.states.tasks(job_id)
            failed = [r for r in rows if r.state in ("failed", "cancelled")]
            if not failed:
                self._failing_since.pop(job_id, None)
                self._dispatch_next(job_id, rows, attempt)
                return
            # The culprit's peers usually fail a moment later (aborted, or it stopped answering); give every
            # party a moment to report, so that the job's error is the culprit's own.
            since = self._failing_since.setdefault(job_id, time.monotonic())
            if any(r.state == "running" for r in rows) and time.monotonic() - since < FAILURE_GRACE_S:
                return
            self._failing_since.pop(job_id, None)
            self._end(job_id, "failed", _root_error(failed))

    def _poll(self, job_id: str, row: TaskRecord, attempt: int) -> tuple[str, str | None] | None:
        """(state, error) once the party's run ended, None while it runs or its node is briefly silent."""
        try:
            status = self.nodes[row.party].status(job_id, row.task)
        except NodeUnreachable as err:
            since = self._silent_since.setdefault((job_id, row.party), time.monotonic())
            if time.monotonic() - since < self.config.node_timeout:
                return None
            return "failed", (f"node {row.party!r} did not answer for {self.config.node_timeout:g} s while running "
                              f"task {row.task!r}: {err}")
        except NodeRefused as err:
            return "failed", f"node {row.party!r} lost task {row.task!r}: {err}"
        self._silent_since.pop((job_id, row.party), None)
        if status["state"] == "running":
            self._follow(job_id, row, attempt, status)
            return None
        self._progress_seen.pop((job_id, row.task, row.party), None)
        self._log_seen.pop((job_id, row.task, row.party), None)
        reported = {**(status.get("metrics") or {}), **{key: status[key] for key in ("report", "importance", "notes")
                                                          if key in status}}
        self.store.add_report(job_id, row.task, row.party, attempt, status["state"], reported, status.get("log") or "")
        return status["state"], status.get("error")

    def _follow(self, job_id: str, row: TaskRecord, attempt: int, status: dict[str, Any]) -> None:
        """Keep what a running task shows: its progress, and its log tail at most every LIVE_LOG_S seconds
        (both only when changed), so the board can follow it."""
        key = (job_id, row.task, row.party)
        for p in status.get("progress") or []:
            seen = (p["done"], p["total"], p["message"])
            if self._progress_seen.get(key) != seen:
                self._progress_seen[key] = seen
                self.store.states.set_progress(job_id, row.task, row.party, *seen)
        log, (last, when) = status.get("log") or "", self._log_seen.get(key, ("", 0.0))
        if log != last and time.monotonic() - when >= LIVE_LOG_S:
            self._log_seen[key] = (log, time.monotonic())
            self.store.add_report(job_id, row.task, row.party, attempt, "running", {}, log)

    def _dispatch_next(self, job_id: str, rows: list[TaskRecord], attempt: int) -> None:
        """Start the parties of the first unfinished task that are not running it yet; finish the job
        when no task is left. (A party may start later than its peers, e.g. while a node still stops a
        cancelled earlier attempt; its peers wait for it up to the job's timeout.)"""
        spec = self._spec(job_id)
        pending = {r.task for r in rows if r.state != "succeeded"}
        task = next((t for t in spec.topological_order() if t in pending), None)
        if task is None:
            if self.store.transition(job_id, ("running",), "succeeded"):
                self._register_models(job_id, spec)
            return
        ports = json.loads(self.store.meta(job_id).ports)
        for row in (r for r in rows if r.task == task and r.state == "queued"):
            try:
                self.nodes[row.party].run(job_id, task, ports, attempt)
            except NodeRefused as err:
                if err.status == 409 and self._runs_attempt(job_id, row, attempt):
                    self.store.states.set_task_state(job_id, task, row.party, "running")
                elif err.status != 409:  # 409 for an older attempt still stopping: try again next tick
                    self._end(job_id, "failed", f"node {row.party!r} refused task {task!r}: {err}")
                    return
                continue
            except NodeUnreachable as err:
                self._end(job_id, "failed", f"task {task!r} not started: {err}")
                return
            self.store.states.set_task_state(job_id, task, row.party, "running")

    def _runs_attempt(self, job_id: str, row: TaskRecord, attempt: int) -> bool:
        """Whether the run a node refused to start twice is this attempt's (dispatched before a restart)."""
        try:
            status = self.nodes[row.party].status(job_id, row.task)
        except (NodeUnreachable, NodeRefused):
            return False
        return status["state"] == "running" and status["attempt"] == attempt

    def _end(self, job_id: str, state: str, error: str | None) -> None:
        """Finish a job as `state` for `error`, unless someone else (a cancel) finished it first."""
        if self.store.transition(job_id, ("queued", "running"), state, error):
            self._stop_tasks(job_id, f"not finished: the job {state}")

    def _stop_tasks(self, job_id: str, why: str) -> None:
        """Interrupt the job's runs still going at the nodes and mark every unfinished task; withdraw it where
        it still waits for an operator (so it no longer holds a place there, nor can be approved)."""
        self._approvals_read.pop(job_id, None)
        for party, row in self.store.approvals(job_id).items():
            if row.state == "pending":
                try:
                    self.nodes[party].withdraw(job_id, why)
                except (NodeUnreachable, NodeRefused) as err:
                    _log.warning("could not withdraw job %s at %s: %s", job_id, party, err)
                self.store.set_approval(job_id, party, "withdrawn", why)
        for row in self.store.states.tasks(job_id):
            if row.state == "running":
                try:
                    self.nodes[row.party].cancel(job_id, row.task)
                except (NodeUnreachable, NodeRefused) as err:
                    _log.warning("could not cancel task %s at %s: %s", row.task, row.party, err)
            if row.state in ("queued", "running"):
                self.store.states.set_task_state(job_id, row.task, row.party, "cancelled", why)

    def _register_models(self, job_id: str, spec: JobSpec) -> None:
        reports = [r for r in self.store.reports(job_id) if r.state == "succeeded"]
        for task in spec.topological_order():
            component = get_component(spec.tasks[task].component)
            if "model" not in component.outputs:
                continue
            metrics = {r.party: json.loads(r.metrics).get("metrics", []) for r in reports if r.task == task}
            self.registry.register(f"{spec.job}.{task}", job_id, task, component.name, spec.parties_for(task),
                                   metrics)

    # ---- helpers --------------------------------------------------------------------------------
    def _lock(self, job_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(job_id, threading.RLock())

    def _job(self, job_id: str) -> JobRecord:
        job = self.store.states.job(job_id)
        if job is None:
            raise CoordinatorError(404, f"no job {job_id!r}; list jobs with GET /jobs")
        return job

    def _spec(self, job_id: str) -> JobSpec:
        if job_id not in self._specs:
            self._specs[job_id] = JobSpec.model_validate_json(self._job(job_id).spec)
        return self._specs[job_id]


def _root_error(failed: list[TaskRecord]) -> str:
    """The failure that started it, rather than its echoes at the peers: being aborted by that party, or
    finding it gone or silent (the transport's errors)."""
    own = [r for r in failed if r.state == "failed" and not any(echo in (r.error or "") for echo in ECHOES)]
    row = (own or failed)[0]
    return f"task {row.task!r} failed at {row.party!r}: {row.error}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
