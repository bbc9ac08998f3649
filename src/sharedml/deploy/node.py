"""A node: one institution's agent. It approves jobs against its own policy, runs the tasks the
coordinator dispatches as child worker processes, and keeps its data, outputs and audit log at home.

What leaves the node towards the coordinator is only states, errors, log tails and component metrics;
protocol messages go from this node's worker straight to its peers' workers over gRPC with mutual TLS.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography import x509
from sqlalchemy import create_engine, event

from .. import __version__
from ..jobs.artifacts import PartyArtifacts
from ..jobs.catalog import Catalog, DatasetError
from ..jobs.components import check_components
from ..jobs.contract import ContractError
from ..jobs.spec import JobSpec, JobSpecError, check_name
from ..jobs.store import JobStore
from ..jobs.worker import announce_death, died
from ..private_files import make_private_dirs, write_json_atomic
from . import node_worker
from .audit import AuditEntry, AuditLog
from .config import NodeConfig
from .node_store import NodeJob, NodeStore
from .policy import Policy, PolicyChecker

CANCEL_GRACE_S = 5.0
REAP_INTERVAL_S = 0.2
LOG_TAIL_LINES = 40
TAIL_BYTES = 64 << 10
MAX_PENDING = 1000  # jobs waiting for an operator's decision
MAX_PENDING_PER_SUBMITTER = 100  # so that one submitter cannot fill the queue for everyone
MAX_REASON_CHARS = 500
MAX_REPORT_BYTES = 256 << 10  # a task's `report` output sent to the coordinator with its metrics
MAX_IMPORTANCE_ROWS = 1000
_log = logging.getLogger(__name__)


class NodeError(Exception):
    """A request the node refuses; `status` is the HTTP status the control API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Worker:
    proc: BaseProcess
    result: Path
    log: Path
    config: Path
    cancel_at: float | None = None  # when SIGKILL follows the SIGINT of a cancel


