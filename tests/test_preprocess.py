"""Preprocessing components: hetero_binning's WOE/IV of host features equal a plaintext computation on
the joined data while hosts never receive a label; feature selection keeps the top IVs at each party;
scale / impute / one_hot equal scikit-learn's; data_split puts the same rows in the same split at every
party; a fitted model re-applied to new data transforms it the same way; bad input fails clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import parallel
from sharedml.ml.preprocess import EqualWidthBinner, QuantileBinner
from sharedml.ml.preprocess.encoding import OneHotParams, one_hot
from sharedml.ml.preprocess.hetero_binning import BinningParams, hetero_binning
from sharedml.ml.preprocess.impute import ImputeParams, impute
from sharedml.ml.preprocess.scaling import ScaleParams, scale
from sharedml.ml.preprocess.selection import SelectionParams, feature_selection
from sharedml.ml.preprocess.split import SplitParams, data_split
from sharedml.net.serialization import dumps_bytes
from sharedml.runtime.simulate import SimulationError, simulate

sklearn = pytest.importorskip("sklearn")
from sklearn.feature_selection import VarianceThreshold  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler  # noqa: E402

KEY_BITS = 1024  # test speed; the component's default is 2048
ROLES = {"bank": "guest", "shop": "host"}


@pytest.fixture(autouse=True, scope="module")
def one_process():
    parallel.configure(workers=1)  # small arrays: worker processes would only add start-up time
    yield


def aligned(data_dir, name: str, rows: int | None = None) -> dict[str, pd.DataFrame]:
    """The guest's and the host's tables of a hetero example, rows in the same order (as after psi)."""
    guest = pd.read_csv(data_dir / f"{name}_guest.csv.gz").iloc[:rows]
    host = guest[["id"]].merge(pd.read_csv(data_dir / f"{name}_host.csv.gz"), on="id")
    return {"bank": guest.reset_index(drop=True), "shop": host}


def run(fn, params, tables: dict[str, pd.DataFrame], recorder=None, roles=ROLES, **inputs: dict) -> dict:
    """Run component `fn` at every party: its outputs and metrics; `inputs`: more inputs, each {party: value}."""
    def party(ctx):
        outputs = fn(ctx, params, tables[ctx.party], **{name: by_party[ctx.party] for name, by_party in inputs.items()})
        return {**outputs, "metrics": ctx.metrics.latest()}
    return simulate(party, roles, timeout=60, recorder=recorder)


def reference_woe(codes: np.ndarray, y: np.ndarray, adjustment: float = 0.5) -> tuple[dict, float]:
    """WOE per occupied bin and IV of one binned column, in plain pandas, FATE's rule for one-class bins."""
    counts = pd.DataFrame({"bin": codes, "y": y}).groupby("bin")["y"].agg(["sum", "count"])
    events, non_events = counts["sum"], counts["count"] - counts["sum"]
    one_class = ((events == 0) | (non_events == 0)).astype(float)
    event_share = (events + adjustment * one_class) / y.sum()
    non_event_share = (non_events + adjustment * one_class) / (len(y) - y.sum())
    woe = np.log(event_share / non_event_share)
    return dict(zip(counts.index, woe, strict=True)), float(((event_share - non_event_share) * woe).sum())


@pytest.fixture(scope="module")
def credit(data_dir):
    return aligned(data_dir, "default_credit_hetero", 2000)


@pytest.fixture(scope="module")
def breast(data_dir):
    return aligned(data_dir, "breast_hetero")


@pytest.fixture(scope="module")
def breast_fit(breast):
    """One recorded hetero_binning fit (quantile, WOE transform) shared by several tests."""
    records = []
    out = run(hetero_binning, BinningParams(key_bits=KEY_BITS, transform="woe"), breast, records.append)
    return out, records


