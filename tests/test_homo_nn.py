"""homo_nn: federated against centralised training, secure = plain aggregation, a dropout, DP-SGD's accountant,
user factories and the CNN, prediction from the saved weights, and the errors for bad parameters."""

from __future__ import annotations

import math
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import RDPAccountant

import sharedml.ml.nn
from sharedml import datasets
from sharedml.ml.metrics import roc_auc
from sharedml.ml.nn.homo import HomoNNParams, homo_nn, homo_nn_predict
from sharedml.ml.tables import PredictParams
from sharedml.net.serialization import dumps_bytes, loads
from sharedml.runtime.simulate import SimulationError, simulate

DATA = str(datasets.folder()) + "/"
BREAST = {"guest": "breast_homo_guest.csv.gz", "host": "breast_homo_host.csv.gz"}
TEST = "breast_homo_test.csv.gz"
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def plugins_on_path(monkeypatch):
    """tests/ on the path, so that `plugins.tiny_nets:...` factories import (parties here are threads)."""
    monkeypatch.syspath_prepend(str(TESTS))


@cache
def _table(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA + name)


def _breast() -> dict[str, pd.DataFrame]:
    return {party: _table(name) for party, name in BREAST.items()}


def _train(tables: dict[str, pd.DataFrame], test: pd.DataFrame | None = None, wrap: Any = None,
           timeout: float = 20.0, allowed_code: tuple[str, ...] = (), **params: Any) -> dict[str, Any]:
    """Simulate homo_nn with an aggregator and one client per table; each party returns (outputs, metrics).
    `wrap(ctx)` may replace a client's context (or raise to make it vanish: the client then returns None)."""
    p = HomoNNParams(**{"seed": 7, **params})

    def party(ctx):
        if ctx.role == "aggregator":
            return homo_nn(ctx, p), ctx.metrics.records
        try:
            client = wrap(ctx) if wrap else ctx
            return homo_nn(client, p, train=tables[ctx.party], validate=test, test=test), ctx.metrics.records
        except _Vanished:
            return None

    return simulate(party, {"server": "aggregator", **{c: "client" for c in tables}}, timeout=timeout,
                    allowed_code=allowed_code)


def _auc(out: dict[str, Any], party: str) -> float:
    predictions = out[party][0]["predictions"]
    return roc_auc(predictions["y"].to_numpy(), predictions["score"].to_numpy())


def _flat(model: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in model["state"].values()])


def _logged(records: list[dict[str, Any]], name: str) -> list[Any]:
    return [r["value"] for r in records if r["name"] == name]


def test_federated_mlp_matches_centralised_training_of_the_same_mlp():
    test = _table(TEST)
    federated = _train(_breast(), test, rounds=8)
    # Centralised: the same network, initial weights and seed, one client holding the union, 8 epochs in one go.
    central = _train({"union": pd.concat(_breast().values())}, test, rounds=1, local_epochs=8, min_clients=1)
    assert _auc(federated, "guest") >= _auc(central, "union") - 0.01
    records = federated["server"][1]
    assert [r["step"] for r in records if r["name"] == "auc"] == list(range(8))
    assert _logged(records, "auc")[-1] > 0.95 and _logged(records, "loss")[-1] < _logged(records, "loss")[0]
    assert _logged(records, "clients") == [2] * 8
    assert federated["server"][0]["model"]["features"] is None  # the aggregator never learns the column names
    assert np.array_equal(_flat(federated["server"][0]["model"]), _flat(federated["host"][0]["model"]))


def test_secure_aggregation_equals_plain_aggregation_within_quantisation_error():
    # Raw features: on standardised ones Adam's division by the root of a near-zero second moment turns the
    # same 1e-10 quantisation into differences of ~1e-6 on a handful of weights, which hides the bound below.
    plain = _train(_breast(), rounds=3, standardize=False)
    secure = _train(_breast(), rounds=3, secure_aggregation=True, standardize=False)
    # Quantisation moves the global weights by <= 2 * 2^-25 / 455 rows per round (1e-10); clients train from
    # float32-rounded weights and the model is saved in float32, so that shows as at most a float32 ulp or two.
    a, b = _flat(plain["server"][0]["model"]), _flat(secure["server"][0]["model"])
    assert np.max(np.abs(a - b) / np.maximum(np.abs(a), 1.0)) < 2**-21
    assert not np.array_equal(a, _flat(_train(_breast(), rounds=3, seed=8, standardize=False)["server"][0]["model"]))


