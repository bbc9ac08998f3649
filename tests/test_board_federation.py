"""The coordinator's board through FastAPI's test client: logging in, roles, CSRF, who sees which party's
results, the job forms and the YAML editor, and the time of each page with 1,000 jobs in the store.

(The whole path in a real browser against real nodes is tests/test_board_browser.py.)
"""

from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from sharedml.board.accounts import add_user
from sharedml.deploy.config import CoordinatorConfig, load_config
from sharedml.deploy.coordinator import Coordinator
from sharedml.deploy.coordinator_api import create_app
from sharedml.jobs.spec import parse_job
from sharedml.net.certs import init_federation
from sharedml.net.loopback import free_port, write_yaml

PASSWORD = "correct horse battery"
SPEC = """\
job: scored
parties:
  bank:    {role: guest, data: {clients: breast_guest}}
  insurer: {role: host,  data: {clients: breast_host}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  boost: {component: hetero_secureboost, inputs: {train: align.data}, params: {n_estimators: 2}}
  score: {component: hetero_secureboost_predict, inputs: {model: boost.model, data: align.data}}
  report: {component: evaluate, inputs: {predictions: score.predictions}, parties: [bank]}
"""
JOBS = 1000
ROC = {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0], "threshold": [1.0, 0.5, 0.0]}


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    """A coordinator (no nodes running) whose store holds 1,000 finished jobs; the newest has results of
    both parties: the bank's evaluation and each party's own feature importance."""
    root = tmp_path_factory.mktemp("coordinator")
    init_federation(["coordinator", "admin", "bank", "insurer"], root / "certs")
    path = write_yaml(root / "coordinator.yaml", {
        "certs": "certs", "nodes": {p: f"https://127.0.0.1:{free_port()}" for p in ("bank", "insurer")},
        "admins": ["admin"], "board": {}, "node_timeout": 1.0})
    for name, role, party in (("alice", "operator", "bank"), ("ivan", "viewer", "insurer"),
                              ("vera", "viewer", "bank")):
        add_user(root / "board-accounts.yaml", name, PASSWORD, role, party)
    coordinator = Coordinator(load_config(path, CoordinatorConfig))
    spec = parse_job(SPEC)
    spec_json = spec.model_dump_json()
    tasks = {task: spec.parties_for(task) for task in spec.topological_order()}
    for i in range(JOBS):
        job_id = f"scored-{i:04d}"
        coordinator.store.create(job_id, "scored", spec_json, tasks, "bank" if i % 2 else "insurer")
        coordinator.store.transition(job_id, ("queued",), "running")
        for task, parties in tasks.items():
            for party in parties:
                coordinator.store.states.set_task_state(job_id, task, party, "succeeded")
        coordinator.store.transition(job_id, ("running",), "succeeded")
    newest = f"scored-{JOBS - 1:04d}"
    coordinator.store.add_report(newest, "report", "bank", 1, "succeeded", {
        "metrics": [{"name": "auc", "value": 0.9731, "step": None}],
        "report": {"task_type": "binary", "rows": 569, "auc": 0.9731, "ks": 0.85, "roc_curve": ROC}}, "bank's log")
    coordinator.store.add_report(newest, "boost", "bank", 1, "succeeded", {
        "metrics": [{"name": "loss", "value": 0.5, "step": 0}, {"name": "loss", "value": 0.3, "step": 1}],
        "importance": [{"feature": "bank_feature_radius", "gain": 3.0}]}, "bank boost log")
    coordinator.store.add_report(newest, "boost", "insurer", 1, "succeeded", {
        "metrics": [], "importance": [{"feature": "insurer_secret_feature", "gain": 9.0}]}, "insurer boost log")
    yield coordinator, newest
    coordinator.close()


def client_of(coordinator) -> TestClient:
    return TestClient(create_app(coordinator), base_url="https://testserver", follow_redirects=False)


