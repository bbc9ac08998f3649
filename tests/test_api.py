"""The Python API: the same jobs as YAML, run by the same engine, with sklearn-style calls."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import sharedml as sm
from sharedml.jobs.spec import parse_job
from sharedml.ml.metrics import roc_auc

FAST = {"key_bits": 1024}  # tests only: the default is 2048


@pytest.fixture(scope="module")
def breast():
    guest, host = sm.datasets.load("breast_hetero", "guest"), sm.datasets.load("breast_hetero", "host")
    rng = np.random.default_rng(0)
    test_ids = set(rng.choice(guest["id"], size=150, replace=False))
    in_test = guest["id"].isin(test_ids)
    return guest[~in_test], guest[in_test], host


def test_vertical_secureboost_fit_predict_evaluate_save_load(tmp_path, breast):
    guest_train, guest_test, host = breast
    fed = sm.Federation.local({"bank": "guest", "insurer": "host"}, workdir=tmp_path / "fed")
    train = fed.vertical({"bank": guest_train, "insurer": host}, id_columns="id", label="y")
    test = fed.vertical({"bank": guest_test, "insurer": host}, id_columns="id", label="y")
    model = sm.SecureBoostClassifier(n_estimators=5, max_depth=3, max_bin=16, **FAST).fit(train)
    assert sorted(model.model_parts_) == ["bank", "insurer"]

    scores = model.predict_proba(test)
    assert list(scores.columns) == ["id", "score"]
    assert sorted(scores["id"]) == sorted(guest_test["id"])  # PSI kept every test row (the host has them all)
    truth = guest_test.set_index("id").loc[scores["id"], "y"].to_numpy()
    report = model.evaluate(test)
    assert report["auc"] == pytest.approx(roc_auc(truth, scores["score"].to_numpy()))
    assert report["auc"] > 0.95

    assert parse_job(model.job_.to_yaml()) == model.job_
    assert {t.component for t in model.job_.tasks.values()} == {"psi", "hetero_secureboost"}

    saved = model.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["bank", "insurer", "sharedml-model.json"]
    again = sm.load(saved, fed).predict_proba(test)
    merged = scores.merge(again, on="id", suffixes=("", "_loaded"))
    assert len(merged) == len(scores) and np.array_equal(merged["score"], merged["score_loaded"])


def test_horizontal_logistic_regression(tmp_path):
    parts = sm.datasets.load("breast_homo")
    fed = sm.Federation.local({"a": "client", "b": "client", "hub": "aggregator"}, workdir=tmp_path)
    model = sm.HomoLogisticRegression(rounds=5).fit(fed.horizontal({"a": parts["guest"], "b": parts["host"]}))
    report = model.evaluate(fed.horizontal({"a": parts["test"]}))
    assert report["rows"] == len(parts["test"]) and report["auc"] > 0.95
    assert list(model.predict(fed.horizontal({"a": parts["test"]})).columns) == ["id", "predicted"]


def test_parameters_are_the_components_own_and_misspellings_get_a_hint():
    with pytest.raises(TypeError, match="did you mean 'n_estimators'"):
        sm.SecureBoostClassifier(n_estimator=5)
    with pytest.raises(ValueError, match="max_bin"):
        sm.SecureBoostClassifier(max_bin=100_000)
    with pytest.raises(TypeError, match="comes from the data"):
        sm.HeteroLogisticRegression(label="y")


def test_data_and_model_kinds_must_match(tmp_path):
    fed = sm.Federation.local({"a": "guest", "b": "host", "hub": "aggregator"}, workdir=tmp_path)
    frame = pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 0], "x": [0.1, 0.2, 0.3]})
    with pytest.raises(TypeError, match="horizontal model but got vertical data"):
        sm.HomoLogisticRegression().fit(fed.vertical({"a": frame, "b": frame[["id", "x"]]}))
    with pytest.raises(ValueError, match="holds no data"):
        fed.horizontal({"hub": frame})
    with pytest.raises(ValueError, match="not in this federation"):
        fed.vertical({"a": frame, "stranger": frame})


def test_a_failed_job_raises_with_the_root_cause(tmp_path):
    fed = sm.Federation.local({"a": "guest", "b": "host"}, workdir=tmp_path)
    frame = pd.DataFrame({"id": range(50), "y": [0, 1] * 25, "x": np.arange(50.0)})
    data = fed.vertical({"a": frame, "b": frame[["id", "x"]]}, label="target")
    with pytest.raises(sm.JobFailed, match="target"):
        sm.SecureBoostClassifier(n_estimators=1, **FAST).fit(data)


def test_a_plain_script_without_a_main_guard_trains(tmp_path):
    """The HE worker processes must not re-run the user's script (spawn would import it in every worker)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sharedml as sm
        fed = sm.Federation.local({{"bank": "guest", "insurer": "host"}}, workdir={str(tmp_path / "fed")!r})
        data = fed.vertical({{p: sm.datasets.path("breast_hetero", side)
                              for p, side in (("bank", "guest"), ("insurer", "host"))}})
        model = sm.SecureBoostClassifier(n_estimators=2, key_bits=1024).fit(data)
        print("AUC", round(model.evaluate(data)["auc"], 4))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("AUC") == 1 and float(done.stdout.split()[-1]) > 0.95
