"""Manual approval by a node's operator, over a real coordinator and two nodes (mutual TLS, separate processes):
the job waits queued while node `insurer` (policy `approval: manual`) has not decided, runs once its operator
approves (in-process through `Node.decide`, or with `sharedml node approve`), fails with the operator's reason
when rejected; the coordinator can only read the decision. And a finished `evaluate` task's report reaches
`Coordinator.logs` for its own party only.

Small data (secure sums of a few values, a 6-row prediction table), so the module runs in seconds."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from sharedml.cli import app
from sharedml.deploy.client import CoordinatorClient
from sharedml.deploy.config import NodeConfig, load_config
from sharedml.deploy.loopback import Deployment
from sharedml.deploy.node import Node, NodeError
from sharedml.net.https import MtlsClient, TlsFiles

pytestmark = pytest.mark.slow

JOB = """
job: {name}
timeout: 30
parties:
  bank: {{role: member, data: {{first: a, preds: preds}}}}
  insurer: {{role: member, data: {{first: a}}}}
tasks:
  total: {{component: secure_sum, inputs: {{data: $first}}}}
  report: {{component: evaluate, inputs: {{predictions: $preds}}, parties: [bank]}}
"""
PREDS = "id,y,score\n1,0,0.1\n2,0,0.4\n3,1,0.35\n4,1,0.8\n5,0,0.2\n6,1,0.9\n"
SUMS = {"a": {"peers": ["*"], "components": ["secure_sum"]}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    nodes = {
        "bank": {"datasets": {"a": "value\n1\n2\n", "preds": PREDS},
                 "policy": {"datasets": {**SUMS, "preds": {"peers": ["*"], "components": ["evaluate"]}}}},
        "insurer": {"datasets": {"a": "value\n10\n"}, "policy": {"datasets": SUMS, "approval": "manual"}},
    }
    deploy = Deployment(tmp_path_factory.mktemp("approvals"), nodes, max_concurrent_jobs=2).start()
    yield deploy
    deploy.stop()


@pytest.fixture()
def insurer(deployment):
    """The insurer's node as its operator opens it on the node's machine, next to the running service."""
    config = deployment.node_configs["insurer"]
    node = Node(load_config(config, NodeConfig), str(config))
    yield node
    node.close()


def _still_queued(deployment: Deployment, job_id: str, seconds: float = 1.5) -> dict:
    """The job after several scheduler passes (poll interval 0.2 s): it must not have started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = deployment.client.job(job_id)
        assert job["state"] == "queued" and {t["state"] for t in job["tasks"]} == {"queued"}, job
        time.sleep(0.2)
    return job