def logged_in(coordinator, name: str) -> TestClient:
    client = client_of(coordinator)
    answer = client.post("/ui/login", data={"name": name, "password": PASSWORD, "next": "/ui/jobs"})
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=strict", "__Host-"))
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_pages_need_a_login_and_a_right_password(coordinator):
    coord, newest = coordinator
    client = client_of(coord)
    for path in ("/ui/jobs", f"/ui/jobs/{newest}", "/ui/new", "/ui/models", f"/ui/jobs/{newest}/state.json"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")
    wrong = client.post("/ui/login", data={"name": "alice", "password": "not the password"})
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text and "set-cookie" not in wrong.headers
    nobody = client.post("/ui/login", data={"name": "mallory", "password": PASSWORD})
    assert nobody.status_code == 401
    away = client.post("/ui/login", data={"name": "vera", "password": PASSWORD, "next": "https://evil.example/"})
    assert away.headers["location"] == "/ui/jobs"  # no open redirect
    forged = client_of(coord)
    forged.cookies.set("__Host-sharedml-board", "eyJ1IjoiYWxpY2UifQ.AAAA")
    assert forged.get("/ui/jobs").status_code == 303


def test_repeated_failures_pause_a_name(coordinator):
    coord, _ = coordinator
    client = client_of(coord)
    add_user(coord.config.path("board-accounts.yaml"), "target", PASSWORD, "viewer", None)
    for _ in range(5):
        assert client.post("/ui/login", data={"name": "target", "password": "guess-guess-guess"}).status_code == 401
    assert client.post("/ui/login", data={"name": "target", "password": PASSWORD}).status_code == 401


def test_the_job_list_paginates_filters_and_shows_full_ids(coordinator):
    coord, newest = coordinator
    client = logged_in(coord, "vera")
    page = client.get("/ui/jobs").text
    ids = re.findall(r'href="/ui/jobs/(scored-\d{4})"', page)
    assert ids[0] == newest and len(ids) == 50 and "page 1 of 20" in page
    by_bank = client.get("/ui/jobs?submitter=bank&page_number=2").text
    assert "500" in by_bank and "page 2 of 10" in by_bank
    assert 'href="/ui/jobs?page_number=3&amp;submitter=bank">older' in by_bank  # the filter stays on
    assert all(int(i[-4:]) % 2 for i in re.findall(r'href="/ui/jobs/(scored-\d{4})"', by_bank))
    assert client.get("/ui/jobs?state=failed").text.count('href="/ui/jobs/scored-') == 0
    assert client.get("/ui/jobs?state=nonsense").status_code == 400


def test_each_party_sees_only_its_own_results(coordinator):
    coord, newest = coordinator
    bank = logged_in(coord, "vera").get(f"/ui/jobs/{newest}").text
    assert "bank_feature_radius" not in bank  # drawn as a figure, not as text...
    assert '<img alt="ROC' in bank and 'data-metric="auc">0.9731' in bank
    assert "insurer_secret_feature" not in bank and 'data-party="insurer"' not in bank.split("</table>", 2)[-1]
    roc = re.search(r'<img alt="ROC[^"]*" src="([^"]+)"', bank).group(1)
    image = logged_in(coord, "vera").get(roc)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG") and len(image.content) > 5000
    assert logged_in(coord, "ivan").get(roc).status_code == 403  # the insurer's people get no bank figure
    insurer = logged_in(coord, "ivan").get(f"/ui/jobs/{newest}").text
    assert "0.9731" not in insurer and "ROC" not in insurer
    assert re.findall(r'<section class="results" data-task="(\w+)" data-party="(\w+)"', insurer) == \
        [("boost", "insurer")]
    assert logged_in(coord, "ivan").get(f"/ui/jobs/{newest}/logs/report/bank").status_code == 403
    log = logged_in(coord, "vera").get(f"/ui/jobs/{newest}/logs/report/bank")
    assert log.status_code == 200 and "bank&#39;s log" in log.text


def test_a_viewer_cannot_submit_and_forms_need_their_token(coordinator):
    coord, _ = coordinator
    viewer = logged_in(coord, "vera")
    assert viewer.get("/ui/new").status_code == 403
    token = csrf_of(viewer.get("/ui/jobs").text)
    answer = viewer.post("/ui/new/yaml", data={"csrf": token, "spec": SPEC, "action": "submit"})
    assert answer.status_code == 403 and "operator" in answer.text
    operator = logged_in(coord, "alice")
    form = operator.get("/ui/new").text
    assert 'name="param.boost.max_depth"' in form and 'name="param.align.engine"' in form
    no_token = operator.post("/ui/new/yaml", data={"spec": SPEC, "action": "check"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    other = operator.post("/ui/new/yaml", data={"spec": SPEC, "action": "check", "csrf": token})  # vera's token
    assert other.status_code == 403


def test_the_yaml_editor_names_line_and_field(coordinator):
    coord, _ = coordinator
    operator = logged_in(coord, "alice")
    token = csrf_of(operator.get("/ui/new/yaml").text)
    ok = operator.post("/ui/new/yaml", data={"csrf": token, "spec": SPEC, "action": "check"})
    assert ok.status_code == 200 and 'id="yaml-ok"' in ok.text
    bad = SPEC.replace("n_estimators: 2", "n_estimators: 2, max_depth: 99")
    answer = operator.post("/ui/new/yaml", data={"csrf": token, "spec": bad, "action": "check"})
    assert answer.status_code == 400
    assert "the YAML editor, line 7, tasks.boost.params.max_depth: Input should be less than or equal to" in answer.text


def test_the_form_marks_a_bad_parameter_and_builds_the_spec(coordinator):
    coord, _ = coordinator
    operator = logged_in(coord, "alice")
    token = csrf_of(operator.get("/ui/new").text)
    fields = {"csrf": token, "pipeline": "vertical-secureboost", "job": "from-form", "party.guest": "bank",
              "data.guest": "breast_guest", "party.host": "insurer", "data.host": "breast_host"}
    bad = operator.post("/ui/new", data={**fields, "param.boost.max_depth": "99", "action": "submit"})
    assert bad.status_code == 400 and '<tr class="bad">' in bad.text and "max_depth" in bad.text
    as_yaml = operator.post("/ui/new", data={**fields, "param.boost.n_estimators": "4", "action": "yaml"})
    spec = parse_job(re.search(r"<textarea[^>]*>(.*)</textarea>", as_yaml.text, re.S).group(1)
                     .replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&"))
    assert spec.tasks["boost"].params == {"n_estimators": 4}  # only what was changed
    assert spec.parties_for("report") == ["bank"] and spec.parties["insurer"].data == {"data": "breast_host"}


def test_the_api_still_needs_a_certificate(coordinator):
    coord, _ = coordinator
    assert client_of(coord).get("/jobs").status_code == 401


def test_every_page_answers_within_300_ms_with_1000_jobs(coordinator):
    coord, newest = coordinator
    client = logged_in(coord, "vera")
    coord.store.add_report("scored-0998", "report", "bank", 1, "succeeded", {  # results nobody has looked at yet
        "metrics": [], "report": {"task_type": "binary", "rows": 569, "auc": 0.9, "ks": 0.8, "roc_curve": ROC}}, "")
    start = time.perf_counter()
    first = client.get("/ui/jobs/scored-0998")
    assert first.status_code == 200 and time.perf_counter() - start < 0.3  # its figures follow as images
    for path in ("/ui/jobs", "/ui/jobs?page_number=20", "/ui/jobs?submitter=bank", f"/ui/jobs/{newest}",
                 f"/ui/jobs/{newest}/state.json", "/ui/models", "/ui/components"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append(time.perf_counter() - start)
        assert min(times) < 0.3, (path, times)
    state = json.loads(client.get(f"/ui/jobs/{newest}/state.json").text)
    assert state["state"] == "succeeded" and len(state["tasks"]) == 7


def test_two_runs_side_by_side_show_the_persons_party_only(coordinator):
    coord, newest = coordinator
    page = logged_in(coord, "vera").get(f"/ui/compare?a=scored-0000&b={newest}").text
    assert re.search(r"<td>report</td><td>bank</td><td>auc</td>\s*<td></td><td>0.9731</td>", page)
    assert "insurer" not in page.split("<tbody>")[1]
    assert logged_in(coord, "vera").get("/ui/compare?a=nope&b=scored-0000").status_code == 404


def test_accounts_are_managed_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from sharedml.board.accounts import Accounts
    from sharedml.board.auth import verify_password
    from sharedml.cli import app

    config = write_yaml(tmp_path / "coordinator.yaml", {"certs": "certs", "nodes": {"bank": "https://x:1"},
                                                         "board": {"accounts": "people.yaml"}})
    run = CliRunner().invoke
    added = run(app, ["coordinator", "user", "add", "alice", "--config", str(config), "--role", "approver",
                      "--party", "bank", "--password-stdin"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    accounts = tmp_path / "people.yaml"
    assert accounts.stat().st_mode & 0o777 == 0o600 and PASSWORD not in accounts.read_text()
    alice = Accounts(accounts).get("alice")
    assert (alice.role, alice.party) == ("approver", "bank") and verify_password(alice.password, PASSWORD)
    short = run(app, ["coordinator", "user", "add", "bob", "--config", str(config), "--password-stdin"], input="abc\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    assert run(app, ["coordinator", "user", "remove", "alice", "--config", str(config)]).exit_code == 0
    assert Accounts(accounts).get("alice") is None
    bare = write_yaml(tmp_path / "bare.yaml", {"certs": "certs", "nodes": {"bank": "https://x:1"}})
    refused = run(app, ["coordinator", "user", "list", "--config", str(bare)])
    assert refused.exit_code == 2 and "no `board:` section" in refused.output


def test_a_refusal_is_a_page_for_people_and_json_for_scripts(coordinator):
    coord, newest = coordinator
    operator = logged_in(coord, "alice")
    token = csrf_of(operator.get(f"/ui/jobs/{newest}").text)
    answer = operator.post(f"/ui/jobs/{newest}/cancel", data={"csrf": token})
    assert answer.status_code == 409 and "<h1>409: not possible</h1>" in answer.text
    assert "already succeeded" in answer.text
    missing = operator.get("/ui/jobs/no-such-job/state.json")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("no job")


def test_guesses_count_before_they_are_checked_and_a_new_password_ends_old_sessions(coordinator, monkeypatch):
    import threading

    from sharedml.board import login as login_module

    coord, _ = coordinator
    checks = []
    slow_verify = login_module.verify_password

    def counted(stored: str, password: str) -> bool:
        checks.append(password)
        return slow_verify(stored, password)

    monkeypatch.setattr(login_module, "verify_password", counted)
    monkeypatch.setattr(login_module, "CONCURRENT_LOGINS", 64)
    gate = login_module.Gate(login_module.Accounts(coord.config.path("board-accounts.yaml")), b"k" * 32, set())
    guesses = [threading.Thread(target=gate.try_login, args=("alice", f"guess-number-{i}")) for i in range(40)]
    for t in guesses:
        t.start()
    for t in guesses:
        t.join()
    assert len(checks) == 5  # 40 parallel guesses, 5 scrypt checks: the rest were refused unchecked

    client = logged_in(coord, "vera")
    assert client.get("/ui/jobs").status_code == 200
    add_user(coord.config.path("board-accounts.yaml"), "vera", PASSWORD + " changed", "viewer", "bank")
    try:
        assert client.get("/ui/jobs").status_code == 303  # the old session ended with the old password
    finally:
        add_user(coord.config.path("board-accounts.yaml"), "vera", PASSWORD, "viewer", "bank")
    elsewhere = client_of(coord).post("/ui/login", headers={"origin": "https://evil.example"},
                                      data={"name": "vera", "password": PASSWORD})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    fetched = client_of(coord).post("/ui/login", headers={"sec-fetch-site": "cross-site", "origin": "null"},
                                    data={"name": "vera", "password": PASSWORD})
    assert fetched.status_code == 403


def test_a_rerun_from_the_board_is_audited_with_the_person(coordinator):
    coord, _ = coordinator
    spec = parse_job(SPEC)
    coord.store.create("failed-one", "scored", spec.model_dump_json(),
                       {task: spec.parties_for(task) for task in spec.topological_order()}, "bank")
    coord.store.transition("failed-one", ("queued",), "failed", "task 'boost' failed at 'bank': test")
    operator = logged_in(coord, "alice")
    token = csrf_of(operator.get("/ui/jobs/failed-one").text)
    assert operator.post("/ui/jobs/failed-one/rerun", data={"csrf": token}).status_code == 303
    assert coord.job("failed-one")["state"] == "queued" and coord.job("failed-one")["attempt"] == 2
    [entry] = [r for r in coord.audit.records("failed-one") if r.event == "rerun"]
    assert entry.actor == "board:alice" and entry.detail == "attempt 2"


def test_without_matplotlib_the_page_says_how_to_get_figures(coordinator, monkeypatch):
    from sharedml.board import federation

    coord, newest = coordinator
    client = logged_in(coord, "vera")
    assert 'id="no-figures"' not in client.get(f"/ui/jobs/{newest}").text
    monkeypatch.setattr(federation, "can_draw", lambda: False)
    page = client.get(f"/ui/jobs/{newest}").text
    assert 'id="no-figures"' in page and "sharedml[viz]" in page and 'data-metric="auc">0.9731' in page
