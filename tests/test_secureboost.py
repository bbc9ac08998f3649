"""SecureBoost grows the trees the plaintext reference grows on the joined columns (and so XGBoost's),
with one or two hosts, every objective and missing values; hosts see ciphertexts only; joint
prediction reproduces the training scores; the components run as a job after PSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import parallel
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.ml.metrics import roc_auc
from sharedml.ml.preprocess import QuantileBinner
from sharedml.ml.tree import BoostParams, PlainBoost
from sharedml.ml.tree.host_model import HostSplit, NodeKey, splits_of, splits_to_model
from sharedml.ml.tree.joint_predict import predict_guest, predict_host
from sharedml.ml.tree.params import SecureBoostParams
from sharedml.ml.tree.secureboost import fit_guest, fit_host
from sharedml.runtime.simulate import simulate

xgb = pytest.importorskip("xgboost")
KEY_BITS = 1024  # test speed; the component's default is 2048


@pytest.fixture(autouse=True, scope="module")
def one_process():
    parallel.configure(workers=1)  # small arrays: worker processes would only add start-up time
    yield


@pytest.fixture(scope="module")
def breast(data_dir):
    guest = pd.read_csv(data_dir / "breast_hetero_guest.csv.gz")
    host = pd.read_csv(data_dir / "breast_hetero_host.csv.gz")
    joined = guest.merge(host, on="id", suffixes=("_g", "_h"))
    guest_x = joined[[c for c in joined.columns if c.endswith("_g")]].to_numpy(np.float64)
    host_x = joined[[c for c in joined.columns if c.endswith("_h")]].to_numpy(np.float64)
    return guest_x, host_x, joined["y"].to_numpy(np.float64)


def secure_fit(guest_x, hosts_x: dict[str, np.ndarray], y, params: SecureBoostParams, recorder=None, valid=None):
    """Fit as guest + hosts in threads; `valid`: (guest's validation X, hosts' validation Xs, y)."""
    roles = {"guest": "guest", **{h: "host" for h in hosts_x}}

    def fn(ctx):
        if ctx.role == "guest":
            return fit_guest(ctx, params, guest_x, y, *((valid[0], valid[2]) if valid else ()))
        return fit_host(ctx, params, hosts_x[ctx.party], valid[1][ctx.party] if valid else None)
    return simulate(fn, roles, timeout=120, recorder=recorder)


def reference(guest_x, hosts_x, y, params: SecureBoostParams) -> tuple[PlainBoost, np.ndarray]:
    """The plaintext learner on the joined codes, with the very parameters the secure fit took."""
    blocks = [guest_x, *hosts_x.values()]
    codes = np.hstack([QuantileBinner(params.max_bin).fit_transform(x) for x in blocks])
    plain = PlainBoost(params, column_blocks=[x.shape[1] for x in blocks]).fit(codes, y)
    return plain, codes


def assert_same_trees(out, plain: PlainBoost, widths: dict[str, int]) -> None:
    """Every split node: same owner-side feature (in joined numbering) and bin as the reference."""
    offsets, start = {}, 0
    for party, width in widths.items():
        offsets[party], start = start, start + width
    trees = out["guest"]["model"]["trees"]
    assert len(trees) == len(plain.trees)
    for t, (ours, ref) in enumerate(zip(trees, plain.trees, strict=True)):
        assert len(ours["owner"]) == len(ref.feature), f"tree {t}: different shape"
        for node, feature in enumerate(ref.feature):
            if feature < 0:
                assert ours["left"][node] < 0
                assert ours["value"][node] == pytest.approx(ref.value[node], abs=1e-12)
                continue
            owner = ours["owner"][node] or "guest"
            if owner == "guest":
                split = (ours["feature"][node], ours["bin"][node], ours["default_left"][node])
            else:
                split = tuple(out[owner]["model"]["splits"][f"{t}:{node}"])
            assert (split[0] + offsets[owner], split[1], split[2]) == \
                (ref.feature[node], ref.bin[node], ref.default_left[node]), f"tree {t} node {node}"


def test_breast_same_trees_as_the_plaintext_reference_and_xgboost_auc(breast):
    guest_x, host_x, y = breast
    params = SecureBoostParams(n_estimators=5, max_depth=4, key_bits=KEY_BITS)
    out = secure_fit(guest_x, {"host": host_x}, y, params)
    plain, codes = reference(guest_x, {"host": host_x}, y, params)
    assert_same_trees(out, plain, {"guest": guest_x.shape[1], "host": host_x.shape[1]})
    np.testing.assert_allclose(out["guest"]["margin"], plain.predict_margin(codes), atol=1e-9)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4, "eta": 0.3,
                         "max_bin": params.max_bin + 1, "nthread": 1}, xgb.DMatrix(codes.astype(np.float32), label=y),
                        5)
    theirs = roc_auc(y, booster.predict(xgb.DMatrix(codes.astype(np.float32))))
    assert abs(roc_auc(y, 1 / (1 + np.exp(-out["guest"]["margin"]))) - theirs) <= 0.002


@pytest.mark.filterwarnings("ignore:1024-bit Paillier keys")
def test_two_hosts_missing_values_and_paillier(breast):
    guest_x, host_x, y = breast
    host_x = host_x.copy()
    host_x[np.random.default_rng(3).random(host_x.shape) < 0.1] = np.nan  # learned default directions
    hosts = {"h1": host_x[:, :8], "h2": host_x[:, 8:]}
    params = SecureBoostParams(n_estimators=2, max_depth=3, key_bits=KEY_BITS, he_scheme="paillier",
                         reg_lambda=2.0, gamma=0.1, min_child_weight=2.0)
    out = secure_fit(guest_x, hosts, y, params)
    plain, codes = reference(guest_x, hosts, y, params)
    assert_same_trees(out, plain, {"guest": guest_x.shape[1], "h1": 8, "h2": host_x.shape[1] - 8})
    np.testing.assert_allclose(out["guest"]["margin"], plain.predict_margin(codes), atol=1e-9)


@pytest.mark.parametrize("objective", ["multi:softmax", "reg:squarederror"])
def test_other_objectives_match_the_reference(objective):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6))
    y = (np.digitize(X[:, 0] + X[:, 4], [-0.5, 0.5]) if objective == "multi:softmax"
         else 3 * X[:, 1] - 2 * X[:, 5] + rng.normal(size=300))
    params = SecureBoostParams(objective=objective, n_estimators=2, max_depth=3, key_bits=KEY_BITS)
    out = secure_fit(X[:, :3], {"host": X[:, 3:]}, y, params)
    plain, codes = reference(X[:, :3], {"host": X[:, 3:]}, y, params)
    assert_same_trees(out, plain, {"guest": 3, "host": 3})
    np.testing.assert_allclose(out["guest"]["margin"], plain.predict_margin(codes), atol=1e-9)


@pytest.mark.parametrize("sampling", [{"subsample": 0.7, "colsample_bytree": 0.5, "seed": 7},
                                      {"goss": True, "top_rate": 0.2, "other_rate": 0.3, "colsample_bytree": 0.8,
                                       "seed": 3}],
                         ids=["uniform", "goss"])
def test_row_and_column_sampling_match_the_reference(breast, sampling):
    guest_x, host_x, y = breast
    hosts = {"h1": host_x[:, :8], "h2": host_x[:, 8:]}
    params = SecureBoostParams(n_estimators=3, max_depth=3, key_bits=KEY_BITS, **sampling)
    out = secure_fit(guest_x, hosts, y, params)
    plain, codes = reference(guest_x, hosts, y, params)
    assert_same_trees(out, plain, {"guest": guest_x.shape[1], "h1": 8, "h2": host_x.shape[1] - 8})
    np.testing.assert_allclose(out["guest"]["margin"], plain.predict_margin(codes), atol=1e-9)
    unsampled = SecureBoostParams(n_estimators=3, max_depth=3)
    assert not np.allclose(plain.predict_margin(codes), reference(guest_x, hosts, y, unsampled)[0].predict_margin(
        codes)), "sampling changed nothing: the test would not notice it being ignored"


def test_guest_only_first_round_involves_no_host(breast):
    guest_x, host_x, y = breast
    params = SecureBoostParams(n_estimators=2, max_depth=3, key_bits=KEY_BITS, guest_only_rounds=1)
    records = []
    out = secure_fit(guest_x, {"host": host_x}, y, params, recorder=records.append)
    first, second = out["guest"]["model"]["trees"]
    assert set(first["owner"]) == {""} and "host" in second["owner"]
    assert not [key for key in out["host"]["model"]["splits"] if key.startswith("0:")]
    to_host_first_tree = [r for r in records if r.dst == "host" and r.key.tag.startswith("sb/0/")]
    assert [r.key.tag for r in to_host_first_tree] == ["sb/0/gh"]
    assert len(to_host_first_tree[0].payload) < 100  # "guest only": no ciphertexts
    plain = PlainBoost(BoostParams(n_estimators=1, max_depth=3, max_bin=params.max_bin)).fit(
        QuantileBinner(params.max_bin).fit_transform(guest_x), y)
    assert first["feature"] == plain.trees[0].feature.tolist()
    assert first["bin"] == plain.trees[0].bin.tolist()


def test_early_stopping_keeps_the_best_round_as_xgboost_does(breast):
    guest_x, host_x, y = breast
    train, valid = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    params = SecureBoostParams(n_estimators=40, max_depth=3, learning_rate=0.5, key_bits=KEY_BITS,
                               early_stopping_rounds=2)
    out = secure_fit(guest_x[train], {"host": host_x[train]}, y[train], params,
                     valid=(guest_x[valid], {"host": host_x[valid]}, y[valid]))
    model = out["guest"]["model"]
    binners = [QuantileBinner(params.max_bin).fit(x[train]) for x in (guest_x, host_x)]
    codes = [np.hstack([b.transform(x[rows]) for b, x in zip(binners, (guest_x, host_x), strict=True)])
             for rows in (train, valid)]
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "eta": 0.5,
                         "max_bin": params.max_bin + 1, "nthread": 1},
                        xgb.DMatrix(codes[0].astype(np.float32), label=y[train]), 40,
                        evals=[(xgb.DMatrix(codes[1].astype(np.float32), label=y[valid]), "valid")],
                        early_stopping_rounds=2, verbose_eval=False)
    assert booster.best_iteration < 38, "no early stop happened: the test would prove nothing"
    assert model["best_round"] == booster.best_iteration
    assert len(model["trees"]) == booster.best_iteration + 1
    assert all(int(key.split(":")[0]) <= model["best_round"] for key in out["host"]["model"]["splits"])
    ours = 1 / (1 + np.exp(-out["guest"]["margin"]))
    np.testing.assert_allclose(ours, booster.predict(xgb.DMatrix(codes[0].astype(np.float32)),
                                                     iteration_range=(0, booster.best_iteration + 1)), atol=1e-5)


def test_hosts_receive_only_ciphertexts_and_prediction_reproduces_training(breast):
    guest_x, host_x, y = breast
    params = SecureBoostParams(n_estimators=2, max_depth=3, key_bits=KEY_BITS)
    records = []
    out = secure_fit(guest_x, {"host": host_x}, y, params, recorder=records.append)
    to_host = b"".join(r.payload for r in records if r.dst == "host")
    first_g = 1 / (1 + np.exp(-np.full(len(y), np.log(y.mean() / (1 - y.mean()))))) - y
    for secret in (y, first_g, 0.25 * np.ones(3)):  # labels, first-round gradients (raw float64 bytes)
        assert np.asarray(secret, dtype=np.float64)[:3].tobytes() not in to_host
    assert {r.key.tag.split("/")[-1] for r in records if r.dst == "host"} <= {"setup", "gh", "won", "partition"}

    def predict(ctx):
        if ctx.role == "guest":
            return predict_guest(ctx, out["guest"]["model"], guest_x)
        return predict_host(ctx, out["host"]["model"], host_x)
    margins = simulate(predict, {"guest": "guest", "host": "host"}, timeout=30)["guest"]
    np.testing.assert_allclose(margins, out["guest"]["margin"], atol=1e-12)


def test_saved_host_splits_keep_their_text_keys_and_load_as_node_keys():
    """Host models store splits under "tree:node" (as models saved before NodeKey did); both directions agree."""
    saved = {"splits": {"0:2": [3, 5, True], "1:0": [0, -1, False], "0:10": [1, 7, False]}}
    splits = splits_of(saved)
    assert list(splits) == [NodeKey(0, 10), NodeKey(0, 2), NodeKey(1, 0)]  # the stored keys' text order
    assert splits[NodeKey(0, 2)] == HostSplit(feature=3, bin=5, default_left=True)
    assert splits_to_model(splits) == saved["splits"]


JOB = """
job: vertical
timeout: 120
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  boost: {component: hetero_secureboost, inputs: {train: align.data, validate: align.data},
          params: {n_estimators: 3, max_depth: 3, key_bits: 1024, early_stopping_rounds: 2}}
  score: {component: hetero_secureboost_predict, inputs: {model: boost.model, data: align.data}}
"""


@pytest.mark.slow
def test_psi_then_secureboost_then_prediction_as_a_job(tmp_path, data_dir, write_catalogs):
    catalogs = write_catalogs({
        party: pd.read_csv(data_dir / f"breast_hetero_{name}.csv.gz").iloc[rows]
        for party, name, rows in (("bank", "guest", slice(0, 500)), ("shop", "host", slice(60, None)))})
    result = LocalRunner(tmp_path / "runs").run(parse_job(JOB), catalogs)
    assert result.state == "succeeded", result.error
    trained = result.output("bank", "boost", "predictions")
    scored = result.output("bank", "score", "predictions")
    assert len(scored) == 440 and list(scored.columns) == ["id", "y", "score", "predicted"]
    np.testing.assert_allclose(scored["score"], trained["score"], atol=1e-12)
    assert roc_auc(scored["y"], scored["score"]) > 0.98
    assert set(result.output("shop", "boost", "importance")["feature"]) == {f"x{i}" for i in range(20)}
    with pytest.raises(Exception, match="no output 'predictions'"):
        result.output("shop", "boost", "predictions")
