"""homo_secureboost: trees equal plaintext boosting on the union of the clients' rows, secure = plain mode, no
histogram crosses to the aggregator in the clear, a job with a data-less aggregator, and clear errors."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost

from sharedml import datasets
from sharedml.ml.metrics import roc_auc
from sharedml.ml.preprocess.binning import QuantileBinner
from sharedml.ml.tables import PredictParams
from sharedml.ml.tree import BoostParams, PlainBoost
from sharedml.ml.tree.homo import HomoBoostParams, frac_bits, homo_secureboost, homo_secureboost_predict
from sharedml.net.serialization import loads
from sharedml.runtime.simulate import SimulationError, simulate

DATA = str(datasets.folder()) + "/"
BREAST = {"guest": "breast_homo_guest.csv.gz", "host": "breast_homo_host.csv.gz"}
CREDIT = {"guest": "default_credit_homo_guest.csv.gz", "host_1": "default_credit_homo_host_1.csv.gz",
          "host_2": "default_credit_homo_host_2.csv.gz"}
CREDIT_ROWS = 1500  # per client: keeps the 3-client tests fast


@cache
def _table(name: str, rows: int | None = None) -> pd.DataFrame:
    table = pd.read_csv(DATA + name)
    return table if rows is None else table.iloc[:rows]


def _clients(files: dict[str, str], rows: int | None) -> dict[str, pd.DataFrame]:
    return {party: _table(name, rows) for party, name in files.items()}


def _train(tables: dict[str, pd.DataFrame], test: pd.DataFrame | None = None, recorder=None,
           **params: Any) -> dict[str, Any]:
    """Simulate homo_secureboost with a data-less aggregator `server` and one client per table."""
    p = HomoBoostParams(**params)

    def party(ctx):
        if ctx.role == "aggregator":
            return homo_secureboost(ctx, p)
        return homo_secureboost(ctx, p, train=tables[ctx.party], test=test)

    roles = {"server": "aggregator", **{c: "client" for c in tables}}
    return simulate(party, roles, timeout=30, recorder=recorder)


def _structure(model: dict[str, Any]) -> list[tuple]:
    return [(t["feature"], t["bin"], t["default_left"], t["left"], t["right"]) for t in model["trees"]]


def _values(model: dict[str, Any]) -> np.ndarray:
    return np.concatenate([t["value"] for t in model["trees"]])


def _union_codes(tables: dict[str, pd.DataFrame], model: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    union = pd.concat(tables.values())
    return QuantileBinner.from_dict(model["binner"]).transform(union[model["features"]].to_numpy()), \
        union["y"].to_numpy()


# --- (a) the trees are those of plaintext boosting on the union, with the common bins ---------------------


@pytest.mark.parametrize(("files", "rows", "trees", "depth"), [(BREAST, None, 5, 4), (CREDIT, CREDIT_ROWS, 4, 4)])
def test_trees_equal_plain_boost_on_the_union(files, rows, trees, depth):
    tables = _clients(files, rows)
    model = _train(tables, secure_aggregation=False, n_estimators=trees, max_depth=depth)["guest"]["model"]
    codes, y = _union_codes(tables, model)
    plain = PlainBoost(BoostParams(n_estimators=trees, max_depth=depth, max_bin=32)).fit(codes, y)
    assert _structure(model) == [(t.feature.tolist(), t.bin.tolist(), t.default_left.tolist(), t.left.tolist(),
                                  t.right.tolist()) for t in plain.trees]
    assert np.allclose(_values(model), np.concatenate([t.value for t in plain.trees]), atol=1e-12)
    assert np.isclose(model["base_margin"][0], plain.base_margin_[0])


@pytest.mark.parametrize(("files", "rows", "test"), [(BREAST, None, "breast_homo_test.csv.gz"),
                                                     (CREDIT, CREDIT_ROWS, "default_credit_homo_test.csv.gz")])
def test_secure_predictions_equal_xgboost_hist_on_the_union_with_the_same_bins(files, rows, test):
    tables, test_table = _clients(files, rows), _table(test)
    out = _train(tables, test_table, n_estimators=5, max_depth=3)
    model, predictions = out["guest"]["model"], out["guest"]["predictions"]
    codes, y = _union_codes(tables, model)
    binner = QuantileBinner.from_dict(model["binner"])
    # max_bin above the number of codes: XGBoost's own cuts then separate every code (see test_tree_core)
    booster = xgboost.train({"objective": "binary:logistic", "tree_method": "hist", "max_bin": max(binner.n_bins) + 1,
                             "max_depth": 3, "eta": 0.3, "nthread": 1}, xgboost.DMatrix(codes.astype(np.float32),
                                                                                         label=y), 5)
    test_codes = binner.transform(test_table[model["features"]].to_numpy()).astype(np.float32)
    expected = booster.predict(xgboost.DMatrix(test_codes))
    np.testing.assert_allclose(predictions["score"].to_numpy(), expected, atol=1e-6)
    assert roc_auc(predictions["y"].to_numpy(), predictions["score"].to_numpy()) == pytest.approx(
        roc_auc(test_table["y"].to_numpy(), expected), abs=1e-6)


def test_missing_values_learn_a_default_direction_like_plain_boost():
    rng = np.random.default_rng(0)
    tables = {c: t.mask((rng.random(t.shape) < 0.1) & ~t.columns.isin(["id", "y"]))
              for c, t in _clients(BREAST, None).items()}
    model = _train(tables, n_estimators=4, max_depth=4)["guest"]["model"]
    codes, y = _union_codes(tables, model)
    plain = PlainBoost(BoostParams(n_estimators=4, max_depth=4, max_bin=32)).fit(codes, y)
    assert _structure(model) == [(t.feature.tolist(), t.bin.tolist(), t.default_left.tolist(), t.left.tolist(),
                                  t.right.tolist()) for t in plain.trees]
    assert any(any(t["default_left"]) for t in model["trees"])


def test_thresholds_are_real_values_from_the_common_edges():
    model = _train(_clients(BREAST, None), n_estimators=1, max_depth=2)["server"]["model"]
    binner = QuantileBinner.from_dict(model["binner"])
    tree = model["trees"][0]
    for feature, b, threshold in zip(tree["feature"], tree["bin"], tree["threshold"], strict=True):
        assert threshold is None if feature < 0 else threshold == binner.threshold(feature, b)
    assert all(len(e) <= 32 for e in model["binner"]["edges"])


def test_regression_equals_plain_boost():
    tables = {c: t.assign(y=t["x0"] * 2 + t["x1"]).drop(columns=["x0", "x1"]) for c, t in
              _clients(BREAST, None).items()}
    model = _train(tables, secure_aggregation=False, objective="reg:squarederror", n_estimators=3,
                   max_depth=3)["guest"]["model"]
    codes, y = _union_codes(tables, model)
    reference = BoostParams(objective="reg:squarederror", n_estimators=3, max_depth=3, max_bin=32)
    plain = PlainBoost(reference).fit(codes, y)
    assert _structure(model) == [(t.feature.tolist(), t.bin.tolist(), t.default_left.tolist(), t.left.tolist(),
                                  t.right.tolist()) for t in plain.trees]


# --- (b) secure aggregation changes nothing but the quantisation ---------------------------------------------


@pytest.mark.parametrize(("files", "rows"), [(BREAST, None), (CREDIT, CREDIT_ROWS)])
def test_secure_and_plain_mode_grow_the_same_trees(files, rows):
    tables = _clients(files, rows)
    plain = _train(tables, secure_aggregation=False, n_estimators=5, max_depth=4)
    secure = _train(tables, n_estimators=5, max_depth=4)
    assert _structure(plain["server"]["model"]) == _structure(secure["server"]["model"])
    assert plain["server"]["model"]["binner"] == secure["server"]["model"]["binner"]
    # each client is off by <= 2^-33 per summed coordinate (frac_bits 32 for the default bounds)
    assert np.max(np.abs(_values(plain["server"]["model"]) - _values(secure["server"]["model"]))) < 1e-8
    assert all(secure[c]["model"]["trees"] == secure["server"]["model"]["trees"] for c in files)


# --- (c) the aggregator never sees a client's histogram in the clear -----------------------------------------


def test_secure_transcript_holds_no_histogram_in_the_clear():
    tables = _clients(BREAST, None)
    plain_records, secure_records = [], []
    _train(tables, recorder=plain_records.append, secure_aggregation=False, n_estimators=1, max_depth=2)
    _train(tables, recorder=secure_records.append, n_estimators=1, max_depth=2)
    sent = {(r.src, r.key.tag): np.asarray(loads(r.payload)) for r in plain_records
            if r.dst == "server" and r.key.tag.startswith("hsb/") and r.key.tag != "hsb/hello"}
    # Control: in the clear, every client's stats, sketch and histograms of both levels cross the wire.
    assert {tag for _, tag in sent} == {"hsb/stats", "hsb/sketch", "hsb/0/0/hist", "hsb/0/1/hist"}
    wire = b"".join(r.payload for r in secure_records)
    p = HomoBoostParams()
    clips = {"hsb/stats": float(p.max_client_rows), "hsb/sketch": float(p.max_client_rows),
             "hsb/0/0/hist": p.histogram_clip, "hsb/0/1/hist": p.histogram_clip}
    for (client, tag), vector in sent.items():
        fixed = np.rint(vector * 2.0**frac_bits(clips[tag], len(tables))).astype(np.int64)  # secagg's, unmasked
        for start in range(0, len(vector) - 3, 3):
            chunk = vector[start:start + 3]
            if np.count_nonzero(chunk) < 2:  # runs of zeros (empty bins) are not a client's data
                continue
            assert chunk.tobytes() not in wire, f"{client}'s {tag} crossed in the clear"
            assert fixed[start:start + 3].tobytes() not in wire, f"{client}'s {tag} crossed unmasked"


# --- (d) a job with an aggregator that holds no data, and local prediction -----------------------------------

HOMO_JOB = """
job: homo-boost-breast
timeout: 120
parties:
  hub:  {role: aggregator}
  bank: {role: client, data: {train: train, test: test}}
  shop: {role: client, data: {train: train, test: test}}