class Node:
    """The node's behaviour, independent of HTTP (node_api.py serves it)."""

    def __init__(self, config: NodeConfig, config_source: str = "node.yaml") -> None:
        self.config, self.party, self.source = config, config.party, config_source
        self.tls = config.tls
        self._cert_expiry = x509.load_pem_x509_certificate(self.tls.cert.read_bytes()) \
            .not_valid_after_utc.strftime("%Y-%m-%d")
        self.catalog = Catalog.load(config.path(config.catalog))
        policy_path = config.path(config.policy)
        self.checker = PolicyChecker(self.party, Policy.load(policy_path), str(policy_path))
        self.storage = config.storage_dir
        make_private_dirs(self.storage)
        self.engine = create_engine(config.database_url)
        if config.database_url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_wal)
        self.store, self.audit = NodeStore(self.engine), AuditLog(self.engine)
        self.jobstore = JobStore(config.database_url)  # the worker's task states and progress
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="reaper")

    def start(self) -> None:
        """Begin serving: runs a previous node process left 'running' lost their worker, so they fail."""
        node_worker.warm_up()
        lost = self.store.fail_interrupted(f"node {self.party!r} restarted while this task ran; its worker was lost")
        if lost:
            _log.warning("%d task run(s) were interrupted by the node's restart and are now failed", lost)
        self._reaper.start()

    # ---- approval and job set-up --------------------------------------------------------------
    def approve(self, job_id: str, spec_doc: dict[str, Any], actor: str, submitter: str) -> dict[str, list[str]]:
        """Check the whole job against catalog, peers and policy; audit the decision either way.

        `submitter` is the certificate name the coordinator authenticated the job's submitter by; the
        policy's `submitters` rules apply to it."""
        try:
            check_name(job_id, "job id")
        except ValueError as err:
            raise NodeError(400, f"node {self.party!r}: {err}") from err
        spec = self._parse(spec_doc)
        self._check_membership(spec)
        try:
            uses = self.checker.check_job(spec, submitter)
        except Exception as err:
            self.audit.append(AuditEntry("denied", actor, job_id, detail=f"submitted by {submitter!r}: {err}"))
            raise
        for dataset in sorted(set().union(*uses.values())):
            try:
                self.catalog.check_columns(dataset, self.party)
            except (ContractError, DatasetError) as err:
                raise NodeError(400, str(err)) from err
        if self.checker.policy.approval == "manual":
            earlier = self.store.approval(job_id)
            if earlier is not None and earlier.state != "pending":
                raise NodeError(409, f"job {job_id!r} was already {earlier.state} by {earlier.decided_by} at node "
                                     f"{self.party!r}; submit it again as a new job")
            if self.store.count_pending_of(submitter) >= MAX_PENDING_PER_SUBMITTER:
                raise NodeError(429, f"node {self.party!r} already has {MAX_PENDING_PER_SUBMITTER} jobs of "
                                     f"{submitter!r} waiting for its operators; wait for their decisions")
            if not self.store.add_pending(job_id, json.dumps(spec_doc), submitter, MAX_PENDING):
                raise NodeError(429, f"node {self.party!r} already has {MAX_PENDING} jobs waiting for its operators; "
                                     "submit again once they have decided some")
            self.audit.append(AuditEntry("pending", actor, job_id, detail=f"submitted by {submitter!r}; waits for "
                                         "an operator's decision (policy: approval: manual)"))
        else:
            self.store.remember_job(job_id, json.dumps(spec_doc), submitter)  # approved: its tasks may now run
            self._audit_uses(job_id, spec, submitter, uses, actor)
        return {task: sorted(datasets) for task, datasets in uses.items()}

    def _audit_uses(self, job_id: str, spec: JobSpec, submitter: str, uses: dict[str, set[str]], actor: str) -> None:
        """The job is approved: audit each dataset it uses."""
        for task, datasets in uses.items():
            for dataset in sorted(datasets):
                self.audit.append(AuditEntry("approved", actor, job_id, task, dataset,
                                             f"submitted by {submitter!r}; "
                                             f"peers: {', '.join(p for p in spec.parties if p != self.party)}"))

    # ---- an operator's decision (policy `approval: manual`) -------------------------------------
    def approval_state(self, job_id: str) -> dict[str, Any]:
        """Whether the operators approved a job (what the coordinator polls; it can only read it)."""
        record = self.store.approval(job_id)
        if record is None:
            state = "approved" if self.store.job(job_id) is not None else None
            if state is None:
                raise NodeError(404, f"node {self.party!r} has no job {job_id!r}")
            return {"state": state, "decided_by": None, "reason": ""}
        return {"state": record.state, "decided_by": record.decided_by, "reason": record.reason}

    def pending_approvals(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The jobs waiting for an operator, oldest first (the first `limit`), each with what it would do here:
        per task of this node its component, the datasets of this node it would use, and the peers."""
        out = []
        for record in self.store.pending(limit):
            spec = JobSpec.model_validate_json(record.spec)
            try:
                uses = self.checker.check_job(spec, record.submitter)
            except Exception as err:  # noqa: BLE001 - the policy changed since: show why it would be refused
                uses, problem = {}, str(err)
            else:
                problem = ""
            peers = [p for p in spec.parties if p != self.party]
            out.append({"job_id": record.job_id, "job": spec.job, "submitter": record.submitter,
                        "created_at": record.created_at.strftime("%Y-%m-%d %H:%M:%S"), "problem": problem,
                        "tasks": [{"task": task, "component": spec.tasks[task].component,
                                   "datasets": sorted(uses.get(task, ())), "peers": peers}
                                  for task in spec.tasks_for(self.party)]})
        return out

    def decide(self, job_id: str, approve: bool, actor: str, reason: str = "") -> str:
        """An operator approves or rejects a waiting job; the policy is checked again on approval. The same
        for `sharedml node approve|reject` and the node's board; `actor` names the person."""
        record = self.store.approval(job_id)
        if record is None:
            raise NodeError(404, f"node {self.party!r} has no job {job_id!r} waiting for a decision")
        if record.state != "pending":
            raise NodeError(409, f"job {job_id!r} was already {record.state} by {record.decided_by}")
        reason = reason.strip()[:MAX_REASON_CHARS]
        spec = JobSpec.model_validate_json(record.spec)
        if approve:
            try:
                uses = self.checker.check_job(spec, record.submitter)
            except Exception as err:
                self.audit.append(AuditEntry("denied", actor, job_id, detail=f"operator's approval: {err}"))
                raise
        state = "approved" if approve else "rejected"
        if not self.store.decide(job_id, state, actor, reason):  # an approval records the job with it
            raise NodeError(409, f"job {job_id!r} was decided (or withdrawn) meanwhile")
        self.audit.append(AuditEntry(f"{state}-by-operator", actor, job_id, detail=reason))
        if approve:
            self._audit_uses(job_id, spec, record.submitter, uses, actor)
        return state

    def withdraw(self, job_id: str, actor: str, why: str) -> bool:
        """The coordinator ended a job still waiting here (cancelled, or refused elsewhere): it waits no more
        and can no longer be approved. False if it was not waiting."""
        if not self.store.decide(job_id, "withdrawn", actor, why[:MAX_REASON_CHARS]):
            return False
        self.audit.append(AuditEntry("withdrawn", actor, job_id, detail=why[:MAX_REASON_CHARS]))
        return True

    def audit_entries(self, limit: int = 50, offset: int = 0, verify: bool = False) -> dict[str, Any]:
        """A page of the audit log as plain data, newest first: {"total": n, "entries": [{seq, at, event, actor,
        job_id, task, dataset, detail}]} (at most 1,000), plus "intact" (whether the whole hash chain verifies:
        it reads every record) with `verify`."""
        total, records = self.audit.page(max(0, min(limit, 1000)), max(0, offset))
        out: dict[str, Any] = {} if not verify else {"intact": self.audit.verify() is None}
        return {"total": total, **out,
                "entries": [{"seq": r.seq, "at": r.at.strftime("%Y-%m-%d %H:%M:%S"), "event": r.event,
                             "actor": r.actor, "job_id": r.job_id, "task": r.task, "dataset": r.dataset,
                             "detail": r.detail} for r in records]}

    def open_job(self, job_id: str) -> int:
        """Allocate this job's protocol port (the coordinator announces it to the peers)."""
        job = self._job(job_id)
        with socket.socket() as probe:
            probe.bind((self.config.protocol_host, 0))
            port = probe.getsockname()[1]
        self.store.set_port(job_id, port)
        if self.jobstore.job(job_id) is None:
            spec = JobSpec.model_validate_json(job.spec)
            self.jobstore.create_job(job_id, spec.job, job.spec, {})
        return port

    # ---- task runs ----------------------------------------------------------------------------
    def start_task(self, job_id: str, task: str, ports: dict[str, int], attempt: int, actor: str) -> None:
        """Check policy again (the coordinator cannot skip it), claim the run, start its worker."""
        job = self._job(job_id)
        spec = JobSpec.model_validate_json(job.spec)
        if task not in spec.tasks or self.party not in spec.parties_for(task):
            raise NodeError(400, f"node {self.party!r} takes no part in task {task!r} of job {job_id!r}")
        missing = [p for p in spec.parties if p not in ports]
        if missing or job.port is None or ports.get(self.party) != job.port:
            raise NodeError(400, f"job {job_id!r}: protocol ports missing for {missing or [self.party]}; "
                                 f"open the job on every node first")
        try:
            datasets = self.checker.check_task(spec, task, job.submitter)
        except Exception as err:
            self.audit.append(AuditEntry("denied", actor, job_id, task, detail=str(err)))
            raise
        with self._lock:
            if not self.store.claim(job_id, task, attempt):
                raise NodeError(409, f"task {task!r} of job {job_id!r} is already running on node {self.party!r}")
            for dataset in sorted(datasets):
                self.audit.append(AuditEntry("use", actor, job_id, task, dataset,
                                             f"component {spec.tasks[task].component}, attempt {attempt}"))
            try:
                self._workers[(job_id, task)] = self._launch(job_id, task, spec, job.spec, ports, attempt)
            except OSError as err:
                self.store.finish(job_id, task, "failed", f"node {self.party!r} could not start a worker: {err}")
                raise NodeError(500, f"node {self.party!r} could not start a worker: {err}") from err

    def _launch(self, job_id: str, task: str, spec: JobSpec, spec_json: str, ports: dict[str, int],
                attempt: int) -> _Worker:
        run_dir = make_private_dirs(self.storage / "runs" / job_id / f"{task}.{attempt}")
        result = run_dir / "result.json"
        config = {
            "spec": json.loads(spec_json), "job_id": job_id, "party": self.party, "tasks": [task],
            "catalog": {"entries": {"datasets": {name: entry.model_dump(mode="json", exclude_none=True)
                                                 for name, entry in self.catalog.entries.items()}},
                        "source": self.catalog.source, "base_dir": str(self.catalog.base_dir)},
            "cert_dir": str(self.tls.ca.parent), "listen": f"{self.config.protocol_host}:{ports[self.party]}",
            "peers": {p: f"{self.config.peers[p]}:{ports[p]}" for p in spec.parties_for(task) if p != self.party},
            "await_peers": True, "workdir": str(self.storage / "artifacts"), "db_url": self.config.database_url,
            "timeout": None, "result": str(result), "allowed_code": self.checker.policy.code,
        }
        write_json_atomic(run_dir / "config.json", config)
        log = run_dir / "worker.log"
        proc = node_worker.start(str(run_dir / "config.json"), str(log))
        self.store.set_pid(job_id, task, proc.pid or 0)
        return _Worker(proc, result, log, run_dir / "config.json")

    def cancel(self, job_id: str, task: str) -> bool:
        """Interrupt the task's worker (it tells its peers); it is killed if still alive after a grace."""
        with self._lock:
            worker = self._workers.get((job_id, task))
            if worker is None or worker.cancel_at is not None:
                return worker is not None
            worker.cancel_at = time.monotonic() + CANCEL_GRACE_S
            if worker.proc.pid is not None:
                os.kill(worker.proc.pid, signal.SIGINT)
            return True

    def status(self, job_id: str, task: str) -> dict[str, Any]:
        """The run's state and the tail of its log; while it runs its progress, once finished its metrics."""
        run = self.store.run(job_id, task)
        if run is None:
            raise NodeError(404, f"task {task!r} of job {job_id!r} never ran on node {self.party!r}")
        out: dict[str, Any] = {"party": self.party, "state": run.state, "attempt": run.attempt, "error": run.error,
                               "started_at": run.started_at.isoformat(),
                               "finished_at": run.finished_at.isoformat() if run.finished_at else None}
        if run.state == "running":
            out["progress"] = [{"done": p.done, "total": p.total, "message": p.message}
                               for p in self.jobstore.progress(job_id) if p.task == task and p.party == self.party]
            out["log"] = _tail(self.storage / "runs" / job_id / f"{task}.{run.attempt}" / "worker.log")
        else:
            out["metrics"] = self._metrics(job_id, task)
            out["log"] = _tail(self.storage / "runs" / job_id / f"{task}.{run.attempt}" / "worker.log")
            out.update(self._results(job_id, task))
        return out

    def health(self) -> dict[str, Any]:
        return {"party": self.party, "running": [f"{r.job_id}/{r.task}" for r in self.store.running()],
                "datasets": self.catalog.names(), "version": __version__, "approval": self.checker.policy.approval,
                "shared": sorted(self.checker.policy.datasets), "certificate_expires": self._cert_expiry,
                "waiting": self.store.count_pending()}

    # ---- outputs --------------------------------------------------------------------------------
    def export_output(self, job_id: str, task: str, dest: Path, actor: str) -> Path:
        """Copy a task's outputs off the node (e.g. this party's model part), if the policy allows."""
        spec, source = self._outputs_of(job_id, task)
        if not (source / "_SUCCESS").exists():
            raise NodeError(404, f"task {task!r} of job {job_id!r} has no complete outputs on node {self.party!r}")
        try:
            self.checker.check_export(spec, task)
        except Exception as err:
            self.audit.append(AuditEntry("denied", actor, job_id, task, detail=f"export: {err}"))
            raise
        shutil.copytree(source, dest)
        self.audit.append(AuditEntry("export", actor, job_id, task, detail=f"outputs copied to {dest}"))
        return dest

    def delete_outputs(self, job_id: str, task: str, actor: str) -> bool:
        """Delete this party's outputs of one task of a job it ran; audited before, and again if it fails.

        Only a task of a job this node approved, and only that task's folder: names are checked against
        the approved spec, so no request can point the deletion elsewhere."""
        _spec, source = self._outputs_of(job_id, task)
        if not source.exists():
            return False
        self.audit.append(AuditEntry("delete", actor, job_id, task, detail="deleting the task's outputs"))
        try:
            shutil.rmtree(source)
        except OSError as err:
            self.audit.append(AuditEntry("delete-failed", actor, job_id, task, detail=str(err)))
            raise NodeError(500, f"node {self.party!r} could not delete the outputs of task {task!r}: {err}") from err
        self.audit.append(AuditEntry("deleted", actor, job_id, task, detail="task outputs deleted"))
        return True

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for worker in self._workers.values():
                worker.proc.kill()
        if self._reaper.is_alive():
            self._reaper.join(2)
        self.jobstore.close()
        self.engine.dispose()

    # ---- helpers --------------------------------------------------------------------------------
    def _parse(self, spec_doc: dict[str, Any]) -> JobSpec:
        try:
            spec = JobSpec.model_validate(spec_doc)
            check_components(spec)
        except (JobSpecError, ValueError) as err:
            raise NodeError(400, f"node {self.party!r} cannot accept the job spec: {err}") from err
        return spec

    def _check_membership(self, spec: JobSpec) -> None:
        if self.party not in spec.parties:
            raise NodeError(400, f"node {self.party!r} is not a party of job {spec.job!r}")
        unknown = [p for p in spec.parties if p != self.party and p not in self.config.peers]
        if unknown:
            raise NodeError(403, f"node {self.party!r} has no address for peer(s) {', '.join(unknown)}: "
                                 f"add them under 'peers' in {self.source}")
        for alias, dataset in spec.parties[self.party].data.items():
            if dataset not in self.catalog:
                raise NodeError(400, f"node {self.party!r}: alias {alias!r} names dataset {dataset!r}, which is not "
                                     f"in its catalog; it holds: {', '.join(self.catalog.names()) or 'nothing'}")

    def _outputs_of(self, job_id: str, task: str) -> tuple[JobSpec, Path]:
        """The approved spec and this party's output folder of `task`, a task this party runs in that job."""
        spec = JobSpec.model_validate_json(self._job(job_id).spec)
        if task not in spec.tasks_for(self.party):
            raise NodeError(404, f"job {job_id!r} has no task {task!r} at node {self.party!r}")
        return spec, PartyArtifacts(self.storage / "artifacts", job_id, self.party).task_dir(task)

    def _job(self, job_id: str) -> NodeJob:
        job = self.store.job(job_id)
        if job is None:
            raise NodeError(404, f"node {self.party!r} has not approved job {job_id!r}")
        return job

    def _metrics(self, job_id: str, task: str) -> dict[str, Any]:
        path = PartyArtifacts(self.storage / "artifacts", job_id, self.party).task_dir(task) / "metrics.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _results(self, job_id: str, task: str) -> dict[str, Any]:
        """What the board draws for this party's people: the task's `report` and its feature importance, each
        bounded; a report over the bound is left out with a note."""
        folder = PartyArtifacts(self.storage / "artifacts", job_id, self.party).task_dir(task)
        out: dict[str, Any] = {}
        report = folder / "report.json"
        if report.is_file():
            if report.stat().st_size <= MAX_REPORT_BYTES:
                out["report"] = json.loads(report.read_bytes())
            else:
                out["notes"] = [f"report of {report.stat().st_size} bytes kept at the node (over {MAX_REPORT_BYTES})"]
        importance = folder / "importance.parquet"
        if importance.is_file():
            table = pd.read_parquet(importance).head(MAX_IMPORTANCE_ROWS)
            out["importance"] = json.loads(table.to_json(orient="records"))
        return out

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_S):
            for key, worker in self._reap():
                self._record_end(*key, worker)

    def _reap(self) -> list[tuple[tuple[str, str], _Worker]]:
        """Kill the cancelled workers past their grace; take the ended ones out of the table and return them."""
        ended = []
        with self._lock:
            for key, worker in list(self._workers.items()):
                if worker.proc.is_alive():
                    if worker.cancel_at is not None and time.monotonic() > worker.cancel_at:
                        worker.proc.kill()
                    continue
                worker.proc.join()
                ended.append((key, self._workers.pop(key)))
        return ended

    def _record_end(self, job_id: str, task: str, worker: _Worker) -> None:
        """Record how the run ended. A worker that died (killed, out of memory) could not say so itself: fail
        its task here, where the coordinator polls, and tell its peers' workers in its name, so that they stop
        now rather than at the job's timeout. (Outside the lock: the notice may wait on an unreachable peer.)"""
        state, error = _outcome(self.party, worker)
        self.store.finish(job_id, task, state, error)
        if not _died(worker):
            return
        self.jobstore.set_task_state(job_id, task, self.party, "failed", error)
        config = json.loads(worker.config.read_text())
        try:
            announce_death(config, died(self.party, worker.proc.exitcode), config["peers"])
        except Exception:  # best effort: the coordinator stops the peers anyway once it sees the failure
            _log.exception("could not tell the peers of task %s of job %s that its worker died", task, job_id)


def _died(worker: _Worker) -> bool:
    """Whether the worker ended without a result although nobody cancelled it."""
    return worker.cancel_at is None and not worker.result.exists()


def _outcome(party: str, worker: _Worker) -> tuple[str, str | None]:
    try:
        result = json.loads(worker.result.read_text())
        return result["state"], result.get("error")
    except (OSError, ValueError, KeyError):
        if worker.cancel_at is not None:
            return "cancelled", f"cancelled; party {party!r}'s worker was stopped"
        return "failed", (f"{died(party, worker.proc.exitcode)} without a result: "
                          f"{' | '.join(_tail(worker.log).splitlines()[-3:])}")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log, reading only its last 64 KiB (a running task's log is read often)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
            return "\n".join(handle.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
