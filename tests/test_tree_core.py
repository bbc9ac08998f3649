"""The plaintext tree core reproduces XGBoost ``hist`` (depthwise) on binned features, tree by tree.

XGBoost is trained on the integer bin codes themselves (NaN for the missing code) with ``max_bin``
above the number of codes, so its own cuts separate every code and both learners see the same
candidate splits. XGBoost's split "x < c goes left" on codes is our "code <= ceil(c) - 1"; its extreme
cuts (below the smallest code: only missing values go left; above the largest: all non-missing values
go left) map to our bins -1 and last.
"""

from __future__ import annotations

import json

import gmpy2
import numpy as np
import pandas as pd
import pytest

from sharedml.ml.preprocess import QuantileBinner
from sharedml.ml.tree import (
    BoostParams,
    PlainBoost,
    Regularization,
    best_of,
    build_histogram,
    find_best_split,
    get_objective,
    subtract_histogram,
)
from sharedml.ml.tree.he_histogram import WireRows, _group_size, encrypted_histogram
from sharedml.ml.tree.sampling import Sampling

xgb = pytest.importorskip("xgboost")
roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score

MAX_BIN = 32
PARAMS = {"learning_rate": 0.3, "reg_lambda": 1.0, "gamma": 0.0, "min_child_weight": 1.0}


def load_hetero(data_dir, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Guest and host columns joined on ``id`` (what PSI alignment gives), and the guest's label."""
    guest = pd.read_csv(data_dir / f"{name}_hetero_guest.csv.gz")
    host = pd.read_csv(data_dir / f"{name}_hetero_host.csv.gz")
    joined = guest.merge(host, on="id", suffixes=("_guest", "_host"))
    return joined.drop(columns=["id", "y"]).to_numpy(np.float64), joined["y"].to_numpy(np.float64)


@pytest.fixture(scope="module")
def breast(data_dir):
    return load_hetero(data_dir, "breast")


def xgb_train(binner: QuantileBinner, codes, y, objective: str, n_estimators: int, max_depth: int, **params):
    """XGBoost on the codes, same hyper-parameters, base_score left to XGBoost's own estimate."""
    xgb_params = {
        "objective": objective,
        "tree_method": "hist",
        "grow_policy": "depthwise",
        "max_bin": max(binner.n_bins) + 1,
        "max_depth": max_depth,
        "eta": params["learning_rate"],
        "lambda": params["reg_lambda"],
        "gamma": params["gamma"],
        "min_child_weight": params["min_child_weight"],
        "nthread": 1,
    }
    if objective == "multi:softmax":
        xgb_params["num_class"] = int(y.max()) + 1
    return xgb.train(xgb_params, xgb_matrix(binner, codes, y), n_estimators)


def xgb_matrix(binner: QuantileBinner, codes, y=None):
    values = np.where(codes == binner.missing_bin, np.nan, codes).astype(np.float32)
    return xgb.DMatrix(values, label=y, missing=np.nan)


def fit_both(binner, codes, y, objective="binary:logistic", n_estimators=10, max_depth=6, **overrides):
    params = PARAMS | overrides
    plain = PlainBoost(BoostParams(objective=objective, n_estimators=n_estimators, max_depth=max_depth,
                                   max_bin=binner.max_bin, **params)).fit(codes, y)
    booster = xgb_train(binner, codes, y, objective, n_estimators, max_depth, **params)
    return plain, booster


def tree_differences(plain: PlainBoost, booster, binner: QuantileBinner) -> list[str]:
    """Every node where the two models disagree on split feature, bin, default direction or leaf value."""
    found: list[str] = []

    def walk(tree, node: int, xnode: dict, where: str) -> None:
        if tree.feature[node] < 0 or "leaf" in xnode:
            if tree.feature[node] >= 0 or "leaf" not in xnode:
                found.append(f"{where}: leaf in one model, split in the other")
            elif not np.isclose(tree.value[node], xnode["leaf"], rtol=1e-5, atol=1e-6):
                found.append(f"{where}: leaf {tree.value[node]} vs {xnode['leaf']}")
            return
        feature = int(xnode["split"][1:])
        bin_ = min(int(np.ceil(xnode["split_condition"])), binner.n_bins[feature]) - 1
        theirs = (feature, bin_, xnode["missing"] == xnode["yes"])
        ours = (int(tree.feature[node]), int(tree.bin[node]), bool(tree.default_left[node]))
        if ours != theirs:
            found.append(f"{where}: split {ours} vs {theirs}")
            return
        children = {c["nodeid"]: c for c in xnode["children"]}
        walk(tree, tree.left[node], children[xnode["yes"]], where + "L")
        walk(tree, tree.right[node], children[xnode["no"]], where + "R")

    dumps = booster.get_dump(dump_format="json")
    assert len(dumps) == len(plain.trees)
    for i, (tree, dump) in enumerate(zip(plain.trees, dumps, strict=True)):
        walk(tree, 0, json.loads(dump), f"tree {i} ")
    return found


def assert_matches_xgboost(plain, booster, binner, codes) -> None:
    assert tree_differences(plain, booster, binner) == []
    theirs = booster.predict(xgb_matrix(binner, codes), output_margin=True)
    np.testing.assert_allclose(plain.predict_margin(codes), theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"learning_rate": 0.1, "reg_lambda": 2.0, "gamma": 0.5, "min_child_weight": 3.0}],
    ids=["defaults", "regularised"],
)
def test_breast_matches_xgboost(breast, overrides):
    X, y = breast
    binner = QuantileBinner(MAX_BIN)
    codes = binner.fit_transform(X)
    plain, booster = fit_both(binner, codes, y, **overrides)
    assert_matches_xgboost(plain, booster, binner, codes)
    np.testing.assert_allclose(plain.predict(codes), booster.predict(xgb_matrix(binner, codes)), atol=1e-6)


