"""The deployment's parts in one process: policy, audit chain, the run guard, the registry, configs,
mutual TLS name checks, and the stores on PostgreSQL where a server can be started."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import create_engine, text

from sharedml.deploy.audit import AuditEntry, AuditLog
from sharedml.deploy.config import ConfigError, NodeConfig, load_config
from sharedml.deploy.coordinator_store import CoordinatorStore
from sharedml.deploy.model_registry import Registry, RegistryError
from sharedml.deploy.node_store import NodeStore
from sharedml.deploy.policy import Policy, PolicyChecker, PolicyDenied, PolicyError, lineage
from sharedml.jobs.spec import parse_job
from sharedml.net.certs import init_federation
from sharedml.net.https import MtlsClient, TlsFiles, require_peer, serve_in_thread, server
from sharedml.net.loopback import free_port

JOB = parse_job("""
job: credit
parties:
  bank: {role: guest, data: {clients: credit, extra: other}}
  telco: {role: host, data: {clients: credit, extra: other}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  boost: {component: hetero_secureboost, inputs: {train: align.data}}
  side:  {component: secure_sum, inputs: {data: $extra}, parties: [bank, telco]}
""")


def checker(datasets: dict) -> PolicyChecker:
    return PolicyChecker("bank", Policy.model_validate({"datasets": datasets}), "bank/policy.yaml")


def test_lineage_follows_derived_outputs_through_the_dag():
    assert lineage(JOB, "bank") == {"align": {"credit"}, "boost": {"credit"}, "side": {"other"}}


def test_policy_allows_listed_uses_and_names_the_rule_it_denies():
    allowed = checker({"credit": {"peers": ["telco"], "components": ["psi", "hetero_secureboost"]},
                       "other": {"peers": ["*"], "components": ["*"]}})
    assert allowed.check_job(JOB, "alice") == {"align": {"credit"}, "boost": {"credit"}, "side": {"other"}}

    with pytest.raises(PolicyDenied) as info:  # boost reads only align's output, yet it uses 'credit'
        checker({"credit": {"peers": ["telco"], "components": ["psi"]},
                 "other": {"peers": ["*"], "components": ["*"]}}).check_job(JOB, "alice")
    assert info.value.rule == "datasets.credit.components" and info.value.node == "bank"
    assert "'hetero_secureboost'" in str(info.value) and "bank/policy.yaml" in str(info.value)

    with pytest.raises(PolicyDenied, match=r"rule 'datasets\.other'.*no entry"):
        checker({"credit": {"peers": ["*"], "components": ["*"]}}).check_task(JOB, "side", "alice")
    with pytest.raises(PolicyDenied, match=r"'datasets\.credit\.outputs_may_leave'"):
        allowed.check_export(JOB, "boost")
    checker({"credit": {"peers": ["*"], "components": ["*"], "outputs_may_leave": True}}).check_export(JOB, "boost")


FACTORY_JOB = parse_job("""
job: nets
parties:
  hub: {role: aggregator}
  bank: {role: client, data: {rows: credit}}
  shop: {role: client, data: {rows: credit}}
tasks:
  fit: {component: homo_nn, inputs: {train: $rows}, params: {model: {type: factory, factory: "os:kill"}}}
""")


def test_policy_allows_named_code_only_from_its_code_list():
    """A job naming code (a model factory) is denied at approval unless the node's policy lists that name."""
    rule = {"credit": {"peers": ["*"], "components": ["homo_nn"]}}
    with pytest.raises(PolicyDenied, match=r"rule 'code'.*names code 'os:kill'") as info:
        checker(rule).check_job(FACTORY_JOB, "alice")
    assert "add 'os:kill' to code in bank/policy.yaml" in str(info.value)
    allowing = PolicyChecker("bank", Policy.model_validate({"datasets": rule, "code": ["os:kill"]}), "p.yaml")
    assert allowing.check_job(FACTORY_JOB, "alice") == {"fit": {"credit"}}
    with pytest.raises(ValueError, match="must look like 'package.module:function'"):
        Policy.model_validate({"code": ["os.kill"]})


def test_policy_governs_tasks_that_use_no_data_and_the_submitters():
    """The aggregator reads none of its data, yet it runs a component for a submitter: both must be allowed."""
    hub = {"peers": ["*"], "components": ["*"]}
    denied = PolicyChecker("hub", Policy.model_validate({"datasets": {"credit": hub}}), "hub/policy.yaml")
    job = FACTORY_JOB.model_copy(update={"tasks": {"fit": FACTORY_JOB.tasks["fit"].model_copy(
        update={"params": {}})}})
    with pytest.raises(PolicyDenied, match=r"rule 'dataless.components'.*component 'homo_nn'"):
        denied.check_job(job, "alice")
    policy = {"dataless": {"components": ["homo_nn"], "submitters": ["bob"]}}
    only_bob = PolicyChecker("hub", Policy.model_validate(policy), "hub/policy.yaml")
    assert only_bob.check_job(job, "bob") == {"fit": set()}
    with pytest.raises(PolicyDenied, match=r"rule 'dataless.submitters'.*submitted by 'alice'"):
        only_bob.check_job(job, "alice")
    rule = {"credit": {"peers": ["*"], "components": ["*"], "submitters": ["bob"]}}
    with pytest.raises(PolicyDenied, match=r"rule 'datasets.credit.submitters'"):
        checker(rule).check_job(job, "alice")
    assert checker(rule).check_job(job, "bob") == {"fit": {"credit"}}


def test_policy_file_errors_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("datasets:\n  credit:\n    peers: [telco]\n    component: [psi]\n")
    with pytest.raises(PolicyError, match=r"policy\.yaml, line 4, datasets\.credit\.component"):
        Policy.load(path)


def test_node_config_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("party: bank\ncerts: certs\nlisten: localhost\ncatalog: c.yaml\npolicy: p.yaml\n")
    with pytest.raises(ConfigError, match=r"node\.yaml, line 3, listen"):
        load_config(path, NodeConfig)
    path.write_text("party: bank\ncerts: certs\nlisten: 127.0.0.1:9000\ncatalog: c.yaml\npolicy: p.yaml\n")
    config = load_config(path, NodeConfig)
    assert config.storage_dir == tmp_path / "storage"  # relative to the file, not the working directory
    with pytest.raises(FileNotFoundError, match="sharedml certs init"):
        _ = config.tls


def check_audit_chain(engine) -> None:
    audit = AuditLog(engine)
    for task in ("align", "boost", "score"):
        audit.append(AuditEntry("use", "coordinator", "job-1", task, "credit"))
    assert audit.verify() is None
    second = audit.records()[1]
    with engine.begin() as connection:  # someone edits the log behind the node's back
        connection.execute(text("UPDATE audit_log SET dataset = 'other' WHERE seq = :seq"), {"seq": second.seq})
    assert audit.verify() == second.seq


def check_run_guard(engine) -> None:
    store = NodeStore(engine)
    wins = []
    threads = [threading.Thread(target=lambda: wins.append(store.claim("job-1", "boost", 1))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]  # exactly one of eight concurrent requests starts it
    assert not store.claim("job-1", "boost", 2)
    store.finish("job-1", "boost", "failed", "boom")
    assert store.claim("job-1", "boost", 2) and store.run("job-1", "boost").attempt == 2
    assert store.fail_interrupted("node restarted") == 1 and store.run("job-1", "boost").state == "failed"


def check_registry(engine) -> None:
    registry = Registry(engine)
    first = registry.register("credit.boost", "job-1", "boost", "hetero_secureboost", ["bank", "telco"], {})
    second = registry.register("credit.boost", "job-2", "boost", "hetero_secureboost", ["bank", "telco"],
                               {"bank": [{"name": "auc", "value": 0.8}]})
    assert (first.version, second.version) == (1, 2)
    assert registry.get("credit.boost").id == second.id and registry.get("credit.boost:1").id == first.id
    exported = registry.check_export(registry.export(first.id))
    imported = registry.register(exported["name"], exported["job_id"], exported["task"], "hetero_secureboost",
                                 ["bank", "telco"], {}, imported_from=exported["id"])
    assert (imported.version, imported.job_id, imported.imported_from) == (3, "job-1", first.id)
    registry.delete("credit.boost:2")
    assert [m.version for m in registry.models("credit.boost")] == [1, 3]
    assert not registry.refers_to("job-2", "boost")
    registry.delete("credit.boost:1")
    assert registry.refers_to("job-1", "boost")  # the import still names job-1's parts: they must stay
    with pytest.raises(RegistryError, match="no model 'credit.boost:2'"):
        registry.get("credit.boost:2")
    for bad in ({"model": {}}, [], {"format": "sharedml-model/1", "model": {"id": 1, "name": "x", "job_id": "j",
                                                                           "task": "t"}}):
        with pytest.raises(RegistryError, match="not a model export|lacks text field"):
            registry.check_export(bad)


def check_coordinator_store(url: str) -> None:
    store = CoordinatorStore(url)
    store.create("job-1", "credit", "{}", {"align": ["bank", "telco"]}, "admin")
    store.states.set_task_state("job-1", "align", "bank", "failed", "boom")
    assert store.requeue("job-1", ["align"]) is None  # only a failed or cancelled job reruns
    assert store.transition("job-1", ("queued",), "running")
    assert store.transition("job-1", ("queued", "running"), "cancelled", "by admin")
    assert not store.transition("job-1", ("running",), "succeeded")  # a late finish does not undo a cancel
    assert store.requeue("job-1", ["align"]) == 2
    job, meta, tasks = store.view("job-1")
    assert (job.state, meta.submitter, meta.attempt) == ("queued", "admin", 2)
    assert {(t.party, t.state, t.error) for t in tasks} == {("bank", "queued", None), ("telco", "queued", None)}
    store.states.close()


def test_stores_on_sqlite(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'node.db'}")
    check_audit_chain(engine)
    check_run_guard(engine)
    check_registry(create_engine(f"sqlite:///{tmp_path / 'coordinator.db'}"))
    check_coordinator_store(f"sqlite:///{tmp_path / 'coordinator2.db'}")


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a Unix socket, or a skip that says what is missing."""
    tools = {name: shutil.which(name) for name in ("initdb", "pg_ctl", "runuser")}
    if not (tools["initdb"] and tools["pg_ctl"]):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver: pip install 'psycopg[binary]'")
    as_root = os.geteuid() == 0
    if as_root and not tools["runuser"]:
        pytest.skip("PostgreSQL refuses to run as root and runuser is not available")
    as_user = [tools["runuser"], "-u", "nobody", "--"] if as_root else []
    home = Path(tempfile.mkdtemp(prefix="sharedml-pg-"))  # under /tmp: reachable for 'nobody'
    if as_root:
        shutil.chown(home, "nobody")
    port = free_port()
    pg_ctl = [*as_user, tools["pg_ctl"], "-D", str(home / "data")]
    try:
        run = subprocess.run([*as_user, tools["initdb"], "-D", str(home / "data"), "-A", "trust", "-U", "postgres"],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            pytest.skip(f"initdb failed: {run.stderr.strip()[:200]}")
        subprocess.run([*pg_ctl, "-o", f"-k {home} -p {port} -h ''", "-l", str(home / "log"), "-w", "start"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://postgres@/postgres?host={home}&port={port}"
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_stores_on_postgresql(postgres_url):
    engine = create_engine(postgres_url)
    check_audit_chain(engine)
    check_run_guard(engine)
    check_registry(engine)
    check_coordinator_store(postgres_url)


def test_mutual_tls_checks_both_names(tmp_path):
    init_federation(["coordinator", "bank", "telco"], tmp_path)
    app = FastAPI()

    @app.get("/who")
    async def who(request: Request) -> dict[str, str]:
        return {"caller": await require_peer(request, {"coordinator"})}

    listen = f"127.0.0.1:{free_port()}"
    srv = server(app, listen, TlsFiles.in_dir(tmp_path, "bank"))
    serve_in_thread(srv)
    try:
        client = MtlsClient(f"https://{listen}", TlsFiles.in_dir(tmp_path, "coordinator"), "bank")
        assert client.request("GET", "/who").json() == {"caller": "coordinator"}
        intruder = MtlsClient(f"https://{listen}", TlsFiles.in_dir(tmp_path, "telco"), "bank")
        refused = intruder.request("GET", "/who")
        assert refused.status_code == 403 and "'telco' may not call" in refused.json()["detail"]
        misdirected = MtlsClient(f"https://{listen}", TlsFiles.in_dir(tmp_path, "coordinator"), "telco")
        with pytest.raises(httpx.ConnectError, match="not valid for 'telco'"):  # bank's server is not telco
            misdirected.request("GET", "/who")
        for c in (client, intruder, misdirected):
            c.close()
    finally:
        srv.should_exit = True
