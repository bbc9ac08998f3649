"""Job components `ss_lr` (binary logistic regression), `ss_linr` (linear regression) and
`ss_lr_predict` (batch prediction with either), trained on secret shares (see ss.py).

Roles: one `guest` (holds the label), one or more `host`s, and with `triples: dealer` a `dealer`
party that only serves tuples. Rows are already aligned across parties (a `psi` task's `data`).
Each party's features are its numeric columns minus the ID columns (and the label at the guest).
With `standardize` (default) each party scales its own columns locally to mean 0 and variance 1
before sharing them (and the guest centres the label of a regression), which SGD needs on raw
columns; the saved weights are back on the raw scale.

Each party's `model` is its own part only: `{"role", "features", "weights", "offset", "objective"}`
and at the guest also `"intercept"`. A party's partial score is `X @ weights + offset`. Prediction
(after training too) is joint: each host sends its partial scores to the guest, which adds its own
and the intercept and applies the link; so the guest learns every host's partial score per row, as
in SecretFlow's and FATE's vertical linear models. Only the guest gets `predictions`.

The optional `validate` input (rows aligned like `train`, at every party) serves early stopping
only; without `early_stopping_rounds` it is not used.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ...crypto.he_schemes import KeyBits
from ...mpc import DealerSource, MPCSession, TripleSource
from ...runtime.component import ColumnList, component
from ...runtime.context import Context
from ..metrics import rmse, roc_auc
from ..tables import PredictParams, column_scaling, feature_matrix, label_column, model_columns, prediction_table
from .ss import Fitted, SGDConfig, fit
from .ss_tuples import PrefetchedSource
from .steps import AUTO_MIN_STEPS, planned_epochs

_PARTIAL_TAG = "ss_linear/partial_score"
OBJECTIVES = {"ss_lr": "binary:logistic", "ss_linr": "reg:squarederror"}


AUTO_EPOCHS = 10  # epochs: None trains this many passes, or more for steps.AUTO_MIN_STEPS mini-batch steps

class SSLinRParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field("y", description="the label column, in the guest's table")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    epochs: int | None = Field(None, ge=1, description=f"passes over the training rows; default {AUTO_EPOCHS}, more "
                               f"on a small table so that training takes at least {AUTO_MIN_STEPS} mini-batch steps")
    batch_size: int = Field(1024, ge=1, description="rows per SGD step")
    learning_rate: float = Field(0.1, gt=0)
    # Momentum 0.9 by default: plain SGD at 0.1 for 10 epochs stopped 0.013 AUC below sklearn on 3 % positives
    # and 0.005 on tiny-scale columns; with momentum every robustness family is within 0.004 (docs/robustness.md).
    momentum: float = Field(0.9, ge=0, lt=1, description="heavy-ball momentum (helps ill-conditioned columns); "
                                                       "costs one more truncation round per step")
    learning_rate_schedule: Literal["constant", "inverse_sqrt"] = Field(
        "constant", description="inverse_sqrt: learning_rate / sqrt(epoch + 1)")
    penalty: Literal["none", "l2"] = "l2"
    alpha: float = Field(1e-4, ge=0, description="L2 strength on the mean loss: sklearn's C = 1 / (alpha · rows), "
                                                 "Ridge's alpha = alpha · rows; the intercept is not penalised")
    fit_intercept: bool = True
    standardize: bool = Field(True, description="each party scales its own columns to mean 0, variance 1 first")
    triples: Literal["ot", "he", "dealer"] = Field(
        "ot", description="where tuples come from: ot (dealer-free, one guest and one host: every tuple from "
        "oblivious transfer), he (dealer-free, elementwise triples by homomorphic encryption: fewer bytes, far more "
        "CPU), dealer (a trusted party with role dealer that must not collude with any other)")
    he_key_bits: KeyBits = Field(2048, description="dealer-free HE key size; below 2048 only for tests")
    frac_bits: int = Field(18, ge=12, le=24, description="fixed-point fractional bits of the shares")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop after this many epochs without a lower "
                                              "validation loss (needs the `validate` input at every party)")
    seed: int | None = Field(None, ge=0, description="batch order seed (the guest's; default: fresh randomness)")


class SSLRParams(SSLinRParams):
    sigmoid: Literal["minimax", "accurate", "linear"] = Field(
        "minimax", description="the MPC engine's sigmoid: minimax (error 3.5e-4), accurate (3e-5, slower), "
        "linear (3e-2, cheapest)")


@component("ss_lr", params=SSLRParams, roles=("guest", "host", "dealer"), inputs=("train",),
           optional_inputs=("validate",), outputs=("model", "predictions"), min_parties=2)
def ss_lr(ctx: Context, params: SSLRParams, train: pd.DataFrame | None = None,
          validate: pd.DataFrame | None = None) -> dict[str, object]:
    """Vertical logistic regression by mini-batch SGD on secret shares (no party sees another's data)."""
    return _train(ctx, params, "ss_lr", train, validate)


@component("ss_linr", params=SSLinRParams, roles=("guest", "host", "dealer"), inputs=("train",),
           optional_inputs=("validate",), outputs=("model", "predictions"), min_parties=2)
def ss_linr(ctx: Context, params: SSLinRParams, train: pd.DataFrame | None = None,
            validate: pd.DataFrame | None = None) -> dict[str, object]:
    """Vertical linear regression by mini-batch SGD on secret shares (no party sees another's data)."""
    return _train(ctx, params, "ss_linr", train, validate)


@component("ss_lr_predict", params=PredictParams, roles=("guest", "host"), inputs=("model", "data"),
           outputs=("predictions",), min_parties=2)
def ss_lr_predict(ctx: Context, params: PredictParams, model: dict, data: pd.DataFrame) -> dict[str, object]:
    """Batch prediction with an `ss_lr` or `ss_linr` model: hosts send partial scores, the guest scores."""
    X = model_columns(ctx, data, model["features"], "data")
    margin = joint_margin(ctx, model, X)
    if margin is None:
        return {}
    label = params.label if params.label in data.columns else None
    table = _predictions(data, params.id_columns, label, model["objective"], margin)
    if label is not None:
        _log_quality(ctx, model["objective"], data[label].to_numpy(dtype=np.float64), table)
    return {"predictions": table}


# -- training ------------------------------------------------------------------------------------
def _train(ctx: Context, params: SSLinRParams, name: str, train: pd.DataFrame | None,
           validate: pd.DataFrame | None) -> dict[str, object]:
    started = time.perf_counter()
    _check_parties(ctx, params, name)
    if ctx.role == "dealer":
        with MPCSession(ctx, triples="dealer") as mpc:
            ctx.metrics.log("tuples_served", sum(mpc.serve().values()))
        return {}
    if train is None:
        raise ValueError(f"{name}: party {ctx.party!r} ({ctx.role}) needs a `train` input")
    objective = OBJECTIVES[name]
    is_guest = ctx.role == "guest"
    exclude = params.id_columns + ([params.label] if is_guest else [])
    names, X = feature_matrix(ctx, train, exclude)
    X_valid = None
    if params.early_stopping_rounds is not None:
        if validate is None:
            raise ValueError(f"{name}: early_stopping_rounds needs validation rows: give party {ctx.party!r} (and "
                             "every other guest and host) a `validate` input aligned like `train`")
        X_valid = model_columns(ctx, validate, names, "validate")
    y = y_valid = None
    center = 0.0
    if is_guest:
        y = label_column(ctx, train, params.label, task="binary" if objective == "binary:logistic" else "regression")
        if objective != "binary:logistic" and params.standardize:
            center = float(y.mean())
        if X_valid is not None:
            y_valid = label_column(ctx, validate, params.label, "validate") - center
        y = y - center
    mean, scale = column_scaling(X, params.standardize)
    epochs = planned_epochs(params.epochs, params.batch_size, len(train), AUTO_EPOCHS)
    config = SGDConfig("logistic" if objective == "binary:logistic" else "linear", epochs, params.batch_size,
                       params.learning_rate, params.momentum, params.learning_rate_schedule, params.penalty,
                       params.alpha, params.fit_intercept, getattr(params, "sigmoid", "minimax"),
                       params.early_stopping_rounds, params.seed)
    with MPCSession(ctx, triples=_triples(ctx, params), frac_bits=params.frac_bits, he_bits=params.he_key_bits) as mpc:
        fitted = fit(ctx, mpc, config, (X - mean) / scale, y, None if X_valid is None else (X_valid - mean) / scale,
                     y_valid)
    model = _model(ctx.role, names, objective, fitted, mean, scale, center)
    _log_history(ctx, fitted)
    margin = joint_margin(ctx, model, X)
    outputs: dict[str, object] = {"model": model}
    if margin is not None:
        outputs["predictions"] = _predictions(train, params.id_columns, params.label, objective, margin)
        _log_quality(ctx, objective, y + center, outputs["predictions"])
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return outputs


def _check_parties(ctx: Context, params: SSLinRParams, name: str) -> None:
    guests, hosts = ctx.parties_with_role("guest"), ctx.parties_with_role("host")
    dealers = ctx.parties_with_role("dealer")
    if len(guests) != 1 or not hosts:
        raise ValueError(f"{name} needs exactly one guest (the label holder) and at least one host; roles: {ctx.roles}")
    if params.triples == "dealer" and len(dealers) != 1:
        raise ValueError(f"{name}: triples 'dealer' needs exactly one party with role 'dealer' (found {dealers}); add "
                         "one, or set triples: he for one guest and one host without a dealer")
    if params.triples != "dealer" and dealers:
        raise ValueError(f"{name}: the task has dealer party {dealers[0]!r} but triples is {params.triples!r}; set "
                         "triples: dealer, or leave the dealer out of the task")
    if params.triples in ("he", "ot") and len(hosts) > 1:
        raise ValueError(f"{name}: triples {params.triples!r} is dealer-free for one guest and one host, but the task "
                         f"has hosts {hosts}; set triples: dealer and add a party with role 'dealer'")


def _triples(ctx: Context, params: SSLinRParams) -> str | TripleSource:
    """The session's tuple source: a dealer's tuples are fetched an epoch ahead (see ss_tuples.py)."""
    if params.triples != "dealer":
        return params.triples
    dealer = ctx.parties_with_role("dealer")[0]
    ctx.metrics.log("mpc_tuple_source", f"trusted dealer {dealer!r}")
    ctx.log.info("MPC tuples come from the trusted dealer %r: it must not collude with any party", dealer)
    return PrefetchedSource(DealerSource(ctx, [p for p in ctx.parties if p != dealer], dealer))


def _model(role: str, names: list[str], objective: str, fitted: Fitted, mean: np.ndarray, scale: np.ndarray,
           center: float) -> dict:
    """This party's part, on the raw scale: weights w/scale and its constant −Σ w·mean/scale."""
    weights = fitted.weights / scale
    model = {"role": role, "features": names, "weights": weights.tolist(), "offset": float(-(weights @ mean)),
             "objective": objective, "best_epoch": fitted.best_epoch}
    if role == "guest":
        model["intercept"] = (fitted.intercept or 0.0) + center
    return model


def _log_history(ctx: Context, fitted: Fitted) -> None:
    for record in fitted.history:
        for key, value in record.items():
            if key != "epoch":
                ctx.metrics.log(key, value, step=int(record["epoch"]))


# -- prediction ----------------------------------------------------------------------------------
def joint_margin(ctx: Context, model: dict, X: np.ndarray) -> np.ndarray | None:
    """At the guest: intercept + Σ over parties of X_p @ weights_p + offset_p (hosts send theirs); else None."""
    partial = X @ np.asarray(model["weights"], dtype=np.float64) + model["offset"]
    guest = ctx.parties_with_role("guest")[0]
    if ctx.role == "host":
        ctx.send(guest, _PARTIAL_TAG, partial)
        return None
    if ctx.role != "guest":
        return None
    for host in ctx.parties_with_role("host"):
        theirs = ctx.recv(host, _PARTIAL_TAG)
        if np.shape(theirs) != partial.shape:
            raise ValueError(f"host {host!r} scored {np.shape(theirs)[0]} rows, guest {ctx.party!r} {len(partial)}: "
                             "prediction rows must be aligned (run `psi` on the data first)")
        partial = partial + theirs
    return partial + model["intercept"]


def _predictions(data: pd.DataFrame, id_columns: list[str], label: str | None, objective: str,
                 margin: np.ndarray) -> pd.DataFrame:
    if objective == "binary:logistic":
        score = 0.5 * (1 + np.tanh(margin / 2))  # the sigmoid, without overflow
        return prediction_table(data, id_columns, label, score, (score >= 0.5).astype(np.int64))
    return prediction_table(data, id_columns, label, margin, margin)


def _log_quality(ctx: Context, objective: str, y: np.ndarray, table: pd.DataFrame) -> None:
    if objective == "binary:logistic":
        ctx.metrics.log("auc", roc_auc(y, table["score"].to_numpy()))
    else:
        ctx.metrics.log("rmse", rmse(y, table["predicted"].to_numpy()))