def test_default_credit_matches_xgboost(data_dir):
    X, y = load_hetero(data_dir, "default_credit")
    binner = QuantileBinner(MAX_BIN)
    codes = binner.fit_transform(X)
    plain, booster = fit_both(binner, codes, y, n_estimators=5, max_depth=4)
    assert_matches_xgboost(plain, booster, binner, codes)


def test_missing_values_learn_default_direction_like_xgboost(breast):
    X, y = breast
    X = X.copy()
    rng = np.random.default_rng(1)
    X[rng.random(len(X)) < 0.3, 0] = np.nan
    X[rng.random(len(X)) < 0.1, 3] = np.nan
    binner = QuantileBinner(MAX_BIN)
    codes = binner.fit_transform(X)
    assert (codes[:, 0] == binner.missing_bin).sum() > 100
    plain, booster = fit_both(binner, codes, y)
    assert_matches_xgboost(plain, booster, binner, codes)
    on_missing_feature = [t.default_left[np.isin(t.feature, [0, 3])] for t in plain.trees]
    directions = np.concatenate(on_missing_feature)
    assert directions.any() and not directions.all()  # both directions learned, not a fixed default


def test_softmax_matches_xgboost():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] + 0.5 * rng.normal(size=600) > 0.5)
    binner = QuantileBinner(MAX_BIN)
    codes = binner.fit_transform(X)
    plain, booster = fit_both(binner, codes, y, objective="multi:softmax", n_estimators=4, max_depth=3)
    assert len(plain.trees) == 4 * 3
    assert_matches_xgboost(plain, booster, binner, codes)
    np.testing.assert_array_equal(plain.predict(codes), booster.predict(xgb_matrix(binner, codes)))


def test_squared_error_matches_xgboost():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 4))
    X[:, 3] = rng.integers(0, 5, size=800)  # few distinct values: one bin each
    y = np.sin(X[:, 0]) + 0.5 * X[:, 3] + 0.1 * rng.normal(size=800)
    binner = QuantileBinner(MAX_BIN)
    codes = binner.fit_transform(X)
    assert binner.n_bins[3] == 5
    plain, booster = fit_both(binner, codes, y, objective="reg:squarederror", n_estimators=5, max_depth=4)
    assert_matches_xgboost(plain, booster, binner, codes)


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror", "multi:softmax"])
def test_base_margin_is_xgboosts_estimate(objective):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300).astype(float)
    y = y.clip(0, 1) if objective == "binary:logistic" else y
    params = {"objective": objective, "tree_method": "hist", "nthread": 1}
    if objective == "multi:softmax":
        params["num_class"] = 3
    booster = xgb.train(params, xgb.DMatrix(rng.normal(size=(300, 2)), label=y), 1)
    estimated = json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"]
    theirs = np.array(json.loads(estimated) if estimated.startswith("[") else [float(estimated)])
    ours = get_objective(objective, 3).base_margin(y)
    if objective == "binary:logistic":  # XGBoost stores the probability, we the margin
        ours = get_objective(objective).transform(ours)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)  # XGBoost computes in float32