# ---- hetero_binning: WOE / IV -----------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["breast", "credit"])
def test_woe_and_iv_of_every_feature_equal_a_plaintext_computation_on_the_joined_data(dataset, request):
    tables = request.getfixturevalue(dataset)
    params = BinningParams(key_bits=KEY_BITS, bins=8, anonymous=False)
    out = run(hetero_binning, params, tables)
    guest_model = out["bank"]["model"]
    y = tables["bank"]["y"].to_numpy(np.float64)
    blocks = [("bank", "", tables["bank"].drop(columns=["id", "y"])),
              ("shop", "shop:", tables["shop"].drop(columns="id"))]
    for party, prefix, block in blocks:
        codes = QuantileBinner(8).fit_transform(block.to_numpy(np.float64))
        for j, name in enumerate(block.columns):
            woe, iv = reference_woe(codes[:, j], y)
            stats = guest_model["stats"][prefix + name]
            assert guest_model["owners"][prefix + name] == party
            assert guest_model["iv"][prefix + name] == pytest.approx(iv, rel=1e-12, abs=1e-12)
            np.testing.assert_array_equal(stats["events"], np.bincount(codes[:, j], weights=y, minlength=9))
            for b, value in enumerate(stats["woe"]):
                assert value == pytest.approx(woe.get(b, 0.0), rel=1e-12, abs=1e-12)
    assert len(guest_model["iv"]) == tables["bank"].shape[1] - 2 + tables["shop"].shape[1] - 1
    assert out["bank"]["metrics"]["iv/shop:x1"] == guest_model["iv"]["shop:x1"]
    assert "iv" not in out["shop"]["model"] and "woe" not in out["shop"]["model"]  # transform none: hosts get no WOE
    pd.testing.assert_frame_equal(out["shop"]["data"], tables["shop"])  # transform none: data unchanged


def test_hosts_never_receive_the_labels(breast, breast_fit):
    out, records = breast_fit
    to_host = b"".join(r.payload for r in records if r.dst == "shop")
    assert {r.key.tag for r in records if r.dst == "shop"} == {"binning/labels", "binning/woe"}
    y = breast["bank"]["y"].to_numpy()[:64]
    encodings = [y.astype(t).tobytes() for t in (np.int64, np.int32, np.float64, np.float32, np.uint8)]
    encodings += [np.packbits(y.astype(bool)).tobytes(), ",".join(map(str, y)).encode()]
    for needle in encodings:  # the search finds labels sent in clear, in any of these encodings ...
        assert needle in dumps_bytes({"labels": np.frombuffer(needle, np.uint8)})
        assert needle not in to_host  # ... and they were not


def test_the_guest_sees_host_features_under_anonymous_keys(breast):
    tables = {"bank": breast["bank"].iloc[:200], "shop": breast["shop"].iloc[:200, :4].set_axis(
        ["id", "salary", "debt", "age"], axis=1)}
    records = []
    out = run(hetero_binning, BinningParams(key_bits=KEY_BITS, bins=4), tables, records.append)
    assert [k for k in out["bank"]["model"]["iv"] if ":" in k] == ["shop:x0", "shop:x1", "shop:x2"]
    to_guest = b"".join(r.payload for r in records if r.dst == "bank")
    assert b"shop:x1" in to_guest and not any(name in to_guest for name in (b"salary", b"debt", b"age"))
    named = run(hetero_binning, BinningParams(key_bits=KEY_BITS, bins=4, anonymous=False), tables)
    assert [k for k in named["bank"]["model"]["iv"] if ":" in k] == ["shop:salary", "shop:debt", "shop:age"]


def test_woe_transform_at_each_party_and_a_fitted_model_reapplied_to_new_rows(breast, breast_fit):
    out, _ = breast_fit
    guest_model, host_model = out["bank"]["model"], out["shop"]["model"]
    host_codes = QuantileBinner(10).fit_transform(breast["shop"].drop(columns="id").to_numpy(np.float64))
    for j, key in enumerate(host_model["keys"]):  # the host's WOE table is the guest's of the host's key
        assert host_model["woe"][j] == guest_model["stats"][key]["woe"]
        expected = np.asarray(host_model["woe"][j])[host_codes[:, j]]
        np.testing.assert_array_equal(out["shop"]["data"][f"x{j}"], expected)
    assert out["bank"]["data"]["y"].equals(breast["bank"]["y"])
    assert out["shop"]["data"]["id"].equals(breast["shop"]["id"])
    new = {party: table.iloc[::-3].reset_index(drop=True) for party, table in breast.items()}
    records = []
    again = run(hetero_binning, BinningParams(key_bits=KEY_BITS, transform="woe"), new, records.append,
                model={"bank": guest_model, "shop": host_model})
    assert not records  # applying a fit talks to no one
    for party in ROLES:
        expected = out[party]["data"].iloc[::-3].reset_index(drop=True)
        pd.testing.assert_frame_equal(again[party]["data"], expected)


