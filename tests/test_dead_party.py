"""A party killed with SIGKILL fails its job at every party within seconds, naming it and the signal, and
leaves no process behind: not its HE pool workers, not their resource tracker, not its peers.

This module is also the component plugin of the test (party processes import it through
$SHAREDML_COMPONENT_MODULES), so the victim holds an HE process pool, as a party doing Paillier work does.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine

from sharedml.crypto import parallel
from sharedml.deploy.loopback import Deployment
from sharedml.deploy.node_store import NodeStore
from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import JobResult, LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.jobs.store import JobStore
from sharedml.runtime.component import component
from sharedml.runtime.context import Context

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
MARKER = "SHAREDML_TEST_RUN"  # set for the run under test: every process it starts inherits it
FAIL_WITHIN_S = 10.0
JOB = """
job: victim
timeout: 120
parties: {{{parties}}}
tasks:
  work: {{component: pool_then_wait, params: {{victim: {victim}}}}}
"""


class PoolThenWaitParams(BaseModel):
    victim: str


@component("pool_then_wait", params=PoolThenWaitParams, outputs=("done",), min_parties=2)
def pool_then_wait(ctx: Context, params: PoolThenWaitParams) -> dict[str, object]:
    """The victim starts an HE process pool and then works on forever; the others wait for its next message."""
    ctx.broadcast("hello", ctx.party)
    ctx.gather("hello")
    if ctx.party == params.victim:
        parallel.configure(workers=2)
        parallel.run(os.getpid, [(), ()])  # the pool's workers are up
        time.sleep(600)
    ctx.gather("second", peers=[params.victim])
    return {"done": True}


@pytest.fixture
def marked(monkeypatch):
    """Every process of the test's run carries MARKER in its environment; it finds this module as a plugin."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, token)
    monkeypatch.setenv("SHAREDML_COMPONENT_MODULES", Path(__file__).stem)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    yield token
    for pid in processes_with(token):  # only if the test failed: leave nothing running
        os.kill(pid, signal.SIGKILL)


def processes_with(token: str) -> dict[int, str]:
    """{pid: command line} of the processes, other than this one, whose environment holds the marker."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if f"{MARKER}={token}".encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile
            continue
    return found


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except OSError:
            continue
    return children


def alive(pid: int) -> bool:
    """Running (a zombie has ended: only its exit status waits for its parent)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def none_left(token: str, timeout: float = 3.0) -> dict[int, str]:
    """The run's processes still alive after `timeout` (pool workers check on their parent twice a second)."""
    deadline = time.monotonic() + timeout
    while (left := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_kill_9_of_a_local_party_fails_every_party_at_once_and_leaves_no_process(tmp_path, marked):
    runner = LocalRunner(tmp_path / "runs")
    spec = parse_job(JOB.format(parties="A: {role: m}, B: {role: m}, C: {role: m}", victim="B"))
    outcome: list[JobResult] = []
    thread = threading.Thread(target=lambda: outcome.append(
        runner.run(spec, {p: Catalog({}, p, tmp_path) for p in "ABC"}, mode="processes")))
    thread.start()
    victim = wait_for(lambda: next((pid for pid, cmd in processes_with(marked).items() if "B.config.json" in cmd),
                                   None), 60, "party B's process")
    pool = wait_for(lambda: len(children_of(victim)) >= 3 and children_of(victim), 60,
                    "B's two pool workers and their resource tracker")
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    thread.join(FAIL_WITHIN_S + 5)
    elapsed = time.monotonic() - killed
    assert outcome, "the run did not end"
    result = outcome[0]
    assert elapsed < FAIL_WITHIN_S, f"the job took {elapsed:.1f} s to fail"
    assert {p: r.state for p, r in result.parties.items()} == {"A": "failed", "B": "failed", "C": "failed"}
    assert result.parties["B"].error.startswith("party 'B' died (signal 9)")
    for party in "AC":
        assert "aborted by party 'B': party 'B' died (signal 9)" in result.parties[party].error
        assert result.parties[party].caused_by == "B"
    assert result.state == "failed" and result.error.startswith("party 'B' died (signal 9)")
    store = JobStore(runner.db_url)
    states = {t.party: (t.state, t.error) for t in store.tasks(result.job_id)}
    assert states["B"] == ("failed", "party 'B' died (signal 9)")  # not "cancelled, not run"
    assert store.job(result.job_id).state == "failed"
    assert none_left(marked) == {}, f"pool workers {pool} of B; still running: {processes_with(marked)}"


NODE_JOB = """
job: victim
timeout: 120
parties: {bank: {role: m}, insurer: {role: m}}
tasks:
  work: {component: pool_then_wait, params: {victim: insurer}}
"""


def test_kill_9_of_a_node_worker_fails_the_task_and_its_peer_at_once(tmp_path, marked):
    policy = {"dataless": {"components": ["pool_then_wait"]}}
    deployment = Deployment(tmp_path, {p: {"datasets": {}, "policy": policy} for p in ("bank", "insurer")}).start()
    try:
        job_id = deployment.client.submit(NODE_JOB)
        runs = {p: NodeStore(create_engine(f"sqlite:///{tmp_path / p / 'storage' / 'node.db'}"))
                for p in ("bank", "insurer")}
        worker = wait_for(lambda: (run := runs["insurer"].run(job_id, "work")) and run.pid, 60, "insurer's worker")
        pool = wait_for(lambda: len(children_of(worker)) >= 2 and children_of(worker), 60, "the worker's pool")
        peer = runs["bank"].run(job_id, "work").pid
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        job = deployment.wait(job_id, timeout=30)
        assert time.monotonic() - killed < FAIL_WITHIN_S
        assert job["state"] == "failed"
        assert "failed at 'insurer': party 'insurer' died (signal 9)" in job["error"]
        insurer, bank = runs["insurer"].run(job_id, "work"), runs["bank"].run(job_id, "work")
        assert insurer.state == "failed" and insurer.error.startswith("party 'insurer' died (signal 9)")
        # told by the insurer's node, not only stopped by the coordinator
        assert bank.state == "failed" and "aborted by party 'insurer': party 'insurer' died (signal 9)" in bank.error
        wait_for(lambda: not any(map(alive, [worker, peer, *pool])), 3, "the workers and the pool to end")
    finally:
        deployment.stop()
