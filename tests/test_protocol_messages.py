"""Every message SecureBoost and the vertical GLMs send is declared in their protocol's table, under exactly one
declaration, and goes from a declared sender role to a declared receiver role; and every declaration is sent
in these runs, so the tables hold no stale entries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import parallel
from sharedml.ml.linear.hetero import HeteroLRParams, PredictParams, hetero_lr, hetero_lr_predict
from sharedml.ml.linear.hetero_messages import HETERO_GLM
from sharedml.ml.tree.joint_predict import JOINT_PREDICTION, predict_guest, predict_host
from sharedml.ml.tree.params import SecureBoostParams
from sharedml.ml.tree.secureboost import SECUREBOOST, fit_guest, fit_host
from sharedml.runtime.messages import Message, Protocol
from sharedml.runtime.simulate import simulate

KEY_BITS = 1024  # test speed


@pytest.fixture(autouse=True, scope="module")
def one_process():
    parallel.configure(workers=1)
    yield


@pytest.fixture(scope="module")
def breast(data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_csv(data_dir / "breast_hetero_guest.csv.gz"), pd.read_csv(data_dir / "breast_hetero_host.csv.gz"))


def run(fn, roles: dict[str, str]) -> tuple[dict, list[tuple[str, str, str]]]:
    """Simulate `fn`; return its results and every message sent as (tag, sender role, receiver role)."""
    records = []
    out = simulate(fn, roles, timeout=120, recorder=records.append)
    return out, [(r.key.tag, roles[r.src], roles[r.dst]) for r in records]


def declared(sent: list[tuple[str, str, str]], protocols: tuple[Protocol, ...]) -> set[Message]:
    """Assert every sent message fits exactly one declaration of `protocols`; return the declarations used."""
    used = set()
    for tag, sender, receiver in sent:
        matching = [(p, m) for p in protocols for m in p.messages if m.matches(tag)]
        assert len(matching) == 1, f"{tag!r} ({sender} -> {receiver}) matches {len(matching)} declarations"
        protocol, message = matching[0]
        assert protocol.violation(tag, sender, receiver) is None, protocol.violation(tag, sender, receiver)
        used.add(message)
    return used


def test_secureboost_training_and_prediction_send_only_declared_messages(breast):
    guest, host = breast
    joined = guest.merge(host, on="id", suffixes=("_g", "_h"))
    guest_x = joined[[c for c in joined.columns if c.endswith("_g")]].to_numpy(np.float64)
    host_x = joined[[c for c in joined.columns if c.endswith("_h")]].to_numpy(np.float64)
    y = joined["y"].to_numpy(np.float64)
    train, valid = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    params = SecureBoostParams(n_estimators=3, max_depth=3, key_bits=KEY_BITS, guest_only_rounds=1)
    roles = {"guest": "guest", "host": "host"}

    def fit(ctx):
        if ctx.role == "guest":
            return fit_guest(ctx, params, guest_x[train], y[train], guest_x[valid], y[valid])
        return fit_host(ctx, params, host_x[train], host_x[valid])
    models, sent = run(fit, roles)

    def predict(ctx):
        if ctx.role == "guest":
            return predict_guest(ctx, models["guest"]["model"], guest_x)
        return predict_host(ctx, models["host"]["model"], host_x)
    _, predicted = run(predict, roles)

    used = declared(sent + predicted, (SECUREBOOST, JOINT_PREDICTION))
    assert used == set(SECUREBOOST.messages + JOINT_PREDICTION.messages)


def test_hetero_lr_with_and_without_an_arbiter_sends_only_declared_messages(breast):
    """Both residual forms: the guest's Taylor point and the exact residual (shares and the MPC sigmoid)."""
    guest, host = breast
    half = [c for c in host.columns if c != "id"][:10]
    hosts = {"h1": host[["id", *half]], "h2": host.drop(columns=half)}
    sent = []
    for taylor_point, parties, arbiter in [(point, parties, arbiter) for point in ("guest", "exact")
                                           for parties, arbiter in ((hosts, False), ({"host": host}, True))]:
        params = HeteroLRParams(epochs=1, key_bits=KEY_BITS, seed=1, taylor_point=taylor_point, exact_epochs=0)
        roles = {"guest": "guest", **{h: "host" for h in parties}, **({"arbiter": "arbiter"} if arbiter else {})}
        tables = {"guest": guest, **parties}

        def fit(ctx, tables=tables, params=params):
            return hetero_lr(ctx, params, tables.get(ctx.party, pd.DataFrame()))
        models, fitted = run(fit, roles)

        def predict(ctx, tables=tables, models=models):
            if ctx.role == "arbiter":
                return None
            return hetero_lr_predict(ctx, PredictParams(), models[ctx.party]["model"], tables[ctx.party])
        _, predicted = run(predict, {p: r for p, r in roles.items() if r != "arbiter"})
        sent += fitted + predicted

    assert declared(sent, (HETERO_GLM,)) == set(HETERO_GLM.messages)