def test_two_hosts_each_get_the_woe_of_their_own_features_only(breast, breast_fit):
    tables = {"bank": breast["bank"], "shop": breast["shop"][["id"] + [f"x{j}" for j in range(12)]],
              "telco": breast["shop"][["id"] + [f"x{j}" for j in range(12, 20)]]}
    records = []
    out = run(hetero_binning, BinningParams(key_bits=KEY_BITS, transform="woe"), tables, records.append,
              roles={"bank": "guest", "shop": "host", "telco": "host"})
    one_host = breast_fit[0]["bank"]["model"]
    for host, columns in (("shop", range(12)), ("telco", range(12, 20))):
        model = out[host]["model"]
        assert model["keys"] == [f"{host}:x{i}" for i in range(len(columns))]
        for i, j in enumerate(columns):  # same bins as with one host holding all 20 columns
            assert model["woe"][i] == one_host["stats"][f"shop:x{j}"]["woe"]
            assert out["bank"]["model"]["iv"][f"{host}:x{i}"] == one_host["iv"][f"shop:x{j}"]
    assert not [r for r in records if {r.src, r.dst} == {"shop", "telco"}]  # hosts never talk to each other


def test_paillier_gives_the_same_iv_as_ou(breast, breast_fit):
    with pytest.warns(UserWarning, match="for tests only"):
        out = run(hetero_binning, BinningParams(key_bits=KEY_BITS, he_scheme="paillier"), breast)
    assert out["bank"]["model"]["iv"] == breast_fit[0]["bank"]["model"]["iv"]


def test_equal_width_and_quantile_bins():
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.normal(size=4000), rng.exponential(size=4000), np.full(4000, 3.0)])
    X[::10, 0] = np.nan
    width = EqualWidthBinner(10).fit(X)
    values = X[~np.isnan(X[:, 0]), 0]
    np.testing.assert_allclose(np.diff(width.edges[0]), np.ptp(values) / 10)
    codes = width.transform(X)
    np.testing.assert_array_equal(np.bincount(codes[~np.isnan(X[:, 0]), 0], minlength=10),
                                  np.histogram(values, bins=10)[0])
    assert (codes[np.isnan(X[:, 0]), 0] == width.missing_bin).all() and width.n_bins[2] == 1
    quantile = QuantileBinner(10).fit_transform(X)
    np.testing.assert_array_equal(np.bincount(quantile[:, 1], minlength=11), [400] * 10 + [0])
    assert EqualWidthBinner.from_dict(width.to_dict()).edges[1].tolist() == width.edges[1].tolist()


def test_equal_width_bin_codes_at_every_party_with_missing_values_kept(credit):
    tables = {party: table.copy() for party, table in credit.items()}
    tables["shop"].loc[::7, "x3"] = np.nan
    params = BinningParams(key_bits=KEY_BITS, method="equal_width", bins=6, transform="bin",
                           columns={"shop": ["x3", "x5"]})
    out = run(hetero_binning, params, tables)
    host = out["shop"]["data"]
    for name in ("x3", "x5"):
        column = tables["shop"][name].to_numpy()
        expected = EqualWidthBinner(6).fit_transform(column[:, None])[:, 0].astype(float)
        expected[np.isnan(column)] = np.nan
        np.testing.assert_array_equal(host[name], expected)
    assert host["x0"].equals(tables["shop"]["x0"])  # not in `columns`: untouched
    assert list(out["bank"]["model"]["iv"])[-2:] == ["shop:x0", "shop:x1"]  # keys number the binned columns
    assert out["bank"]["model"]["stats"]["shop:x0"]["rows"][-1] == tables["shop"]["x3"].isna().sum()  # missing bin


