"""A deployment on loopback: a coordinator and three nodes as separate processes, all over mutual TLS.

One deployment serves the module (starting processes costs seconds on 2 cores); each test submits
its own jobs. Node `shop` runs only secure sums and the test-only `faulty` component.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, TESTS
from sqlalchemy import create_engine

from sharedml.deploy.audit import AuditLog
from sharedml.deploy.client import ApiError, CoordinatorClient
from sharedml.deploy.loopback import Deployment
from sharedml.deploy.node_store import NodeStore
from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job

pytestmark = pytest.mark.slow

VERTICAL_JOB = """
job: breast
timeout: 30
parties:
  bank: {role: guest, data: {clients: breast_guest}}
  insurer: {role: host, data: {clients: breast_host}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  boost: {component: hetero_secureboost, inputs: {train: align.data},
          params: {n_estimators: 1, max_depth: 2, max_bin: 8, key_bits: 1024, seed: 1}}
"""

SUM_JOB = """
job: sums
timeout: 20
parties:
  bank: {role: member, data: {first: a, second: b}}
  insurer: {role: member, data: {first: a, second: b}}
tasks:
  one: {component: secure_sum, inputs: {data: $first}}
  two: {component: secure_sum, inputs: {data: $second}, depends_on: [one]}
"""

HANG_JOB = """
job: hang
timeout: 60
parties: {bank: {role: member}, insurer: {role: member}}
tasks:
  stuck: {component: faulty, params: {culprit: insurer, fault: hang}}
"""

SUMS = {"a": "value\n1\n2\n", "b": "value\n10\n"}
VERTICAL_COMPONENTS = ["psi", "hetero_secureboost"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    sums = {"a": {"peers": ["*"], "components": ["secure_sum"]}, "b": {"peers": ["*"], "components": ["secure_sum"]}}
    nodes = {
        "bank": {"datasets": {"breast_guest": DATA / "breast_hetero_guest.csv.gz", **SUMS},
                 "policy": {"datasets": {"breast_guest": {"peers": ["insurer"], "components": VERTICAL_COMPONENTS},
                                         **sums}, "dataless": {"components": ["faulty"]}}},
        "insurer": {"datasets": {"breast_host": DATA / "breast_hetero_host.csv.gz", "c": SUMS["a"], **SUMS},
                    "policy": {"datasets": {"breast_host": {"peers": ["bank"], "components": VERTICAL_COMPONENTS},
                                            "c": {"peers": ["shop"], "components": ["secure_sum"]}, **sums},
                               "dataless": {"components": ["faulty"]}}},
    }
    with pytest.MonkeyPatch.context() as patch:  # the faulty component, in every service process
        patch.setenv("SHAREDML_COMPONENT_MODULES", "plugins.faulty")
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        deploy = Deployment(tmp_path_factory.mktemp("deploy"), nodes).start()
    yield deploy
    deploy.stop()


def _local_predictions(tmp_path: Path) -> pd.DataFrame:
    catalogs = {party: Catalog.from_mapping({"datasets": {name: {"path": str(DATA / f"breast_hetero_{side}.csv.gz")}}},
                                            party, DATA)
                for party, name, side in (("bank", "breast_guest", "guest"), ("insurer", "breast_host", "host"))}
    result = LocalRunner(tmp_path / "local").run(parse_job(VERTICAL_JOB), catalogs)
    assert result.state == "succeeded", result.error
    return result.output("bank", "boost", "predictions")


def test_vertical_job_across_nodes_matches_a_local_run(deployment, tmp_path):
    job_id = deployment.client.submit(VERTICAL_JOB)
    job = deployment.wait(job_id, timeout=90)
    assert job["state"] == "succeeded", job
    assert {(t["task"], t["party"]) for t in job["tasks"] if t["state"] == "succeeded"} == {
        (task, party) for task in ("align", "boost") for party in ("bank", "insurer")}
    assert job["submitter"] == "admin" and job["finished_at"] >= job["started_at"]

    remote = pd.read_parquet(deployment.root / "bank" / "storage" / "artifacts" / job_id / "bank" / "boost"
                             / "predictions.parquet").sort_values("id", ignore_index=True)
    local = _local_predictions(tmp_path).sort_values("id", ignore_index=True)
    assert len(remote) == len(local) > 500
    assert np.array_equal(remote["id"], local["id"])
    assert np.allclose(remote["score"], local["score"], atol=1e-9)

    models = deployment.client.call("GET", "/models", params={"name": "breast.boost"})
    assert [(m["job_id"], m["task"], m["parties"]) for m in models][-1] == (job_id, "boost", ["bank", "insurer"])
    exported = deployment.client.call("GET", f"/models/{models[-1]['id']}/export")
    imported = deployment.client.call("POST", "/models/import", json=exported)
    assert imported["version"] == models[-1]["version"] + 1 and imported["imported_from"] == models[-1]["id"]
    _members_cannot_touch_others_models(deployment, job_id, exported, imported)

    logs = deployment.client.call("GET", f"/jobs/{job_id}/logs")
    assert {(r["task"], r["party"]) for r in logs} == {(t, p) for t in ("align", "boost") for p in ("bank", "insurer")}
    assert any("task boost succeeded" in r["log"] for r in logs)
    assert all(r["metrics"]["traffic"] for r in logs)  # bytes per peer, reported by each node

    audit = AuditLog(create_engine(f"sqlite:///{deployment.root / 'bank' / 'storage' / 'node.db'}"))
    uses = [(r.task, r.dataset) for r in audit.records(job_id) if r.event == "use"]
    assert uses == [("align", "breast_guest"), ("boost", "breast_guest")]  # boost uses align's derived rows
    assert audit.verify() is None
    # The data never reached the coordinator: no feature value appears anywhere in its database.
    coordinator_db = (deployment.root / "coordinator" / "coordinator.db").read_bytes()
    assert b"0.254879" not in coordinator_db and b"-1.046633" not in coordinator_db


def _members_cannot_touch_others_models(deployment: Deployment, job_id: str, exported: dict, imported: dict) -> None:
    """The probe's attack: a member imports an entry pointing at '..' of a real job, then deletes it. Now the
    import is refused, a member may not delete what it did not submit, and deleting one of two entries that
    name the same task leaves the parties' outputs in place; every step is in the coordinator's audit log."""
    member = CoordinatorClient(deployment.url, deployment.certs, "insurer")
    try:
        for task in ("%2E%2E", "..", "../boost"):
            forged = {**exported, "model": {**exported["model"], "task": task}}
            with pytest.raises(ApiError, match="never ran") as info:
                member.call("POST", "/models/import", json=forged)
            assert info.value.status == 400
        with pytest.raises(ApiError, match="only its job's submitter") as info:
            member.call("DELETE", f"/models/{imported['id']}")
        assert info.value.status == 403
    finally:
        member.close()
    outputs = deployment.root / "bank" / "storage" / "artifacts" / job_id / "bank"
    deleted = deployment.client.call("DELETE", f"/models/{imported['id']}")
    assert deleted["parts"] == {} and (outputs / "boost" / "_SUCCESS").exists() and (outputs / "align").exists()
    audit = AuditLog(create_engine(f"sqlite:///{deployment.root / 'coordinator' / 'coordinator.db'}"))
    events = [(r.event, r.actor) for r in audit.records()]
    assert events.count(("import-refused", "insurer")) == 3 and ("delete-refused", "insurer") in events
    assert ("import", "admin") in events and ("delete", "admin") in events and audit.verify() is None


def test_policy_denial_names_the_node_and_the_rule(deployment):
    with pytest.raises(ApiError) as info:
        deployment.client.submit(SUM_JOB.replace("insurer: {role: member, data: {first: a", "insurer: {role: member, "
                                                 "data: {first: c"))
    assert info.value.status == 403 and info.value.node == "insurer"
    assert "node 'insurer' denied by policy rule 'datasets.c.peers'" in str(info.value)
    assert "party 'bank'" in str(info.value) and "add 'bank' to datasets.c.peers" in str(info.value)

    with pytest.raises(ApiError) as info:
        deployment.client.submit(SUM_JOB.replace("first: a", "first: breast_guest", 1))
    assert "node 'bank' denied by policy rule 'datasets.breast_guest.components'" in str(info.value)
    assert "'secure_sum'" in str(info.value)
    assert not [j for j in deployment.client.call("GET", "/jobs") if j["name"] == "sums" and j["state"] == "queued"]
    audit = AuditLog(create_engine(f"sqlite:///{deployment.root / 'insurer' / 'storage' / 'node.db'}"))
    assert any(r.event == "denied" and "datasets.c.peers" in r.detail for r in audit.records())


def test_cancel_stops_the_workers_at_every_node(deployment):
    job_id = deployment.client.submit(HANG_JOB)
    deployment.wait(job_id, until=lambda job: all(t["state"] == "running" for t in job["tasks"]))
    job = deployment.client.call("POST", f"/jobs/{job_id}/cancel")
    assert job["state"] == "cancelled" and "cancelled by 'admin'" in job["error"]
    assert {t["state"] for t in job["tasks"]} == {"cancelled"}
    deadline = time.monotonic() + 15
    while any(info["running"] for info in deployment.client.call("GET", "/nodes").values()):
        assert time.monotonic() < deadline, "a node still runs the cancelled task"
        time.sleep(0.2)


def test_rerun_starts_from_the_failed_task_and_reuses_earlier_outputs(deployment):
    second = deployment.root / "bank" / "b.csv"
    second.rename(second.with_suffix(".away"))
    try:
        job_id = deployment.client.submit(SUM_JOB)
        job = deployment.wait(job_id)
    finally:
        second.with_suffix(".away").rename(second)
    assert job["state"] == "failed"
    assert "party 'bank' failed in task 'two'" in job["error"] and "b.csv" in job["error"]
    first_run = {t["party"]: t["finished_at"] for t in job["tasks"] if t["task"] == "one"}

    assert deployment.client.call("POST", f"/jobs/{job_id}/rerun") == {"attempt": 2}
    job = deployment.wait(job_id)
    assert job["state"] == "succeeded", job
    assert {t["party"]: t["finished_at"] for t in job["tasks"] if t["task"] == "one"} == first_run  # not rerun
    attempts = {(r["task"], r["attempt"]) for r in deployment.client.call("GET", f"/jobs/{job_id}/logs")}
    assert attempts == {("one", 1), ("two", 1), ("two", 2)}
    total = pd.read_parquet(deployment.root / "insurer" / "storage" / "artifacts" / job_id / "insurer" / "two"
                            / "result.parquet")
    assert float(total["total"].iloc[0]) == 20.0


def test_a_killed_node_fails_the_job_within_the_timeout(deployment):
    job_id = deployment.client.submit(HANG_JOB)
    deployment.wait(job_id, until=lambda job: all(t["state"] == "running" for t in job["tasks"]))
    deployment.kill("insurer")
    start = time.monotonic()
    job = deployment.wait(job_id, timeout=30)
    assert time.monotonic() - start < 5 + 5  # node_timeout plus a poll or two, far below the job's 60 s
    assert job["state"] == "failed"
    assert "node 'insurer' did not answer for 5 s while running task 'stuck'" in job["error"]
    worker = NodeStore(create_engine(f"sqlite:///{deployment.root / 'insurer' / 'storage' / 'node.db'}"))
    assert not _alive(worker.run(job_id, "stuck").pid)  # the dead node's worker ended itself too
    deployment.start_node("insurer")
    deployment.wait_ready()
    assert worker.run(job_id, "stuck").state == "failed"  # marked by the restarted node
    assert "restarted while this task ran" in worker.run(job_id, "stuck").error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_coordinator_restart_keeps_history_and_finishes_running_jobs(deployment):
    done = deployment.wait(deployment.client.submit(SUM_JOB))
    assert done["state"] == "succeeded"
    job_id = deployment.client.submit(SUM_JOB)
    deployment.wait(job_id, until=lambda job: any(t["state"] == "running" for t in job["tasks"]))
    deployment.kill("coordinator")
    deployment.start_coordinator()
    deployment.wait_ready()
    assert deployment.client.job(done["id"]) == done
    job = deployment.wait(job_id)
    assert job["state"] == "succeeded", job
    assert job["attempt"] == 1 and {t["state"] for t in job["tasks"]} == {"succeeded"}
