"""ss_lr / ss_linr (vertical linear models trained on secret shares) against sklearn on the joined
plaintext, with and without a dealer, and what crosses the wire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from sharedml.crypto import parallel
from sharedml.ml.linear.ss_component import PredictParams, SSLinRParams, SSLRParams, ss_linr, ss_lr, ss_lr_predict
from sharedml.ml.metrics import rmse, roc_auc
from sharedml.net.serialization import dumps_bytes, loads
from sharedml.runtime.simulate import SimulationError, simulate

DEALER = {"bank": "guest", "telco": "host", "ttp": "dealer"}
FREE = {"bank": "guest", "telco": "host"}


def frames(data_dir: Path, name: str, rows: int | None = None) -> dict[str, pd.DataFrame]:
    tables = {p: pd.read_csv(data_dir / f"{name}_hetero_{side}.csv.gz") for p, side in (("bank", "guest"),
                                                                                     ("telco", "host"))}
    return {p: t.iloc[:rows] for p, t in tables.items()} if rows else tables


def train(component, params, tables: dict[str, pd.DataFrame], roles=DEALER, recorder=None) -> dict[str, dict]:
    return simulate(lambda ctx: component(ctx, params, tables.get(ctx.party)), roles, timeout=120,
                    recorder=recorder)


def joined(tables: dict[str, pd.DataFrame], key: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """The plaintext reference's input: guest and host columns joined on the id, standardised."""
    table = tables["bank"].merge(tables["telco"], on=key, suffixes=("_g", "_h"))
    X = table.drop(columns=[key, label]).to_numpy(np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0), table[label].to_numpy(np.float64)


def sklearn_auc(tables: dict[str, pd.DataFrame], alpha: float) -> float:
    X, y = joined(tables, "id", "y")
    return roc_auc(y, LogisticRegression(C=1 / (alpha * len(y)), max_iter=2000).fit(X, y).decision_function(X))


def auc(result: dict[str, dict]) -> float:
    table = result["bank"]["predictions"]
    return roc_auc(table["y"].to_numpy(), table["score"].to_numpy())


def test_breast_auc_matches_sklearn_and_predict_reproduces_the_scores(data_dir):
    tables = frames(data_dir, "breast")
    params = SSLRParams(triples="dealer", epochs=5, batch_size=128, learning_rate=1.0, alpha=1e-3, seed=3)
    result = train(ss_lr, params, tables)
    assert auc(result) >= sklearn_auc(tables, params.alpha) - 0.005
    guest, host = result["bank"]["model"], result["telco"]["model"]
    assert guest["features"] == [f"x{i}" for i in range(10)] and len(host["weights"]) == 20
    assert "intercept" in guest and "intercept" not in host and "predictions" not in result["telco"]
    models = {"bank": guest, "telco": host}
    again = simulate(lambda ctx: ss_lr_predict(ctx, PredictParams(), models[ctx.party], tables[ctx.party]), FREE)
    np.testing.assert_allclose(again["bank"]["predictions"]["score"], result["bank"]["predictions"]["score"])
    assert again["telco"] == {}


def test_default_credit_auc_matches_sklearn(data_dir):
    tables = frames(data_dir, "default_credit", 5000)  # the full 30,000 rows: benchmarks/ss_lr.py
    params = SSLRParams(triples="dealer", epochs=8, batch_size=512, learning_rate=0.2, momentum=0.8, alpha=1e-4,
                        seed=3)
    assert auc(train(ss_lr, params, tables)) >= sklearn_auc(tables, params.alpha) - 0.005


@pytest.mark.parametrize(("name", "key", "label", "settings"), [
    ("student", "id", "y", {"epochs": 40, "batch_size": 256, "learning_rate": 0.2, "momentum": 0.9,
                            "learning_rate_schedule": "inverse_sqrt", "alpha": 1e-3}),
    ("motor", "idx", "motor_speed", {"epochs": 40, "batch_size": 128, "learning_rate": 0.05, "momentum": 0.9,
                                     "alpha": 1e-2}),  # ill-conditioned columns: a stronger ridge
])
def test_linear_regression_rmse_within_one_percent_of_ridge(data_dir, name, key, label, settings):
    tables = frames(data_dir, name)
    params = SSLinRParams(triples="dealer", label=label, id_columns=[key], seed=3, **settings)
    table = train(ss_linr, params, tables)["bank"]["predictions"]
    X, y = joined(tables, key, label)
    reference = rmse(y, Ridge(alpha=params.alpha * len(y)).fit(X, y).predict(X))
    assert rmse(table[label].to_numpy(), table["predicted"].to_numpy()) <= 1.01 * reference