# ---- feature_selection ------------------------------------------------------------------------------


def test_selection_keeps_the_top_k_by_iv_at_each_party_and_hosts_learn_only_their_own_verdict(breast, breast_fit):
    models = {party: breast_fit[0][party]["model"] for party in ROLES}
    iv = models["bank"]["iv"]
    top = set(sorted(iv, key=iv.get, reverse=True)[:8])
    records = []
    out = run(feature_selection, SelectionParams(top_k=8), breast, records.append, binning_model=models)
    assert set(out["bank"]["model"]["kept"]) == {k for k in top if ":" not in k}
    assert set(out["shop"]["model"]["kept"]) == {f"x{k.split(':x')[1]}" for k in top if k.startswith("shop:")}
    for party in ROLES:
        kept = out[party]["model"]["kept"]
        assert [c for c in out[party]["data"].columns if c not in ("id", "y")] == kept
    to_host = b"".join(r.payload for r in records if r.dst == "shop")
    assert not any(np.float64(v).tobytes() in to_host for v in iv.values())  # no IV reaches the host
    by_threshold = run(feature_selection, SelectionParams(iv_threshold=1.0), breast, binning_model=models)
    assert set(by_threshold["bank"]["model"]["kept"]) | {f"shop:{c}" for c in by_threshold["shop"]["model"]["kept"]} \
        == {k for k, v in iv.items() if v >= 1.0}
    reapplied = run(feature_selection, SelectionParams(top_k=8), breast,
                    model={p: out[p]["model"] for p in ROLES})
    for party in ROLES:
        pd.testing.assert_frame_equal(reapplied[party]["data"], out[party]["data"])


def test_local_selection_by_missing_rate_and_variance_matches_sklearn(breast):
    tables = {party: table.copy() for party, table in breast.items()}
    tables["shop"]["x4"] = 1.0
    tables["shop"].loc[: len(tables["shop"]) // 2, "x7"] = np.nan
    params = SelectionParams(max_missing_rate=0.3, variance_threshold=0.5)
    out = run(feature_selection, params, tables)
    features = tables["shop"].drop(columns="id")
    variance_ok = set(features.columns[VarianceThreshold(0.5).fit(features).get_support()])
    expected = [c for c in features.columns if c in variance_ok and features[c].isna().mean() <= 0.3]
    assert out["shop"]["model"]["kept"] == expected and "x4" not in expected and "x7" not in expected
    assert "missing rate" in out["shop"]["model"]["dropped"]["x7"]


# ---- scale / impute / one_hot -------------------------------------------------------------------------


def with_gaps(table: pd.DataFrame, every: int = 9) -> pd.DataFrame:
    table = table.copy()
    for j, column in enumerate(c for c in table.columns if c not in ("id", "y")):
        table.loc[j % every::every, column] = np.nan
    return table


@pytest.mark.parametrize(("method", "reference"), [("standard", StandardScaler), ("min_max", MinMaxScaler)])
def test_scaling_equals_sklearn_and_reapplies_to_new_data(breast, method, reference):
    train = {p: with_gaps(t.iloc[:400]) for p, t in breast.items()}
    test = {p: t.iloc[400:].reset_index(drop=True) for p, t in breast.items()}
    fitted = run(scale, ScaleParams(method=method), train)
    again = run(scale, ScaleParams(method=method), test, model={p: fitted[p]["model"] for p in ROLES})
    for party, table in train.items():
        features = [c for c in table.columns if c not in ("id", "y")]
        sk = reference().fit(table[features])
        np.testing.assert_allclose(fitted[party]["data"][features], sk.transform(table[features]), atol=1e-12)
        np.testing.assert_allclose(again[party]["data"][features], sk.transform(test[party][features]), atol=1e-12)
        assert fitted[party]["data"]["id"].equals(table["id"])
    assert fitted["bank"]["data"]["y"].equals(train["bank"]["y"])


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_imputation_equals_sklearn_per_column(breast, strategy):
    train = {p: with_gaps(t.round(1)) for p, t in breast.items()}
    out = run(impute, ImputeParams(strategy=strategy, fill_value=-7.0), train)
    for party, table in train.items():
        features = [c for c in table.columns if c not in ("id", "y")]
        expected = SimpleImputer(strategy=strategy, fill_value=-7.0).fit_transform(table[features])
        np.testing.assert_allclose(out[party]["data"][features], expected, atol=1e-12)
    new = {p: with_gaps(t, every=4) for p, t in breast.items()}
    again = run(impute, ImputeParams(), new, model={p: out[p]["model"] for p in ROLES})
    fill = out["shop"]["model"]["fill"]
    gaps = new["shop"]["x3"].isna()
    assert (again["shop"]["data"]["x3"][gaps] == fill["x3"]).all()


def test_one_hot_equals_sklearn_and_unseen_categories_become_zeros():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"id": range(300), "city": rng.choice(["rome", "oslo", "lima"], 300),
                          "plan": rng.choice(["a", "b", None], 300), "age": rng.integers(18, 90, 300)})
    new = pd.DataFrame({"id": [1, 2, 3], "city": ["oslo", "paris", "lima"], "plan": [None, "b", "c"], "age": [1, 2, 3]})
    roles = {"solo": "host"}
    fitted = run(one_hot, OneHotParams(), {"solo": train}, roles=roles)
    again = run(one_hot, OneHotParams(), {"solo": new}, roles=roles, model={"solo": fitted["solo"]["model"]})
    sk = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train[["city", "plan"]])
    names = list(sk.get_feature_names_out())
    assert list(fitted["solo"]["data"].columns) == ["id", *names[:3], *names[3:], "age"]
    np.testing.assert_array_equal(fitted["solo"]["data"][names], sk.transform(train[["city", "plan"]]))
    np.testing.assert_array_equal(again["solo"]["data"][names], sk.transform(new[["city", "plan"]]))
    assert again["solo"]["data"].loc[1, names[:3]].sum() == 0  # "paris" was never seen
    coded = run(one_hot, OneHotParams(columns={"solo": ["age"]}, max_categories=80), {"solo": train}, roles=roles)
    assert f"age_{train['age'].min()}" in coded["solo"]["data"].columns and "city" in coded["solo"]["data"].columns