class _Vanished(Exception):
    """Raised inside a client to make it drop out."""


class _DropsBeforeMaskedInput:
    """A client's context that vanishes in round 1's secure aggregation, after sharing its keys but before
    sending its masked input: the others' masks with it must be cancelled from its rebuilt key."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def send(self, peer: str, tag: str, obj: Any) -> None:
        if tag == "fl/1/secagg/masked":
            raise _Vanished
        self._ctx.send(peer, tag, obj)


def test_five_clients_with_one_dropping_mid_round_still_finish():
    union = pd.concat(_breast().values(), ignore_index=True)
    tables = {f"c{k}": union.iloc[rows] for k, rows in enumerate(np.array_split(np.arange(len(union)), 5))}

    def wrap(ctx):
        return _DropsBeforeMaskedInput(ctx) if ctx.party == "c4" else ctx

    out = _train(tables, _table(TEST), wrap, rounds=3, secure_aggregation=True, min_clients=3, round_timeout=0.5)
    assert out["c4"] is None
    assert _logged(out["server"][1], "clients") == [5, 4, 4]
    assert all(np.array_equal(_flat(out["server"][0]["model"]), _flat(out[c][0]["model"])) for c in tables if c != "c4")
    assert _auc(out, "c0") > 0.95


def test_dp_sgd_epsilon_grows_with_rounds_and_equals_opacus_accountant():
    z, clip, delta, rounds, batch = 1.1, 1.0, 1e-5, 3, 32
    out = _train(_breast(), _table(TEST), rounds=rounds, batch_size=batch,
                 dp_sgd={"noise_multiplier": z, "max_grad_norm": clip, "delta": delta})
    for party, table in _breast().items():
        logged = _logged(out[party][1], "dp_sgd_epsilon")
        direct = RDPAccountant()
        for r in range(rounds):
            for _ in range(math.ceil(len(table) / batch)):
                direct.step(noise_multiplier=z, sample_rate=batch / len(table))
            assert logged[r] == direct.get_epsilon(delta)
        assert logged[0] < logged[1] < logged[2]
    assert _auc(out, "guest") > 0.9  # the noise is unseeded: 0.968-0.976 in 8 runs


def test_user_factory_module_and_the_cnn_learn(plugins_on_path):
    out = _train(_breast(), _table(TEST), rounds=3, model={"type": "factory", "factory": "plugins.tiny_nets:two_layer"},
                 allowed_code=("plugins.tiny_nets:two_layer",))
    assert _auc(out, "guest") > 0.95
    assert sorted(out["guest"][0]["model"]["state"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    tables, test = _images(), _images(seed=9)["a"]
    cnn = {"type": "cnn", "channels": 1, "height": 8, "width": 8, "filters": [4, 8]}
    out = _train(tables, test, rounds=4, model=cnn, learning_rate=0.02)
    assert _auc(out, "a") > 0.9


def _images(seed: int = 0, rows: int = 120) -> dict[str, pd.DataFrame]:
    """8x8 noisy images: label 1 holds a vertical bar, label 0 a horizontal one (a linear model cannot tell
    them apart by pixel sums); two clients."""
    rng = np.random.default_rng(seed)
    tables = {}
    for client in ("a", "b"):
        y = rng.integers(0, 2, rows)
        images = rng.normal(0, 0.3, (rows, 8, 8))
        where = rng.integers(0, 8, rows)
        for i in range(rows):
            if y[i]:
                images[i, :, where[i]] += 1
            else:
                images[i, where[i], :] += 1
        tables[client] = pd.DataFrame(images.reshape(rows, 64), columns=[f"p{k}" for k in range(64)]).assign(y=y)
    return tables


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_learn(task):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    y = np.argmax(X[:, :3], axis=1) if task == "multiclass" else X @ [1.0, -2.0, 0.5, 0.0]
    frame = pd.DataFrame(X, columns=list("abcd")).assign(y=y)
    tables = {"a": frame.iloc[:250], "b": frame.iloc[250:500]}
    extra = {"classes": 3} if task == "multiclass" else {}
    out = _train(tables, frame.iloc[500:], rounds=5, task=task, **extra)
    loss = _logged(out["server"][1], "loss")
    assert loss[-1] < loss[0]
    predictions = out["a"][0]["predictions"]
    if task == "multiclass":
        assert list(predictions.columns[-4:]) == ["score_0", "score_1", "score_2", "predicted"]
        assert np.mean(predictions["predicted"] == predictions["y"]) > 0.8
    else:
        assert np.mean((predictions["predicted"] - predictions["y"]) ** 2) < 0.1 * np.var(y)


def test_predict_equals_a_local_forward_pass_of_the_saved_weights():
    out = _train(_breast(), _table(TEST), rounds=2, model={"type": "mlp", "hidden": [8], "dropout": 0.2})
    model = loads(dumps_bytes(out["host"][0]["model"]))  # as the artifact store keeps it: msgpack + numpy buffers

    def party(ctx):
        return homo_nn_predict(ctx, PredictParams(), model, _table(TEST))

    predicted = simulate(party, ["host"])["host"]["predictions"]
    net = torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    net.load_state_dict({k: torch.tensor(v) for k, v in model["state"].items()})
    net.eval()
    scaler = model["scaler"]  # federated standardisation, on by default: the saved global mean and std
    raw = _table(TEST)[model["features"]].to_numpy()
    X = torch.tensor((raw - np.asarray(scaler["offset"])) / np.asarray(scaler["scale"]), dtype=torch.float32)
    expected = torch.sigmoid(net(X)[:, 0]).detach().double().numpy()
    assert np.allclose(predicted["score"], expected, atol=1e-6)
    assert np.allclose(predicted["score"], out["host"][0]["predictions"]["score"])
    with pytest.raises(SimulationError, match="aggregator's copy"):
        simulate(lambda ctx: homo_nn_predict(ctx, PredictParams(), out["server"][0]["model"], _table(TEST)),
                 ["server"])


@pytest.mark.parametrize("params, match", [
    ({"model": {"type": "resnet"}}, "does not match any of the expected tags: 'mlp', 'cnn', 'factory'"),
    ({"model": {"type": "factory", "factory": "plugins/tiny_nets.py"}}, "must look like 'package.module:function'"),
    ({"task": "multiclass"}, "task multiclass needs `classes`"),
    ({"strategy": "fedprox", "proximal_mu": 0.1, "dp_sgd": {"noise_multiplier": 1, "max_grad_norm": 1}},
     "dp_sgd does not take fedprox's proximal term"),
])
def test_bad_params_are_refused_when_the_job_is_checked(params, match):
    with pytest.raises(ValueError, match=match):
        HomoNNParams(**params)


@pytest.mark.parametrize("model, match", [
    ({"type": "factory", "factory": "no_such_package.nets:make"}, r"cannot import 'no_such_package.nets' on this node"),
    ({"type": "factory", "factory": "plugins.tiny_nets:missing"}, r"module 'plugins.tiny_nets' has no function"),
    ({"type": "factory", "factory": "plugins.tiny_nets:fixed_width"}, r"fails on rows of 30 feature columns"),
    ({"type": "cnn", "channels": 1, "height": 8, "width": 8}, r"= 64, but the rows have 30 feature columns"),
])
def test_models_that_cannot_be_built_name_the_cause(plugins_on_path, model, match):
    allowed = (model["factory"],) if model["type"] == "factory" else ()
    with pytest.raises(SimulationError, match=match):
        _train(_breast(), rounds=1, model=model, timeout=5, allowed_code=allowed)


def test_missing_torch_names_the_extra_to_install(monkeypatch):
    loads_all = ("from sharedml.jobs.components import load_builtin_components as load; load(); "
                 "import sys; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", loads_all], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # registering homo_nn imports no torch
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "sharedml.ml.nn.models", raising=False)
    monkeypatch.delattr(sharedml.ml.nn, "models", raising=False)  # else `from . import models` finds it
    with pytest.raises(SimulationError, match=r"pip install 'sharedml\[nn\]'"):
        _train(_breast(), rounds=1, timeout=5)


HOMO_NN_JOB = """
job: homo-nn-breast
timeout: 120
parties:
  hub:  {role: aggregator}
  bank: {role: client, data: {train: train, test: test}}
  shop: {role: client, data: {train: train, test: test}}
