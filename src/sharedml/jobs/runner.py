"""Run a whole job on this machine: every party as a thread (in-memory transport) or as its own
OS process on loopback (gRPC with mutual TLS). The same `run_party` does the work either way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..net.certs import CA_KEY, init_federation
from ..net.memory import MemoryHub
from ..private_files import make_private_dirs, open_log, write_json_atomic
from .artifacts import PartyArtifacts
from .catalog import Catalog
from .components import check_components
from .party import PartyResult, run_party
from .spec import JobSpec
from .store import JobStore, ProgressRecord, sqlite_url
from .worker import announce_death, died

MODES = ("threads", "processes")


@dataclass
class JobResult:
    job_id: str
    state: str
    parties: dict[str, PartyResult]
    workdir: Path

    @property
    def error(self) -> str | None:
        """The root cause: the failure of the party that failed first, not its peers' echoes of it."""
        failed = [r for r in self.parties.values() if r.state != "succeeded"]
        root = next((r for r in failed if r.caused_by is None), failed[0] if failed else None)
        return None if root is None else root.error

    def output(self, party: str, task: str, name: str) -> Any:
        return PartyArtifacts(self.workdir, self.job_id, party).load(task, name)


def new_job_id(name: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


class LocalRunner:
    """Runs jobs with all parties on this machine; states go to `<workdir>/sharedml.db` by default."""

    def __init__(self, workdir: Path, db_url: str | None = None) -> None:
        self.workdir = make_private_dirs(Path(workdir).resolve())
        self.db_url = db_url or sqlite_url(self.workdir / "sharedml.db")
        self.store = JobStore(self.db_url)

    def run(self, spec: JobSpec, catalogs: dict[str, Catalog], mode: str = "threads",
            timeout: float | None = None, spec_text: str = "",
            on_progress: Callable[[list[ProgressRecord]], None] | None = None,
            allowed_code: Collection[str] = (), rerun: str | None = None) -> JobResult:
        """Run `spec` to its end; `on_progress` is called about twice a second with every task's progress.

        `allowed_code`: code references (`package.module:function`) the parties may import when the job names
        them (the operator of a local run is every party's operator). `rerun`: the id of a failed or cancelled
        run of the same job to run again under that id, so that work it saved for resuming (PSI buckets) is
        picked up; a new run gets a new id and never shares that state."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        check_components(spec)
        missing = [p for p in spec.parties if p not in catalogs]
        if missing:
            raise ValueError(f"no dataset catalog for party(ies) {missing}")
        tasks = {t: spec.parties_for(t) for t in spec.topological_order()}
        if rerun is None:
            job_id = new_job_id(spec.job)
            self.store.create_job(job_id, spec.job, spec_text or spec.model_dump_json(), tasks)
        else:
            job_id = rerun
            self.store.requeue_job(job_id, spec.job, tasks)
        self.store.set_job_state(job_id, "running")
        try:
            watch = _ProgressWatch(self.store, job_id, on_progress)
            if mode == "threads":
                results = self._run_threads(spec, job_id, catalogs, timeout, watch, allowed_code)
            else:
                results = self._run_processes(spec, job_id, catalogs, timeout, watch, allowed_code)
            watch.poll(final=True)  # the last progress each task reported, so what stays on screen is where it ended
        except KeyboardInterrupt:
            self._finish(job_id, "cancelled", "cancelled by the user (Ctrl-C)")
            raise
        result = JobResult(job_id, _overall_state(results), results, self.workdir)
        self._finish(job_id, result.state, result.error)
        return result

    def _finish(self, job_id: str, state: str, error: str | None) -> None:
        for task in self.store.tasks(job_id):
            if task.state in ("queued", "running"):
                self.store.set_task_state(job_id, task.task, task.party, "cancelled",
                                          "not run: the job stopped before this task finished")
        self.store.set_job_state(job_id, state, error)

    def _run_threads(self, spec: JobSpec, job_id: str, catalogs: dict[str, Catalog], timeout: float | None,
                     watch: _ProgressWatch, allowed_code: Collection[str]) -> dict[str, PartyResult]:
        hub = MemoryHub(max_message_bytes=spec.max_message_bytes)
        transports = {p: hub.transport(p) for p in spec.parties}
        results: dict[str, PartyResult] = {}

        def work(party: str) -> None:
            results[party] = run_party(spec, job_id, party, catalogs[party], transports[party],
                                       self.workdir, self.store, timeout, allowed_code=allowed_code)

        threads = [threading.Thread(target=work, args=(p,), name=f"party-{p}", daemon=True)
                   for p in spec.parties]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.1)
                watch.poll()
        except KeyboardInterrupt:
            for transport in transports.values():
                transport.cancel_job(job_id)
            for thread in threads:
                thread.join(5)
            raise
        return results

    def _run_processes(self, spec: JobSpec, job_id: str, catalogs: dict[str, Catalog], timeout: float | None,
                       watch: _ProgressWatch, allowed_code: Collection[str]) -> dict[str, PartyResult]:
        run_dir = make_private_dirs(self.workdir / job_id / "_local")
        parties = list(spec.parties)
        init_federation(parties, run_dir / "certs")
        (run_dir / "certs" / CA_KEY).unlink()  # every certificate of the run is issued: no one may mint more
        addresses = {p: f"127.0.0.1:{port}" for p, port in zip(parties, _free_ports(len(parties)), strict=True)}
        spec_json = spec.model_dump(mode="json")
        configs: dict[str, dict[str, Any]] = {}
        procs: dict[str, subprocess.Popen] = {}
        for party in parties:
            configs[party] = {
                "spec": spec_json, "job_id": job_id, "party": party,
                "catalog": {"entries": _catalog_document(catalogs[party]), "source": catalogs[party].source,
                            "base_dir": str(catalogs[party].base_dir)},
                "cert_dir": str(run_dir / "certs"), "listen": addresses[party],
                "peers": {p: a for p, a in addresses.items() if p != party},
                "workdir": str(self.workdir), "db_url": self.db_url, "timeout": timeout,
                "allowed_code": sorted(allowed_code),
                "result": str(run_dir / f"{party}.result.json"),
            }
            config_path = run_dir / f"{party}.config.json"
            write_json_atomic(config_path, configs[party])
            log = open_log(run_dir / f"{party}.log")
            try:
                procs[party] = subprocess.Popen([sys.executable, "-m", "sharedml.jobs.worker", str(config_path)],
                                                stdout=log, stderr=subprocess.STDOUT)
            finally:
                os.close(log)
        try:
            self._supervise(job_id, procs, configs, watch)
        except KeyboardInterrupt:
            _stop(procs)
            raise
        return {party: _read_result(party, run_dir, procs[party].returncode) for party in parties}

    def _supervise(self, job_id: str, procs: dict[str, subprocess.Popen], configs: dict[str, dict[str, Any]],
                   watch: _ProgressWatch) -> None:
        """Wait for every party process; one that exits without a result died (killed, out of memory): fail its
        task and tell the others at once, rather than leave them waiting for it until the job's timeout."""
        dead: set[str] = set()
        while any(p.poll() is None for p in procs.values()):
            time.sleep(0.05)
            watch.poll()
            for party, proc in procs.items():
                if party not in dead and proc.poll() is not None and not Path(configs[party]["result"]).exists():
                    dead.add(party)
                    self._report_death(job_id, party, proc.returncode, configs[party], procs)

    def _report_death(self, job_id: str, party: str, exitcode: int, config: dict[str, Any],
                      procs: dict[str, subprocess.Popen]) -> None:
        reason = died(party, exitcode)
        for task in self.store.tasks(job_id):
            if task.party == party and task.state == "running":
                self.store.set_task_state(job_id, task.task, party, "failed", reason)
        announce_death(config, reason, [p for p, proc in procs.items() if proc.poll() is None])


class _ProgressWatch:
    """Reads the tasks' progress from the job store for a caller's display, every `interval` s."""

    def __init__(self, store: JobStore, job_id: str, callback: Callable[[list[ProgressRecord]], None] | None,
                 interval: float = 0.5) -> None:
        self.store, self.job_id, self.callback, self.interval = store, job_id, callback, interval
        self._next = 0.0

    def poll(self, final: bool = False) -> None:
        if self.callback is not None and (final or time.monotonic() >= self._next):
            self._next = time.monotonic() + self.interval
            self.callback(self.store.progress(self.job_id))


def _catalog_document(catalog: Catalog) -> dict[str, Any]:
    return {"datasets": {name: entry.model_dump(mode="json", exclude_none=True)
                         for name, entry in catalog.entries.items()}}


def _overall_state(results: dict[str, PartyResult]) -> str:
    states = {r.state for r in results.values()}
    if states == {"succeeded"}:
        return "succeeded"
    return "cancelled" if "cancelled" in states and "failed" not in states else "failed"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    """Stop every party process after Ctrl-C without cutting short its clean-up.

    From a terminal the parties got the same SIGINT and are already telling their peers and
    marking their tasks; give them a moment, interrupt the ones that did not notice (we were
    interrupted programmatically), and kill only what still hangs after that.
    """
    for grace, action in ((2.0, "interrupt"), (10.0, "kill")):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
            time.sleep(0.05)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT) if action == "interrupt" else proc.kill()
    for proc in procs.values():
        proc.wait()


def _read_result(party: str, run_dir: Path, returncode: int) -> PartyResult:
    path = run_dir / f"{party}.result.json"
    if path.exists():
        return PartyResult(**json.loads(path.read_text()))
    log_tail = _tail(run_dir / f"{party}.log")
    return PartyResult(party, "failed", error=f"{died(party, returncode)}{': ' + log_tail if log_tail else ''}")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])