def test_a_pending_job_waits_for_the_operator_then_runs_and_reports(deployment, insurer):
    job_id = deployment.client.submit(JOB.format(name="waits"))
    job = _still_queued(deployment, job_id)
    assert job["approvals"] == {"insurer": "pending"}

    [waiting] = [p for p in insurer.pending_approvals() if p["job_id"] == job_id]
    assert waiting["job"] == "waits" and waiting["submitter"] == "admin" and not waiting["problem"]
    assert waiting["tasks"] == [{"task": "total", "component": "secure_sum", "datasets": ["a"], "peers": ["bank"]}]
    assert insurer.health()["waiting"] >= 1 and insurer.health()["approval"] == "manual"

    # The coordinator's certificate can read the decision, and nothing on the node's API makes one.
    as_coordinator = MtlsClient(f"https://127.0.0.1:{deployment.ports['insurer']}",
                                TlsFiles.in_dir(deployment.certs, "coordinator"), "insurer")
    try:
        assert as_coordinator.request("GET", f"/jobs/{job_id}/approval").json() == {
            "state": "pending", "decided_by": None, "reason": ""}
        for method, path in (("POST", f"/jobs/{job_id}/approval"), ("PUT", f"/jobs/{job_id}/approval"),
                             ("POST", f"/jobs/{job_id}/decide"), ("POST", f"/jobs/{job_id}/approval/approve")):
            assert as_coordinator.request(method, path, json={"state": "approved"}).status_code in (404, 405)
        routes = as_coordinator.request("GET", "/openapi.json").json()["paths"]
        assert list(routes["/jobs/{job_id}/approval"]) == ["get"]
    finally:
        as_coordinator.close()
    assert deployment.client.job(job_id)["state"] == "queued"

    assert insurer.decide(job_id, True, "operator:olga", "checked") == "approved"
    with pytest.raises(NodeError, match="already approved by operator:olga") as twice:
        insurer.decide(job_id, False, "operator:mallory", "changed my mind")
    assert twice.value.status == 409
    done = deployment.wait(job_id, timeout=60)
    assert done["state"] == "succeeded", done
    assert done["approvals"] == {"insurer": "approved"}

    events = [(r.event, r.actor) for r in insurer.audit.records(job_id)]
    assert events[:3] == [("pending", "coordinator"), ("approved-by-operator", "operator:olga"),
                          ("approved", "operator:olga")]
    assert ("use", "coordinator") in events and insurer.audit.verify() is None
    page = insurer.audit_entries(limit=200, verify=True)
    assert page["intact"] and page["total"] >= len(events)
    assert {"seq", "at", "event", "actor", "job_id", "task", "dataset", "detail"} <= set(page["entries"][0])
    assert any(e["event"] == "approved-by-operator" and e["job_id"] == job_id for e in page["entries"])

    # The bank's evaluate report reaches the coordinator, for the bank only.
    bank = CoordinatorClient(deployment.url, deployment.certs, "bank", timeout=10)
    try:
        own = next(r for r in bank.call("GET", f"/jobs/{job_id}/logs") if r["task"] == "report")
    finally:
        bank.close()
    logged_auc = next(m["value"] for m in own["metrics"]["metrics"] if m["name"] == "auc")
    assert own["state"] == "succeeded" and own["report"]["auc"] == logged_auc
    assert 0.5 < own["report"]["auc"] <= 1
    other = next(r for r in deployment.client.call("GET", f"/jobs/{job_id}/logs") if r["task"] == "report")
    assert "report" not in other and "report" not in other["metrics"]


def test_the_operator_rejects_and_approves_from_the_command_line(deployment):
    refused = deployment.client.submit(JOB.format(name="refused"))
    approved = deployment.client.submit(JOB.format(name="approved"))
    cancelled = deployment.client.submit(JOB.format(name="cancelled"))
    _still_queued(deployment, refused, seconds=0.6)
    config = str(deployment.node_configs["insurer"])
    run = CliRunner().invoke

    listed = run(app, ["node", "approvals", "--config", config])
    assert listed.exit_code == 0, listed.output
    assert all(job_id in listed.output for job_id in (refused, approved, cancelled))
    assert "secure_sum on a with bank" in listed.output
    assert max(len(line) for line in listed.output.splitlines()) <= 80

    rejected = run(app, ["node", "reject", refused, "--config", config, "--reason", "not this quarter"])
    assert rejected.exit_code == 0, rejected.output
    failed = deployment.wait(refused, timeout=20)
    assert failed["state"] == "failed" and failed["approvals"] == {"insurer": "rejected"}
    assert failed["error"] == "job refused by the operator of node 'insurer': not this quarter"
    assert {t["state"] for t in failed["tasks"]} <= {"queued", "cancelled", "failed"}  # none ran

    again = run(app, ["node", "approve", refused, "--config", config])
    assert again.exit_code != 0 and "already rejected" in again.output

    cancel = deployment.client.call("POST", f"/jobs/{cancelled}/cancel")
    assert cancel["state"] == "cancelled"

    ok = run(app, ["node", "approve", approved, "--config", config, "--reason", "fine"])
    assert ok.exit_code == 0, ok.output
    done = deployment.wait(approved, timeout=60)
    assert done["state"] == "succeeded", done
    assert deployment.client.job(cancelled)["state"] == "cancelled"  # a later approval starts nothing

    node = Node(load_config(deployment.node_configs["insurer"], NodeConfig), config)
    try:
        decided = {r.job_id: (r.event, r.actor, r.detail) for r in node.audit.records()
                   if r.event.endswith("-by-operator")}
        assert decided[refused][0] == "rejected-by-operator" and decided[refused][2] == "not this quarter"
        assert decided[approved][:2] == ("approved-by-operator", decided[refused][1])
        assert decided[approved][1].startswith("operator:")
        with pytest.raises(NodeError, match="already rejected") as resubmitted:  # the same id cannot start over
            node.approve(refused, json.loads(node.store.approval(refused).spec), "coordinator", "admin")
        assert resubmitted.value.status == 409
    finally:
        node.close()
