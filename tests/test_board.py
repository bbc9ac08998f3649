"""The local board: read-only pages of the jobs in a runs directory, without a line of script."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

import sharedml as sm
from sharedml.board.local import local_board
from sharedml.jobs.store import JobStore, sqlite_url


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A federation's runs directory with a fitted and an evaluated SecureBoost (two jobs)."""
    parts = sm.datasets.load("breast_hetero")
    fed = sm.Federation.local({"bank": "guest", "insurer": "host"}, workdir=tmp_path_factory.mktemp("fed"))
    train = fed.vertical({"bank": parts["guest"].iloc[:400], "insurer": parts["host"]})
    test = fed.vertical({"bank": parts["guest"].iloc[400:], "insurer": parts["host"]})
    model = sm.SecureBoostClassifier(n_estimators=3, key_bits=1024).fit(train)
    report = model.evaluate(test)
    return fed.runner.workdir, report


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/ui/jobs/([^"]+)"', html)


def test_the_job_list_shows_full_ids_filters_and_no_script(runs):
    workdir, _ = runs
    client = TestClient(local_board(workdir), base_url="http://127.0.0.1")
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/ui/static/board.js" defer>']  # ours only
    ids = _ids(page.text)
    full = re.compile(r"hetero_secureboost-(fit|score)-\d{8}-\d{6}-[0-9a-f]{6}")
    assert len(ids) == 2 and all(full.fullmatch(i) for i in ids)
    assert _ids(client.get("/ui/jobs?state=failed").text) == []
    assert client.get("/ui/jobs?state=nonsense").status_code == 400


def test_a_job_page_draws_its_graph_states_and_figures(runs):
    workdir, report = runs
    client = TestClient(local_board(workdir), base_url="http://127.0.0.1")
    scoring = next(i for i in _ids(client.get("/ui/jobs").text) if "-score-" in i)
    page = client.get(f"/ui/jobs/{scoring}").text
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert all(f'data-task="{t}"' in svg for t in ("align_data", "predict", "report"))
    assert svg.count("<path") == 2  # align_data -> predict -> report
    assert page.count('<img alt="ROC  (AUC') == 1 and f"{report['auc']:.4g}" in page
    roc = re.search(r'<img alt="ROC[^"]*" src="([^"]+)"', page).group(1)
    assert client.get(roc).content.startswith(b"\x89PNG")  # drawn by its own request
    assert client.get(roc.replace(".png", "9.png")).status_code == 404
    assert client.get("/ui/jobs/no-such-job").status_code == 404


def test_two_runs_side_by_side(runs):
    workdir, _ = runs
    client = TestClient(local_board(workdir), base_url="http://127.0.0.1")
    first, second = _ids(client.get("/ui/jobs").text)
    page = client.get(f"/ui/compare?a={first}&b={second}").text
    assert first in page and second in page and "intersection_size" in page


def test_the_job_list_pages_a_thousand_jobs_quickly(tmp_path):
    store = JobStore(sqlite_url(tmp_path / "sharedml.db"))
    for i in range(1000):
        store.create_job(f"job-{i:04d}", "j", "", {"t": ["a", "b"]})
    client = TestClient(local_board(tmp_path), base_url="http://127.0.0.1")
    client.get("/ui/jobs")  # templates compiled, connections opened
    started = time.perf_counter()
    page = client.get("/ui/jobs?page_number=20")
    assert time.perf_counter() - started < 0.3
    assert "page 20 of 20" in page.text and len(_ids(page.text)) == 50
    assert "2 queued" in page.text


def test_state_json_logs_and_components(runs):
    workdir, _ = runs
    client = TestClient(local_board(workdir), base_url="http://127.0.0.1")
    fitted = next(i for i in _ids(client.get("/ui/jobs").text) if "-fit-" in i)
    state = client.get(f"/ui/jobs/{fitted}/state.json").json()
    assert state["state"] == "succeeded"
    assert {(t["task"], t["party"]) for t in state["tasks"]} == {(t, p) for t in ("align_train", "fit")
                                                                 for p in ("bank", "insurer")}
    assert client.get(f"/ui/jobs/{fitted}/logs/bank").status_code == 404  # a threads run keeps no party log
    assert client.get(f"/ui/jobs/{fitted}/logs/..%2F..%2Fsharedml.db").status_code == 404
    assert client.get("/ui/static/board.js").status_code == 200
    components = client.get("/ui/components").text
    assert '<section id="hetero_lr">' in components and "<code>learning_rate</code>" in components


def test_a_page_asked_for_by_another_name_is_refused(runs):
    """DNS rebinding: a site that points its own name at 127.0.0.1 cannot read the local board."""
    workdir, _ = runs
    client = TestClient(local_board(workdir), base_url="http://rebind.attacker.example")
    assert client.get("/ui/jobs").status_code == 400
