"""A node whose policy says `approval: manual` waits for its operators: a job that passes the rules is pending
until someone decides, from the CLI or the node's board, with the same effect; the coordinator can read the
decision but not make it. And what a finished task reports goes to its own party only."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedml.cli import app
from sharedml.deploy import node as node_module
from sharedml.deploy.client import CoordinatorClient
from sharedml.deploy.config import NodeConfig, load_config
from sharedml.deploy.loopback import Deployment
from sharedml.deploy.node import Node, NodeError
from sharedml.jobs.spec import parse_job
from sharedml.jobs.store import JobStore, sqlite_url
from sharedml.net.certs import init_federation
from sharedml.net.https import MtlsClient, TlsFiles
from sharedml.net.loopback import write_yaml

DATA = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"
VERTICAL = ["psi", "hetero_secureboost", "hetero_secureboost_predict", "evaluate"]
JOB = """\
job: {name}
timeout: 60
parties:
  bank:    {{role: guest, data: {{clients: breast_guest}}}}
  insurer: {{role: host,  data: {{clients: breast_host}}}}
tasks:
  align: {{component: psi, inputs: {{data: $clients}}}}
  boost: {{component: hetero_secureboost, inputs: {{train: align.data}}, params: {{n_estimators: 2, key_bits: 1024}}}}
  score: {{component: hetero_secureboost_predict, inputs: {{model: boost.model, data: align.data}}}}
  report: {{component: evaluate, inputs: {{predictions: score.predictions}}, parties: [bank]}}