tasks:
  model: {component: homo_secureboost, inputs: {train: $train, test: $test},
          params: {n_estimators: 5, max_depth: 3}}
  report: {component: evaluate, inputs: {predictions: model.predictions}, parties: [bank, shop]}
"""


def test_homo_secureboost_runs_as_a_job_with_an_aggregator_that_holds_no_data(run_breast_homo_job):
    result = run_breast_homo_job(HOMO_JOB)
    assert result.state == "succeeded", result.error
    for party in ("bank", "shop"):
        assert result.output(party, "report", "report")["auc"] > 0.95
    hub = result.output("hub", "model", "model")
    assert hub["features"] is None and hub["trees"] == result.output("bank", "model", "model")["trees"]


def test_predict_matches_training_predictions_and_refuses_the_aggregators_copy():
    test = _table("breast_homo_test.csv.gz")
    out = _train(_clients(BREAST, None), test, n_estimators=3, max_depth=3)
    model = out["host"]["model"]
    predicted = simulate(lambda ctx: homo_secureboost_predict(ctx, PredictParams(), model, test),
                         ["host"])["host"]["predictions"]
    assert np.allclose(predicted["score"], out["host"]["predictions"]["score"])
    with pytest.raises(SimulationError, match="aggregator's copy"):
        simulate(lambda ctx: homo_secureboost_predict(ctx, PredictParams(), out["server"]["model"], test),
                 ["server"])


# --- (e) clear errors ------------------------------------------------------------------------------------------


def test_clients_with_different_columns_are_named():
    tables = _clients(CREDIT, CREDIT_ROWS)
    tables["host_2"] = tables["host_2"].rename(columns={"x3": "x3_other"})
    with pytest.raises(SimulationError, match=r"client\(s\) \['host_2'\] have different feature columns"):
        _train(tables, n_estimators=1)


def test_too_few_clients_and_bad_labels_are_named():
    tables = _clients(BREAST, None)
    with pytest.raises(SimulationError, match="min_clients is 3 .* 2 client"):
        _train(tables, min_clients=3)
    bad = {**tables, "host": tables["host"].assign(y=tables["host"]["y"] * 2.0)}
    with pytest.raises(SimulationError, match="client 'host': label 'y' must be 0/1"):
        _train(bad)
    big = {c: t.assign(y=t["x0"] * 1000) for c, t in tables.items()}
    with pytest.raises(SimulationError, match="raise max_abs_gradient"):
        _train(big, objective="reg:squarederror", max_abs_gradient=10.0)


def test_more_rows_than_the_declared_bound_is_refused():
    with pytest.raises(SimulationError, match="rows, above max_client_rows = 100; raise max_client_rows"):
        _train(_clients(BREAST, None), max_client_rows=100)