def test_dealer_free_training_matches_the_dealer_and_prepares_tuples_offline(data_dir):
    tables = frames(data_dir, "breast", 128)
    params = SSLRParams(epochs=1, batch_size=64, learning_rate=1.0, alpha=1e-3, seed=3, he_key_bits=1024)

    def party(ctx):
        return ss_lr(ctx, params, tables[ctx.party]), ctx.metrics.records

    try:
        free = simulate(party, FREE, timeout=120)
    finally:
        parallel.shutdown()
    with_dealer = train(ss_lr, params.model_copy(update={"triples": "dealer"}), tables)
    for p in FREE:  # same batches, same algorithm: only truncation rounding (±2^-18 per step) differs
        np.testing.assert_allclose(free[p][0]["model"]["weights"], with_dealer[p]["model"]["weights"], atol=1e-3)
    measured = {r["name"] for r in free["bank"][1]}
    assert {"offline_s", "offline_bytes", "online_s", "online_bytes"} <= measured


def test_three_parties_with_a_dealer_and_early_stopping(data_dir):
    tables = frames(data_dir, "breast")
    host = tables.pop("telco")
    tables |= {"isp": host[["id"] + [f"x{i}" for i in range(10)]],
               "shop": host[["id"] + [f"x{i}" for i in range(10, 20)]]}
    roles = {"bank": "guest", "isp": "host", "shop": "host", "ttp": "dealer"}
    train_rows, valid_rows = {p: t.iloc[:400] for p, t in tables.items()}, {p: t.iloc[400:] for p, t in tables.items()}
    params = SSLRParams(triples="dealer", epochs=30, batch_size=128, learning_rate=1.0, alpha=1e-2, seed=3,
                        early_stopping_rounds=2)

    def party(ctx):
        if ctx.role == "dealer":
            return ss_lr(ctx, params), []
        out = ss_lr(ctx, params, train_rows[ctx.party], valid_rows[ctx.party])
        return out, [r["value"] for r in ctx.metrics.records if r["name"] == "validation_loss"]

    result = simulate(party, roles, timeout=120)
    losses = result["bank"][1]
    best = result["bank"][0]["model"]["best_epoch"]
    assert len(losses) == params.epochs or len(losses) == best + 1 + params.early_stopping_rounds
    assert losses[best] == min(losses)
    assert all(result[p][0]["model"]["best_epoch"] == best for p in ("isp", "shop"))
    table = result["bank"][0]["predictions"]
    assert roc_auc(table["y"].to_numpy(), table["score"].to_numpy()) > 0.98


# -- what crosses the wire ------------------------------------------------------------------------
MPC_TAGS = {"mpc/open", "mpc/input", "mpc/reveal", "mpc/dealer/seed", "mpc/dealer/correction"}


def words(payload: bytes) -> list[np.ndarray]:
    """Every number in a message as the 64-bit words it travels as: each array (integers as uint64, reals as
    float64 bits) and each scalar."""
    found: list[np.ndarray] = []

    def walk(value):
        if isinstance(value, bool | int | float | np.generic):
            value = np.asarray(value)
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            as64 = value.astype(np.float64) if value.dtype.kind == "f" else value.astype(np.int64)
            found.append(as64.ravel().view(np.uint64))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(loads(payload))
    return found


