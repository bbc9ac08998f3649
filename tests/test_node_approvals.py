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
def test_an_approved_job_is_followed_live_and_each_party_gets_its_own_importance(tmp_path):
    """(Waiting, rejection and what the coordinator may not do are tests/test_approvals.py's, on small jobs.)"""
    nodes = {
        "bank": {"datasets": {"breast_guest": DATA / "breast_hetero_guest.csv.gz"},
                 "policy": {"datasets": {"breast_guest": {"peers": ["insurer"], "components": VERTICAL}}}},
        "insurer": {"datasets": {"breast_host": DATA / "breast_hetero_host.csv.gz"},
                    "policy": {"datasets": {"breast_host": {"peers": ["bank"], "components": VERTICAL}},
                               "approval": "manual"}},
    }
    deploy = Deployment(tmp_path, nodes).start()
    try:
        job_id = deploy.client.submit(JOB.format(name="approved"))
        assert deploy.client.job(job_id)["approvals"] == {"insurer": "pending"}
        approved = CliRunner().invoke(app, ["node", "approve", job_id, "--config", str(deploy.node_configs["insurer"])])
        assert approved.exit_code == 0, approved.output
        done = deploy.wait(job_id, 90)
        assert done["state"] == "succeeded" and done["approvals"] == {"insurer": "approved"}
        # While the trees were built the coordinator kept each party's progress (the board shows it live).
        store = JobStore(sqlite_url(deploy.coordinator_config.parent / "coordinator.db"))
        followed = {(p.task, p.party) for p in store.progress(job_id) if p.total}
        store.close()
        assert {("boost", "bank"), ("boost", "insurer")} <= followed
        for party in ("bank", "insurer"):
            client = CoordinatorClient(deploy.url, deploy.certs, party, timeout=10)
            rows = {r["party"]: r for r in client.call("GET", f"/jobs/{job_id}/logs") if r["task"] == "boost"}
            client.close()
            assert rows[party]["importance"] and {"feature"} <= set(rows[party]["importance"][0])
            other = "insurer" if party == "bank" else "bank"
            assert "importance" not in rows[other] and "importance" not in rows[other]["metrics"]
    finally:
        deploy.stop()


def test_a_withdrawn_job_cannot_be_approved_and_one_submitter_cannot_fill_the_queue(insurer, monkeypatch):
    node, _ = insurer
    node.approve("job-6", spec_doc(), "coordinator", "bank")
    assert node.withdraw("job-6", "coordinator", "cancelled by 'bank'") is True
    assert node.approval_state("job-6")["state"] == "withdrawn" and node.pending_approvals() == []
    with pytest.raises(NodeError, match="already withdrawn"):
        node.decide("job-6", True, "operator:olga")
    assert node.withdraw("job-6", "coordinator", "again") is False
    monkeypatch.setattr(node_module, "MAX_PENDING_PER_SUBMITTER", 2)
    node.approve("job-7", spec_doc(), "coordinator", "bank")
    node.approve("job-8", spec_doc(), "coordinator", "bank")
    with pytest.raises(NodeError, match="2 jobs of 'bank' waiting") as full:
        node.approve("job-9", spec_doc(), "coordinator", "bank")
    assert full.value.status == 429