def test_auc_close_to_xgboost_on_held_out_rows(breast):
    X, y = breast
    train = np.random.default_rng(0).random(len(y)) < 0.7
    binner = QuantileBinner(MAX_BIN).fit(X[train])
    codes_train, codes_test = binner.transform(X[train]), binner.transform(X[~train])
    plain, booster = fit_both(binner, codes_train, y[train])
    ours = roc_auc_score(y[~train], plain.predict(codes_test))
    theirs = roc_auc_score(y[~train], booster.predict(xgb_matrix(binner, codes_test)))
    assert ours > 0.95
    assert abs(ours - theirs) <= 0.002


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_histogram_subtraction_equals_direct_build(n_outputs):
    rng = np.random.default_rng(0)
    n, f, n_bins = 1000, 6, 16
    bins = rng.integers(0, n_bins + 1, size=(n, f)).astype(np.uint8)  # code n_bins: missing
    shape = (n,) if n_outputs == 1 else (n, n_outputs)
    g, h = rng.normal(size=shape), rng.random(size=shape)
    parent_rows = rng.permutation(n)[:700]
    left = np.isin(parent_rows, rng.permutation(n)[:400])
    parent = build_histogram(bins, parent_rows, g, h, n_bins)
    child = build_histogram(bins, parent_rows[left], g, h, n_bins)
    sibling = build_histogram(bins, parent_rows[~left], g, h, n_bins)
    assert parent[0].shape == (f, n_bins + 1) + shape[1:]
    for derived, direct in zip(subtract_histogram(parent, child), sibling, strict=True):
        np.testing.assert_allclose(derived, direct, atol=1e-9)
    g_miss = g[parent_rows][bins[parent_rows, 2] == n_bins].sum(axis=0)
    np.testing.assert_allclose(parent[0][2, n_bins], g_miss)
    for feature_sums in parent[0]:  # every row is in exactly one bin of each feature
        np.testing.assert_allclose(feature_sums.sum(axis=0), g[parent_rows].sum(axis=0))


def test_best_split_over_party_blocks_equals_best_over_all_features():
    rng = np.random.default_rng(3)
    n, n_bins = 500, 8
    bins = rng.integers(0, n_bins + 1, size=(n, 7)).astype(np.uint8)
    bins[:, 5] = bins[:, 1]  # a duplicate column ties with feature 1: the lower id must win
    g = rng.normal(size=n) + (bins[:, 1] < 3)
    h = np.full(n, 0.25)
    G, H = build_histogram(bins, np.arange(n), g, h, n_bins)
    params = Regularization(reg_lambda=1.0, gamma=0.0, min_child_weight=1.0)
    whole = find_best_split(G, H, params)
    assert whole.feature == 1
    guest, host = np.array([5, 0, 3]), np.array([1, 2, 4, 6])
    totals = (g.sum(), h.sum())
    per_party = [find_best_split(G[ids], H[ids], params, totals, features=ids) for ids in (guest, host)]
    assert per_party[0].feature == 5 and per_party[0].gain == whole.gain
    assert best_of(per_party) == whole
    assert find_best_split(G, H, Regularization(gamma=whole.gain + 1)) is None