# ---- data_split ---------------------------------------------------------------------------------------


def test_split_puts_the_same_rows_in_the_same_split_at_every_party(credit):
    params = SplitParams(train=0.7, validate=0.1, test=0.2)
    out = run(data_split, params, credit)
    n = len(credit["bank"])
    for name, share in (("train", 0.7), ("validate", 0.1), ("test", 0.2)):
        assert out["bank"][name]["id"].equals(out["shop"][name]["id"])
        assert abs(len(out["bank"][name]) - share * n) <= 1
    ids = pd.concat([out["bank"][name]["id"] for name in ("train", "validate", "test")])
    assert sorted(ids) == sorted(credit["bank"]["id"]) and ids.is_unique
    assert list(out["shop"]["train"].columns) == list(credit["shop"].columns)
    seeded = [run(data_split, SplitParams(seed=7), credit)["bank"]["test"]["id"] for _ in range(2)]
    assert seeded[0].equals(seeded[1]) and not seeded[0].equals(out["bank"]["test"]["id"])


def test_stratified_split_keeps_the_class_mix_and_sends_hosts_only_the_assignment(credit):
    records = []
    out = run(data_split, SplitParams(train=0.6, validate=0.2, test=0.2, stratify=True), credit, records.append)
    y = credit["bank"]["y"]
    for name, share in (("train", 0.6), ("validate", 0.2), ("test", 0.2)):
        split = out["bank"][name]
        assert abs(len(split) - share * len(y)) <= 1
        for label in (0, 1):
            assert abs((split["y"] == label).sum() - share * (y == label).sum()) <= 2
        assert out["shop"][name]["id"].equals(split["id"])
    to_host = [r for r in records if r.dst == "shop"]
    assert [r.key.tag for r in to_host] == ["split/assignment"]
    assert y.to_numpy()[:64].astype(np.uint8).tobytes() not in to_host[0].payload


