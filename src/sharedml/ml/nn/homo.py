"""Job components `homo_nn` (train) and `homo_nn_predict`: PyTorch networks on horizontally split rows.

Every client holds different rows with the same feature columns and the label; the `aggregator`
holds none. The network (a built-in `mlp`, a small `cnn` for rows that are images, or any
`torch.nn.Module` from a factory) trains locally at each client and travels through the round loop
of `rounds.py` as one flat vector, so strategies, secure aggregation, client-level DP, deadlines and
per-round validation work as for homo_lr. The aggregator draws the initial weights (from `seed`).
With `standardize` (the default) every client scales its features by the mean and standard deviation
of all clients' rows together, from secure sums (`stats.federated_scaler`), as a central
StandardScaler would; the model saves that scaler and prediction applies it to raw rows.

A `factory: "package.module:function"` is imported and called with (input width, output count) at
every node, aggregator included. No code travels with the job: each node runs the code it has
installed under that name, with its own rights, and only if its operator allowed that name (a node's
policy `code`, `sharedml run --allow-code`); all nodes need the same version. A saved model is its
architecture spec plus named numpy arrays in the repo's msgpack format; nothing from a peer is ever
unpickled or `torch.load`-ed.

Two kinds of differential privacy compose here, and protect different things. `dp` (client-level,
rounds.py) bounds what the global models reveal about a whole client's participation; the aggregator's
accountant reports its epsilon. `dp_sgd` (record-level, opacus) bounds what one client's updates
reveal about any one of its rows; each client logs its own `dp_sgd_epsilon` after every round it
trains in. Either, both or neither may be on. torch and opacus are imported only when a task runs.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from ...fl.rounds import aggregator_of, require_client_copy, run_aggregator, run_client, signature
from ...fl.secagg import AGGREGATOR, CLIENT
from ...fl.stats import apply_scaler, federated_scaler
from ...runtime.component import component
from ...runtime.context import Context
from ...runtime.peer_values import peer_int
from ..tables import PredictParams, feature_matrix, label_column, model_columns, prediction_table
from .specs import CNNSpec, DPSGDParams, FactorySpec, HomoNNParams, MLPSpec, ModelSpec

# The params types live in specs.py (shared with models.py); importable from here as before.
__all__ = ["CNNSpec", "DPSGDParams", "FactorySpec", "HomoNNParams", "MLPSpec", "ModelSpec", "homo_nn",
           "homo_nn_predict"]

MAX_FEATURES = 1 << 20  # input width of a network: bounds what a client's claim makes the aggregator build


def _torch_side() -> ModuleType:
    """nn_models, or an error naming the extra to install when torch is missing."""
    try:
        from . import models as nn_models
    except ImportError as err:
        if err.name != "torch":
            raise
        raise ImportError("homo_nn needs PyTorch, which is not installed here: pip install 'sharedml[nn]'") from err
    return nn_models


@component("homo_nn", params=HomoNNParams, roles=(AGGREGATOR, CLIENT), inputs=("train",),
           optional_inputs=("validate", "test"), outputs=("model", "predictions"), min_parties=3)
def homo_nn(ctx: Context, params: HomoNNParams, train: pd.DataFrame | None = None,
            validate: pd.DataFrame | None = None, test: pd.DataFrame | None = None) -> dict[str, object]:
    """Horizontal neural network (PyTorch): clients train locally, an aggregator combines updates (FedAvg family)."""
    started = time.perf_counter()
    nn = _torch_side()
    if ctx.role == AGGREGATOR:
        outputs = {"model": _aggregator(ctx, params, nn)}
    else:
        outputs = _client(ctx, params, nn, train, validate, test)
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return outputs


def _aggregator(ctx: Context, params: HomoNNParams, nn: ModuleType) -> dict[str, object]:
    clients = ctx.parties_with_role(CLIENT)
    scaler = federated_scaler(ctx, None, None) if params.standardize else None
    first = clients[0]  # run_aggregator's check_hello makes all clients agree
    inputs = peer_int(ctx.gather("nn/inputs", clients)[first], first, "feature count", 1, MAX_FEATURES)

    def initial(size: int) -> np.ndarray:
        weights = nn.flatten(nn.build(params.model, inputs, params.outputs, params.seed, ctx))
        if len(weights) != size:
            raise ValueError(f"the aggregator's network has {len(weights)} weights, the clients' {size}: every node "
                             "must run the same model code")
        return weights

    weights = run_aggregator(ctx, params.round_config(), params.make_strategy(), initial)
    return _model(ctx, params, nn, inputs, weights, None, scaler)


def _client(ctx: Context, params: HomoNNParams, nn: ModuleType, train: pd.DataFrame | None,
            validate: pd.DataFrame | None, test: pd.DataFrame | None) -> dict[str, object]:
    if train is None:
        raise ValueError(f"client {ctx.party!r} has no `train` input; every client needs its rows")
    names, X = feature_matrix(ctx, train, params.id_columns + [params.label])
    if X.shape[1] > MAX_FEATURES:
        raise ValueError(f"client {ctx.party!r}: {X.shape[1]} feature columns; homo_nn takes at most {MAX_FEATURES}")
    X = _finite(ctx, X, "train")
    scaler = federated_scaler(ctx, X, names) if params.standardize else None
    net = nn.build(params.model, X.shape[1], params.outputs, ctx=ctx)
    validation = None
    if validate is not None:
        validation = (apply_scaler(scaler, _finite(ctx, model_columns(ctx, validate, names, "validate"), "validate")),
                      _labels(ctx, params, validate, "validate"))
    local = nn.TorchClient(ctx, params, net, apply_scaler(scaler, X), _labels(ctx, params, train, "train"),
                           ctx.parties_with_role(CLIENT).index(ctx.party), validation)
    ctx.send(aggregator_of(ctx), "nn/inputs", X.shape[1])
    weights = run_client(ctx, params.round_config(), local, signature(names))
    model = _model(ctx, params, nn, X.shape[1], weights, names, scaler)
    scored = train if test is None else test
    label = params.label if params.label in scored.columns else None
    return {"model": model, "predictions": _predict(ctx, nn, model, scored, params.id_columns, label,
                                                    "test" if test is not None else "train")}


def _labels(ctx: Context, params: HomoNNParams, table: pd.DataFrame, what: str) -> np.ndarray:
    y = label_column(ctx, table, params.label, what)
    if params.task == "binary":
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"client {ctx.party!r}: label {params.label!r} of its `{what}` table must be 0/1 for "
                             "task binary")
        if what == "validate" and len(np.unique(y)) < 2:
            raise ValueError(f"client {ctx.party!r}: its `validate` rows hold one class only, so AUC is undefined; "
                             "give it rows of both classes or leave `validate` out")
    elif params.task == "multiclass" and not np.all((y == np.round(y)) & (y >= 0) & (y < params.outputs)):
        raise ValueError(f"client {ctx.party!r}: label {params.label!r} of its `{what}` table must hold integers "
                         f"0 .. {params.outputs - 1} (classes = {params.outputs})")
    return _finite(ctx, y, what)


def _finite(ctx: Context, values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"client {ctx.party!r}: its `{what}` table holds NaN or infinity; impute it first")
    return values


def _model(ctx: Context, params: HomoNNParams, nn: ModuleType, inputs: int, weights: np.ndarray,
           names: list[str] | None, scaler: dict[str, list[float]] | None) -> dict[str, object]:
    """The global model as plain data, with the scaler its inputs need (None: raw features); the aggregator
    never sees feature names, only their hash, so it stores None."""
    net = nn.build(params.model, inputs, params.outputs, ctx=ctx)
    nn.load_flat(net, weights)
    return {"type": "homo_nn", "task": params.task, "architecture": params.model.model_dump(), "inputs": inputs,
            "outputs": params.outputs, "state": nn.state_arrays(net), "features": names, "scaler": scaler}


def _network(ctx: Context, nn: ModuleType, model: dict[str, Any]) -> Any:
    """Rebuild a saved model's network: architecture from its spec, weights from its arrays."""
    if model.get("type") != "homo_nn":
        raise ValueError(f"this is a {model.get('type')!r} model; homo_nn_predict needs a homo_nn model")
    spec = TypeAdapter(ModelSpec).validate_python(model["architecture"])
    net = nn.build(spec, int(model["inputs"]), int(model["outputs"]), ctx=ctx)
    nn.load_arrays(net, model["state"])
    return net


def _predict(ctx: Context, nn: ModuleType, model: dict[str, Any], data: pd.DataFrame, id_columns: list[str],
             label: str | None, what: str) -> pd.DataFrame:
    X = apply_scaler(model.get("scaler"), _finite(ctx, model_columns(ctx, data, list(model["features"]), what), what))
    task = model["task"]
    score = nn.predict(_network(ctx, nn, model), X, task)
    if task == "binary":
        predicted = (score >= 0.5).astype(np.int64)
    else:
        predicted = score.argmax(axis=1) if task == "multiclass" else score
    return prediction_table(data, id_columns, label, score, predicted)


@component("homo_nn_predict", params=PredictParams, inputs=("model", "data"), outputs=("predictions",))
def homo_nn_predict(ctx: Context, params: PredictParams, model: dict, data: pd.DataFrame) -> dict:
    """Batch prediction with a homo_nn model, locally at each party that holds rows (no communication)."""
    require_client_copy(ctx, model, "homo_nn")
    label = params.label if params.label is not None and params.label in data.columns else None
    return {"predictions": _predict(ctx, _torch_side(), model, data, params.id_columns, label, "data")}