def test_binner_codes_edges_thresholds_and_persistence():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=1000), rng.integers(0, 4, size=1000), rng.normal(size=1000)])
    X[::7, 2] = np.nan
    binner = QuantileBinner(max_bin=16).fit(X)
    codes = binner.transform(X)
    assert codes.dtype == np.uint8 and binner.missing_bin == 16
    assert binner.n_bins == [16, 4, 16]
    assert all(np.all(np.diff(e) > 0) for e in binner.edges)
    assert np.array_equal(codes[:, 2] == 16, np.isnan(X[:, 2]))
    for feature in range(3):  # every fitted bin holds rows, and a bin's threshold splits values as codes
        present = codes[:, feature] != binner.missing_bin
        assert len(np.unique(codes[present, feature])) == binner.n_bins[feature]
        for b in range(-1, binner.n_bins[feature]):
            left = X[present, feature] <= binner.threshold(feature, b)
            assert np.array_equal(left, codes[present, feature] <= b)
    extreme = binner.transform(np.array([[1e9, -1e9, np.nan]]))
    assert extreme.tolist() == [[15, 0, 16]]
    restored = QuantileBinner.from_dict(json.loads(json.dumps(binner.to_dict())))
    assert np.array_equal(restored.transform(X), codes)
    assert QuantileBinner(max_bin=300).fit(X).transform(X).dtype == np.uint16


def test_goss_keeps_the_largest_gradients_and_reweights_a_sample_of_the_rest():
    rng = np.random.default_rng(0)
    g, h = rng.normal(size=1000), rng.random(1000)
    sampling = Sampling(goss=True, top_rate=0.1, other_rate=0.2, seed=5)
    g2, h2 = sampling.rows(0, g, h)
    top = np.argsort(-np.abs(g))[:100]
    np.testing.assert_array_equal(g2[top], g[top])
    rest = np.setdiff1d(np.arange(1000), top)
    kept = rest[g2[rest] != 0]
    assert len(kept) == 200
    np.testing.assert_allclose(g2[kept], g[kept] * 0.9 / 0.2)
    np.testing.assert_allclose(h2[kept], h[kept] * 0.9 / 0.2)
    g3, _ = sampling.rows(1, g, h)
    assert not np.array_equal(g2 != 0, g3 != 0), "every tree draws its own sample"


def test_uniform_row_and_column_sampling_are_seeded_and_fresh_without_a_seed():
    g = np.ones(10_000)
    sampling = Sampling(subsample=0.3, colsample_bytree=0.4, seed=1)
    used = sampling.rows(0, g, g)[0] != 0
    assert abs(used.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(used, Sampling(subsample=0.3, seed=1).rows(0, g, g)[0] != 0)
    columns = sampling.columns(2, 0, 10)
    assert len(columns) == 4 and np.all(np.diff(columns) > 0)
    assert any(not np.array_equal(columns, sampling.columns(2, t, 10)) for t in range(1, 5))
    assert Sampling(subsample=0.5).with_seed().seed != Sampling(subsample=0.5).with_seed().seed
    with pytest.raises(ValueError):
        Sampling(goss=True, subsample=0.5)


@pytest.mark.parametrize("n", [40, 3000])
def test_encrypted_histogram_equals_the_product_of_each_bins_rows(n, pk):
    """Grouping features (2 or 3 at a time on large nodes) and parsing the wire bytes in the worker
    processes must not change any bin's product."""
    rng = np.random.default_rng(n)
    values = pk.encrypt(rng.integers(0, 1000, n))
    modulus = pk.ciphertext_modulus
    wire = WireRows.from_wire(pk.ciphertexts_to_bytes(values), n, pk.ciphertexts_from_bytes)
    codes = rng.integers(0, 5, size=(n, 7)).astype(np.uint8)
    assert _group_size(n, 7, 5) == (1 if n == 40 else 3)
    rows = np.flatnonzero(rng.random(n) < 0.7)
    hist = encrypted_histogram(wire, codes, rows, 5, modulus)
    for j in range(7):
        for b in range(5):
            expected = gmpy2.mpz(1)
            for v in values[rows[codes[rows, j] == b]]:
                expected = expected * v % modulus
            assert hist[j, b] == expected, (j, b)


def test_wire_rows_of_no_rows_give_empty_sums_and_bad_lengths_are_refused(pk):
    empty = WireRows.from_wire(b"", 0, pk.ciphertexts_from_bytes)
    hist = encrypted_histogram(empty, np.zeros((0, 3), dtype=np.uint8), np.arange(0), 4, pk.ciphertext_modulus)
    assert hist.shape == (3, 4) and all(v == 1 for v in hist.ravel())  # 1 = the empty sum
    with pytest.raises(ValueError, match="equal width"):
        WireRows.from_wire(b"\x01" * 7, 2, pk.ciphertexts_from_bytes)