# ---- errors -------------------------------------------------------------------------------------------


def failure(fn, params, tables, **inputs) -> str:
    with pytest.raises(SimulationError) as caught:
        run(fn, params, tables, **inputs)
    return str(caught.value)


def test_bad_input_fails_with_a_message_naming_party_column_and_fix(breast, breast_fit):
    message = failure(scale, ScaleParams(columns={"shop": ["x1", "nope"]}), breast)
    assert "'shop'" in message and "'nope'" in message and "columns['shop']" in message
    assert "x19" not in message  # the rest of a party's schema stays out of messages peers receive
    assert "not parties" in failure(scale, ScaleParams(columns={"telco": ["x1"]}), breast)
    assert "is an ID column or the label" in failure(scale, ScaleParams(columns={"bank": ["y"]}), breast)
    relabelled = {**breast, "bank": breast["bank"].assign(y=breast["bank"]["y"] * 2)}
    assert "binary label" in failure(hetero_binning, BinningParams(key_bits=KEY_BITS), relabelled)
    shorter = {**breast, "shop": breast["shop"].iloc[:-1]}
    assert "align the parties' rows" in failure(hetero_binning, BinningParams(key_bits=KEY_BITS), shorter)
    assert "align the parties' rows" in failure(data_split, SplitParams(), shorter)
    host_without_woe = {p: dict(breast_fit[0][p]["model"]) for p in ROLES}
    del host_without_woe["shop"]["woe"]
    assert "refit with `transform: woe`" in failure(hetero_binning, BinningParams(transform="woe"), breast,
                                                    model=host_without_woe)
    assert "not a scale model" in failure(scale, ScaleParams(), breast,
                                          model={p: breast_fit[0][p]["model"] for p in ROLES})
    assert "binning_model" in failure(feature_selection, SelectionParams(top_k=3), breast)
    with pytest.raises(ValueError, match="must be 1"):
        SplitParams(train=0.5, test=0.2)
    assert "set at least one of" in failure(feature_selection, SelectionParams(), breast)


# ---- as a job -----------------------------------------------------------------------------------------

JOB = """
job: preprocess
timeout: 120
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  split: {component: data_split, inputs: {data: align.data}, params: {train: 0.75, test: 0.25, stratify: true}}
  bins:  {component: hetero_binning, inputs: {data: split.train},
          params: {bins: 6, transform: woe, key_bits: 1024}}
  pick:  {component: feature_selection, inputs: {data: bins.data, binning_model: bins.model}, params: {top_k: 10}}
  bins_test: {component: hetero_binning, inputs: {data: split.test, model: bins.model}, params: {transform: woe}}
  pick_test: {component: feature_selection, inputs: {data: bins_test.data, model: pick.model}, params: {top_k: 10}}
"""


@pytest.mark.slow
def test_psi_split_binning_and_selection_as_a_job(tmp_path, data_dir, write_catalogs, monkeypatch):
    from sharedml.jobs.runner import LocalRunner
    from sharedml.jobs.spec import parse_job

    monkeypatch.setenv("SHAREDML_COMPONENT_MODULES", "sharedml.ml.preprocess.components")
    catalogs = write_catalogs({
        party: pd.read_csv(data_dir / f"breast_hetero_{name}.csv.gz").iloc[rows]
        for party, name, rows in (("bank", "guest", slice(0, 500)), ("shop", "host", slice(60, None)))})
    result = LocalRunner(tmp_path / "runs").run(parse_job(JOB), catalogs)
    assert result.state == "succeeded", result.error
    tests = {party: result.output(party, "pick_test", "data") for party in ROLES}
    trains = {party: result.output(party, "pick", "data") for party in ROLES}
    assert tests["bank"]["id"].equals(tests["shop"]["id"]) and len(tests["bank"]) == round(0.25 * 440)
    assert len(trains["bank"].columns) - 2 + len(trains["shop"].columns) - 1 == 10
    for party in ROLES:
        assert list(tests[party].columns) == list(trains[party].columns)
    iv = result.output("bank", "bins", "model")["iv"]
    assert len(iv) == 30 and all(value >= 0 for value in iv.values())