"""


@pytest.fixture()
def insurer(tmp_path):
    init_federation(["coordinator", "bank", "insurer"], tmp_path / "certs")
    source = str(DATA / "breast_hetero_host.csv.gz")
    write_yaml(tmp_path / "catalog.yaml", {"datasets": {"breast_host": {"path": source}}})
    write_yaml(tmp_path / "policy.yaml", {"approval": "manual",
                                          "datasets": {"breast_host": {"peers": ["bank"], "components": VERTICAL}}})
    config = write_yaml(tmp_path / "node.yaml", {"party": "insurer", "certs": "certs", "listen": "127.0.0.1:1",
                                                 "peers": {"bank": "127.0.0.1"}, "catalog": "catalog.yaml",
                                                 "policy": "policy.yaml"})
    node = Node(load_config(config, NodeConfig), str(config))
    yield node, config
    node.close()


def spec_doc(name: str = "scored") -> dict:
    return parse_job(JOB.format(name=name)).model_dump(mode="json")


def test_a_job_waits_for_the_operator_and_is_approved_once(insurer):
    node, _ = insurer
    node.approve("job-1", spec_doc(), "coordinator", "bank")
    assert node.approval_state("job-1")["state"] == "pending"
    with pytest.raises(NodeError, match="has not approved"):
        node.open_job("job-1")  # nothing runs before the decision
    [waiting] = node.pending_approvals()
    assert waiting["job_id"] == "job-1" and waiting["submitter"] == "bank" and not waiting["problem"]
    assert [(t["task"], t["component"], t["datasets"], t["peers"]) for t in waiting["tasks"]] == [
        ("align", "psi", ["breast_host"], ["bank"]), ("boost", "hetero_secureboost", ["breast_host"], ["bank"]),
        ("score", "hetero_secureboost_predict", ["breast_host"], ["bank"])]
    assert node.decide("job-1", True, "board:olga", "fine") == "approved"
    assert node.approval_state("job-1") == {"state": "approved", "decided_by": "board:olga", "reason": "fine"}
    assert node.open_job("job-1") > 0 and node.pending_approvals() == []
    with pytest.raises(NodeError, match="already approved by board:olga") as twice:
        node.decide("job-1", False, "operator:mallory")
    assert twice.value.status == 409
    events = [(r.event, r.actor) for r in node.audit.records("job-1")]
    assert events[:2] == [("pending", "coordinator"), ("approved-by-operator", "board:olga")]
    assert [e for e, _ in events[2:]] == ["approved"] * 3 and node.audit.verify() is None


def test_a_rejected_job_never_runs_and_a_full_queue_is_refused(insurer, monkeypatch):
    node, _ = insurer
    node.approve("job-2", spec_doc(), "coordinator", "bank")
    node.decide("job-2", False, "operator:olga", "not this quarter " + "x" * 2000)
    state = node.approval_state("job-2")
    assert state["state"] == "rejected" and len(state["reason"]) == 500
    with pytest.raises(NodeError):
        node.open_job("job-2")
    with pytest.raises(NodeError, match="no job 'nope' waiting"):
        node.decide("nope", True, "operator:olga")
    monkeypatch.setattr(node_module, "MAX_PENDING", 1)
    node.approve("job-3", spec_doc(), "coordinator", "bank")
    with pytest.raises(NodeError, match="already has 1 jobs waiting") as full:
        node.approve("job-4", spec_doc(), "coordinator", "bank")
    assert full.value.status == 429


def test_the_operator_decides_from_the_command_line(insurer):
    node, config = insurer
    node.approve("job-5", spec_doc("from-cli"), "coordinator", "bank")
    run = CliRunner().invoke
    listed = run(app, ["node", "approvals", "--config", str(config)])
    assert listed.exit_code == 0 and "job-5" in listed.output and "hetero_secureboost on breast_host" in listed.output
    approved = run(app, ["node", "approve", "job-5", "--config", str(config), "--reason", "checked"])
    assert approved.exit_code == 0, approved.output
    assert node.approval_state("job-5")["state"] == "approved"
    assert node.approval_state("job-5")["decided_by"].startswith("operator:")
    again = run(app, ["node", "reject", "job-5", "--config", str(config)])
    assert again.exit_code == 2 and "already approved" in again.output


@pytest.mark.slow
def test_the_coordinator_waits_reads_decisions_and_fails_a_rejected_job(tmp_path):
    nodes = {
        "bank": {"datasets": {"breast_guest": DATA / "breast_hetero_guest.csv.gz"},
                 "policy": {"datasets": {"breast_guest": {"peers": ["insurer"], "components": VERTICAL}}}},
        "insurer": {"datasets": {"breast_host": DATA / "breast_hetero_host.csv.gz"},
                    "policy": {"datasets": {"breast_host": {"peers": ["bank"], "components": VERTICAL}},
                               "approval": "manual"}},
    }
    deploy = Deployment(tmp_path, nodes, max_concurrent_jobs=1).start()
    try:
        refused_id = deploy.client.submit(JOB.format(name="refused"))
        approved_id = deploy.client.submit(JOB.format(name="approved"))
        job = deploy.client.job(refused_id)
        assert job["state"] == "queued" and job["approvals"] == {"insurer": "pending"}
        # The coordinator's certificate cannot decide: the node's API has no route that would.
        as_coordinator = MtlsClient(f"https://127.0.0.1:{deploy.ports['insurer']}",
                                    TlsFiles.in_dir(deploy.certs, "coordinator"), "insurer")
        assert as_coordinator.request("POST", f"/jobs/{refused_id}/approval", json={"state": "approved"}) \
            .status_code == 405
        assert as_coordinator.request("GET", f"/jobs/{refused_id}/approval").json()["state"] == "pending"
        as_coordinator.close()
        insurer_config = str(deploy.node_configs["insurer"])
        run = CliRunner().invoke
        rejected = run(app, ["node", "reject", refused_id, "--config", insurer_config, "--reason", "not this quarter"])
        assert rejected.exit_code == 0, rejected.output
        failed = deploy.wait(refused_id, 30)
        assert failed["state"] == "failed" and "refused by the operator of node 'insurer'" in failed["error"]
        assert "not this quarter" in failed["error"] and failed["approvals"] == {"insurer": "rejected"}
        assert run(app, ["node", "approve", approved_id, "--config", insurer_config]).exit_code == 0
        done = deploy.wait(approved_id, 90)
        assert done["state"] == "succeeded" and done["approvals"] == {"insurer": "approved"}
        # While the trees were built the coordinator kept each party's progress (the board shows it live).
        store = JobStore(sqlite_url(deploy.coordinator_config.parent / "coordinator.db"))
        followed = {(p.task, p.party) for p in store.progress(approved_id) if p.total}
        store.close()
        assert {("boost", "bank"), ("boost", "insurer")} <= followed
        logs = deploy.client.call("GET", f"/jobs/{approved_id}/logs")
        report = next(r for r in logs if r["task"] == "report")
        assert "report" not in report["metrics"]  # the admin is not the bank: the bank's report is the bank's
        bank = CoordinatorClient(deploy.url, deploy.certs, "bank", timeout=10)
        own = next(r for r in bank.call("GET", f"/jobs/{approved_id}/logs") if r["task"] == "report")
        auc = next(m["value"] for m in own["metrics"]["metrics"] if m["name"] == "auc")
        assert own["metrics"]["report"]["auc"] == auc
        boost = next(r for r in bank.call("GET", f"/jobs/{approved_id}/logs")
                     if r["task"] == "boost" and r["party"] == "bank")
        assert boost["metrics"]["importance"] and {"feature"} <= set(boost["metrics"]["importance"][0])
        bank.close()
    finally:
        deploy.stop()