tasks:
  model: {component: homo_nn, inputs: {train: $train, test: $test},
          params: {rounds: 3, secure_aggregation: true, seed: 3,
                   model: {type: factory, factory: "plugins.tiny_nets:two_layer"}}}
  report: {component: evaluate, inputs: {predictions: model.predictions}, parties: [bank, shop]}
"""


def test_homo_nn_runs_as_a_job_with_a_factory_network(run_breast_homo_job, plugins_on_path):
    refused = run_breast_homo_job(HOMO_NN_JOB)
    assert refused.state == "failed" and "does not allow code 'plugins.tiny_nets:two_layer'" in refused.error
    result = run_breast_homo_job(HOMO_NN_JOB, allowed_code=["plugins.tiny_nets:two_layer"])
    assert result.state == "succeeded", result.error
    for party in ("bank", "shop"):
        assert result.output(party, "report", "report")["auc"] > 0.95
    saved = result.output("hub", "model", "model")
    assert saved["features"] is None and saved["architecture"]["factory"] == "plugins.tiny_nets:two_layer"


def test_a_factory_the_parties_did_not_allow_is_never_imported(plugins_on_path):
    """A job spec comes from someone else: naming `os:kill` or a plugin must not make any node import or call it."""
    sys.modules.pop("plugins.tripwire", None)
    for factory in ("plugins.tripwire:build", "os:kill", "shutil:rmtree"):
        with pytest.raises(SimulationError, match=f"does not allow code '{factory}'.*--allow-code {factory}"):
            _train(_breast(), rounds=1, model={"type": "factory", "factory": factory}, timeout=5,
                   allowed_code=("plugins.tiny_nets:two_layer",))
    assert "plugins.tripwire" not in sys.modules


def test_the_aggregator_refuses_a_nonsensical_feature_count_from_a_client():
    """The aggregator builds the network from a client's claimed width: a huge or non-integer claim is refused."""
    from sharedml.runtime.peer_values import BadPeerValue

    for claim in (10**12, -3, "30", 2.5, True):
        def party(ctx, claim=claim):
            if ctx.role == "aggregator":
                return homo_nn(ctx, HomoNNParams(seed=1, rounds=1, standardize=False))  # the claim comes first
            ctx.send("server", "nn/inputs", claim)
            return None
        with pytest.raises(SimulationError) as caught:
            simulate(party, {"server": "aggregator", "a": "client", "b": "client"}, timeout=5)
        assert isinstance(caught.value.errors["server"], BadPeerValue), caught.value.errors
        assert "party 'a' sent" in str(caught.value.errors["server"])


def test_the_aggregator_checks_each_clients_hello_before_sizing_anything_by_it():
    from sharedml.fl.rounds import check_hello
    from sharedml.runtime.peer_values import BadPeerValue

    good = {"signature": "s", "size": 10, "metrics": ["auc"], "validates": False}
    assert check_hello({"a": good, "b": good}) == (10, ["auc"])
    for bad in ({**good, "size": 1 << 40}, {**good, "size": "10"}, {**good, "size": 0}, {**good, "metrics": [1]},
                [1, 2], {"size": 10}):
        with pytest.raises(BadPeerValue, match="party 'b' sent"):
            check_hello({"a": good, "b": bad})