def encodings(values: np.ndarray) -> np.ndarray:
    """The words a plaintext value could travel as: float64 bits, fixed point at 18 and 36 fractional bits;
    without the near-zero ones (small integers legitimately appear in shapes and counts)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    fixed = [np.rint(np.ldexp(values, f)).astype(np.int64) for f in (18, 36)]
    out = np.concatenate([values.view(np.int64), *fixed])
    return out[np.abs(out) > 2**16].view(np.uint64)


def looks_plain(array: np.ndarray) -> bool:
    """Whether an array of words is not uniform the way shares are: far more words than chance (2^-15) whose top
    16 bits are all 0 or all 1 (small fixed-point numbers), or float64 bits of a magnitude in [2^-30, 2^30]
    (chance 59/2048). Arrays of 0/1 words are opened bits, uniform as bits."""
    n = array.size
    if n and array.max() <= 1:  # opened bits (a comparison's bit masked with a daBit): as many ones as zeros
        return abs(array.mean() - 0.5) > 3 / np.sqrt(n) + 0.01
    small_fixed = int(np.isin(array >> np.uint64(48), [0, 0xFFFF]).sum())
    exponent = (array >> np.uint64(52)) & np.uint64(0x7FF)
    small_float = int(((exponent > 1023 - 30) & (exponent < 1023 + 30)).sum())
    return small_fixed > 3 + n / 1000 or small_float > 5 + n * 59 / 2048 + 6 * np.sqrt(n * 59 / 2048)


def label_windows(y: np.ndarray, width: int = 64) -> list[bytes]:
    """Byte patterns of `width` consecutive labels (with both classes), in every encoding they could be sent in."""
    patterns = []
    for start in range(0, len(y) - width, width):
        window = y[start:start + width]
        if window.min() != window.max():
            patterns += [window.astype(t).tobytes() for t in (np.float64, np.float32, np.int64, np.int32, np.uint8)]
            patterns.append(np.rint(np.ldexp(window, 18)).astype(np.int64).tobytes())
    return patterns


def test_the_host_never_sees_labels_or_residuals_and_the_guest_never_sees_host_features(data_dir):
    tables = frames(data_dir, "breast")
    records = []
    params = SSLRParams(triples="dealer", epochs=2, batch_size=128, learning_rate=1.0, alpha=1e-3, seed=3)
    train(ss_lr, params, tables, recorder=records.append)
    y = tables["bank"]["y"].to_numpy(np.float64)
    X_host = tables["telco"].drop(columns="id").to_numpy(np.float64)
    host_values = encodings(np.concatenate([X_host, (X_host - X_host.mean(axis=0)) / X_host.std(axis=0)]))
    patterns = label_windows(y)

    # the detectors catch what they look for
    leak = dumps_bytes({"y": y, "x": X_host[:5]})
    assert any(p in leak for p in patterns) and np.isin(np.concatenate(words(leak)), host_values).any()
    residual = np.linspace(-0.9, 0.9, 128)
    assert looks_plain(residual.view(np.uint64))
    assert looks_plain(np.rint(residual * 2**18).astype(np.int64).view(np.uint64))

    to_host = [r for r in records if r.dst == "telco"]
    assert {r.key.tag for r in to_host} <= MPC_TAGS | {"ss_linear/layout", "ss_linear/seed"}
    for record in to_host:
        assert not any(p in record.payload for p in patterns), record.key
        if record.key.tag in MPC_TAGS - {"mpc/dealer/seed"}:
            assert not any(looks_plain(a) for a in words(record.payload)), record.key
    for record in (r for r in records if r.dst in ("bank", "ttp")):
        assert not any(np.isin(a, host_values).any() for a in words(record.payload)), record.key
    to_dealer = {r.key.tag for r in records if r.dst == "ttp"}
    assert to_dealer == {"mpc/dealer/request"}  # the dealer sees no opening, input or partial score
    partial = [r for r in records if r.key.tag == "ss_linear/partial_score"]
    assert partial and all(r.dst == "bank" for r in partial)  # documented: the guest gets the host's partial scores


def test_bad_input_gets_a_clear_error(data_dir):
    tables = frames(data_dir, "breast", 64)
    with pytest.raises(SimulationError, match=r"guest 'bank': label column 'label' not in its `train` table"):
        train(ss_lr, SSLRParams(triples="dealer", label="label"), tables)
    with pytest.raises(SimulationError, match=r"party 'telco' has 50 training rows, guest 'bank' has 64"):
        train(ss_lr, SSLRParams(triples="dealer", epochs=1), tables | {"telco": tables["telco"].iloc[:50]})
    roles = {"bank": "guest", "telco": "host", "isp": "host"}
    with pytest.raises(SimulationError, match=r"triples 'ot' is dealer-free for one guest and one host"):
        train(ss_lr, SSLRParams(), tables | {"isp": tables["telco"]}, roles)
    with pytest.raises(SimulationError, match=r"label column 'x0' of its `train` table must hold 0/1"):
        train(ss_lr, SSLRParams(triples="dealer", label="x0"), tables)
    with pytest.raises(SimulationError, match=r"early_stopping_rounds needs validation rows"):
        train(ss_lr, SSLRParams(triples="dealer", early_stopping_rounds=2), tables)
