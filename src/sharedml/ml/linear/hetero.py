"""Job components `hetero_lr`, `hetero_linr`, `hetero_poisson` (training) and `hetero_lr_predict`.

Vertical generalised linear models: the guest holds the label (and an optional Poisson exposure
column), every host other columns of the same, already aligned rows (a `psi` task's `data`). They
train with gradients exchanged under additively homomorphic encryption (`hetero_protocol`), FATE
style, with no arbiter unless the job names a party with role `arbiter` (FATE's coordinated variant;
that party must not collude with anyone). `hetero_lr` is one-vs-rest over K models trained together
when the label has more than two values.

Each party standardises its own columns (`standardize`, on by default: SGD needs comparable scales;
regularisation then applies to standardised weights, as in a StandardScaler + sklearn pipeline) and
keeps its own part of the model, in the original units: `coef` (d, K) and, at a host, the `offset`
its standardisation adds to its partial score; the guest also the intercept, objective and classes.
`predictions` (ID columns, label, score or score_k, predicted) appear at the guest only; producing
them, like validation scoring and `hetero_lr_predict`, discloses the hosts' partial scores X_h·w_h to
the guest, as in FATE and SecretFlow. `docs/security.md` lists everything each party learns.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ...runtime.component import component
from ...runtime.context import Context
from ..metrics import accuracy, log_loss, rmse, roc_auc
from ..tables import PredictParams, column_scaling, feature_matrix, label_column, model_columns, prediction_table
from .hetero_messages import PREDICT_SCORES, TRAIN_SCORES
from .hetero_params import HeteroGLMParams, HeteroLRParams, HeteroPoissonParams
from .hetero_protocol import Objective
from .hetero_train import arbiter_of, fit_arbiter, fit_guest, fit_host

ROLES = ("guest", "host", "arbiter")


@component("hetero_lr", params=HeteroLRParams, roles=ROLES, inputs=("train",), optional_inputs=("validate",),
           outputs=("model", "predictions"), min_parties=2)
def hetero_lr(ctx: Context, params: HeteroLRParams, train: pd.DataFrame,
              validate: pd.DataFrame | None = None) -> dict[str, object]:
    """Vertical logistic regression (one-vs-rest for K > 2 classes), gradients under HE."""
    return _fit(ctx, params, "logistic", train, validate)


@component("hetero_linr", params=HeteroGLMParams, roles=ROLES, inputs=("train",), optional_inputs=("validate",),
           outputs=("model", "predictions"), min_parties=2)
def hetero_linr(ctx: Context, params: HeteroGLMParams, train: pd.DataFrame,
                validate: pd.DataFrame | None = None) -> dict[str, object]:
    """Vertical linear regression (squared error), gradients under HE."""
    return _fit(ctx, params, "linear", train, validate)


@component("hetero_poisson", params=HeteroPoissonParams, roles=ROLES, inputs=("train",),
           optional_inputs=("validate",), outputs=("model", "predictions"), min_parties=2)
def hetero_poisson(ctx: Context, params: HeteroPoissonParams, train: pd.DataFrame,
                   validate: pd.DataFrame | None = None) -> dict[str, object]:
    """Vertical Poisson regression (log link, optional exposure), gradients under HE; one host."""
    return _fit(ctx, params, "poisson", train, validate)


@component("hetero_lr_predict", params=PredictParams, roles=("guest", "host"), inputs=("model", "data"),
           outputs=("predictions",), min_parties=2)
def hetero_lr_predict(ctx: Context, params: PredictParams, model: dict, data: pd.DataFrame) -> dict:
    """Batch prediction with a hetero_lr / hetero_linr / hetero_poisson model; hosts send partial scores."""
    X = _finite(ctx, model_columns(ctx, data, list(model["features"]), "data"), list(model["features"]), "data")
    if model["role"] == "host":
        send_scores(ctx, PREDICT_SCORES.tag, X, model)
        return {}
    z = joint_scores(ctx, PREDICT_SCORES.tag, X, model)
    label = params.label if params.label in data.columns else None
    table = _prediction_table(data, params.id_columns, label, model, z, _exposure(ctx, data, model, "data"))
    if label is not None:
        _log_quality(ctx, model, data[label].to_numpy(dtype=np.float64), table)
    return {"predictions": table}


def _fit(ctx: Context, params: HeteroGLMParams, objective: str, train: pd.DataFrame,
         validate: pd.DataFrame | None) -> dict[str, object]:
    started = time.perf_counter()
    if len(ctx.parties_with_role("guest")) != 1 or not ctx.parties_with_role("host"):
        raise ValueError(f"{_name(objective)} needs exactly one guest (the label holder) and at least one host; "
                         f"roles: {ctx.roles}")
    target = params.objective(objective)
    if ctx.party == arbiter_of(ctx):
        fit_arbiter(ctx, params, target)
        return {}
    outputs = _fit_guest(ctx, params, target, train, validate) if ctx.role == "guest" else \
        _fit_host(ctx, params, target, train, validate)
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return outputs


def _fit_guest(ctx: Context, params: HeteroGLMParams, target: Objective, train: pd.DataFrame,
               validate: pd.DataFrame | None) -> dict[str, object]:
    exposure_column = getattr(params, "exposure", None)
    exclude = params.id_columns + [params.label] + ([exposure_column] if exposure_column else [])
    y = label_column(ctx, train, params.label)
    names, X = feature_matrix(ctx, train, exclude)
    X = _finite(ctx, X, names, "train")
    model: dict[str, object] = {"role": "guest", "objective": target.name, "features": names,
                                "label": params.label, "exposure": exposure_column}
    model["classes"], Y = _targets(ctx, target.name, y)
    exposure = _exposure(ctx, train, model, "train")
    mean, scale = column_scaling(X, params.standardize)
    valid = None
    if validate is not None:
        y_valid = label_column(ctx, validate, params.label, "validate")
        X_valid = _finite(ctx, model_columns(ctx, validate, names, "validate"), names, "validate")
        metric = _validation_metric(model, y_valid, _exposure(ctx, validate, model, "validate"))
        valid = (_design((X_valid - mean) / scale, params.fit_intercept), metric)
    intercept = (X.shape[1], _initial_intercept(target.name, Y, exposure)) if params.fit_intercept else None
    W = fit_guest(ctx, params, target, _design((X - mean) / scale, params.fit_intercept), Y, exposure, intercept, valid)
    coef = W[:X.shape[1]] / scale[:, None]
    model["coef"] = coef
    model["intercept"] = (W[-1] if params.fit_intercept else np.zeros(W.shape[1])) - mean @ coef
    z = joint_scores(ctx, TRAIN_SCORES.tag, X, model)
    table = _prediction_table(train, params.id_columns, params.label, model, z, exposure)
    _log_quality(ctx, model, y, table)
    return {"model": model, "predictions": table}


def _fit_host(ctx: Context, params: HeteroGLMParams, target: Objective, train: pd.DataFrame,
              validate: pd.DataFrame | None) -> dict[str, object]:
    names, X = feature_matrix(ctx, train, params.id_columns)
    X = _finite(ctx, X, names, "train")
    mean, scale = column_scaling(X, params.standardize)
    X_valid = None
    if validate is not None:
        X_valid = (_finite(ctx, model_columns(ctx, validate, names, "validate"), names, "validate") - mean) / scale
    W = fit_host(ctx, params, target, (X - mean) / scale, X_valid)
    coef = W / scale[:, None]
    model = {"role": "host", "features": names, "coef": coef, "offset": -(mean @ coef)}
    send_scores(ctx, TRAIN_SCORES.tag, X, model)
    return {"model": model}


def _name(objective: str) -> str:
    return {"logistic": "hetero_lr", "linear": "hetero_linr", "poisson": "hetero_poisson"}[objective]


def _finite(ctx: Context, X: np.ndarray, names: list[str], what: str) -> np.ndarray:
    bad = [names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))]
    if bad:
        raise ValueError(f"party {ctx.party!r}: column(s) {bad} of its `{what}` table have missing or infinite "
                         "values; impute or drop them first")
    return X


def _targets(ctx: Context, objective: str, y: np.ndarray) -> tuple[list[float] | None, np.ndarray]:
    """(classes, Y (n, K)): 0/1 for one binary model, one-hot for one-vs-rest; the label itself otherwise."""
    if not np.isfinite(y).all():
        raise ValueError(f"guest {ctx.party!r}: the label has missing values; drop those rows first")
    if objective == "logistic":
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"guest {ctx.party!r}: hetero_lr needs at least two label values, got {classes.tolist()}")
        Y = (y[:, None] == classes[None, :]).astype(np.float64)
        return classes.tolist(), Y[:, 1:] if len(classes) == 2 else Y
    if objective == "poisson" and (y < 0).any():
        raise ValueError(f"guest {ctx.party!r}: hetero_poisson needs non-negative counts as labels")
    return None, y[:, None].astype(np.float64)


def _initial_intercept(objective: str, Y: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """The best constant model (log-odds, mean, log rate), so that training starts near the data's scale
    (Poisson's exp(z) would overshoot from z = 0 on large counts)."""
    if objective == "linear":
        return Y.mean(axis=0)
    if objective == "poisson":
        return np.log(np.maximum(Y.sum(axis=0), 1e-12) / exposure.sum())
    p = np.clip(Y.mean(axis=0), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _exposure(ctx: Context, data: pd.DataFrame, model: dict, what: str) -> np.ndarray:
    column = model.get("exposure")
    if not column:
        return np.ones(len(data))
    if column not in data.columns:
        raise ValueError(f"guest {ctx.party!r}: exposure column {column!r} not in its `{what}` table; set `exposure`")
    values = data[column].to_numpy(dtype=np.float64)
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"guest {ctx.party!r}: exposure column {column!r} must be positive and finite")
    return values


def _design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    return np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X


def row_scores(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """X·coef with each row summed in an order that depends on that row alone.

    Why not `X @ coef`: BLAS picks its summation order by the number of rows, so a row scored alone (online
    serving) could differ in the last bits from the same row scored in a batch job."""
    return np.einsum("ij,jk->ik", np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(coef))


def send_scores(ctx: Context, tag: str, X: np.ndarray, model: dict) -> None:
    """Host: its partial scores X·coef + offset to the guest (the disclosure prediction needs)."""
    scores = row_scores(X, np.asarray(model["coef"])) + np.asarray(model["offset"])
    ctx.send(ctx.parties_with_role("guest")[0], tag, scores)


def joint_scores(ctx: Context, tag: str, X: np.ndarray, model: dict) -> np.ndarray:
    """Guest: z = its own partial scores plus every host's, shape (n, K)."""
    z = row_scores(X, np.asarray(model["coef"])) + np.asarray(model["intercept"])
    for host, part in ctx.gather(tag, ctx.parties_with_role("host")).items():
        part = np.asarray(part, dtype=np.float64)
        if part.shape != z.shape:
            raise ValueError(f"host {host!r} sent scores of shape {part.shape}, guest {ctx.party!r} expected "
                             f"{z.shape}: are both using the same model and aligned data?")
        z = z + part
    return z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def glm_transform(model: dict, z: np.ndarray, exposure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, predicted): class-1 probability or normalised one-vs-rest probabilities, z, or the mean count."""
    if model["objective"] == "logistic":
        classes = np.asarray(model["classes"])
        p = _sigmoid(z)
        if p.shape[1] == 1:
            return p[:, 0], classes[(p[:, 0] > 0.5).astype(np.int64)]
        p = p / p.sum(axis=1, keepdims=True)
        return p, classes[np.argmax(p, axis=1)]
    score = z[:, 0] if model["objective"] == "linear" else np.exp(z[:, 0]) * exposure
    return score, score


def _prediction_table(data: pd.DataFrame, id_columns: list[str], label: str | None, model: dict, z: np.ndarray,
                      exposure: np.ndarray) -> pd.DataFrame:
    score, predicted = glm_transform(model, z, exposure)
    return prediction_table(data, id_columns, label, score, predicted)


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    """Mean Poisson deviance 2·(y·log(y/mu) − (y − mu)), with 0·log 0 = 0."""
    ratio = np.where(y > 0, y / np.maximum(mu, 1e-300), 1.0)
    return float(2 * np.mean(y * np.log(ratio) - (y - mu)))


def _validation_metric(model: dict, y: np.ndarray, exposure: np.ndarray) -> Callable[[np.ndarray], float]:
    """Lower is better: log loss (mean over classes' normalised probabilities for one-vs-rest), RMSE, deviance."""
    def metric(z: np.ndarray) -> float:
        score, _ = glm_transform(model, z, exposure)
        if model["objective"] == "logistic":
            classes = np.asarray(model["classes"])
            return log_loss(np.searchsorted(classes, y) if score.ndim == 2 else y == classes[1], score)
        return rmse(y, score) if model["objective"] == "linear" else poisson_deviance(y, score)
    return metric


def _log_quality(ctx: Context, model: dict, y: np.ndarray, table: pd.DataFrame) -> None:
    if model["objective"] == "logistic":
        if "score" in table.columns:
            ctx.metrics.log("auc", roc_auc(y == np.asarray(model["classes"])[1], table["score"].to_numpy()))
        ctx.metrics.log("accuracy", accuracy(y, table["predicted"].to_numpy()))
    elif model["objective"] == "linear":
        ctx.metrics.log("rmse", rmse(y, table["predicted"].to_numpy()))
    else:
        ctx.metrics.log("deviance", poisson_deviance(y, table["predicted"].to_numpy()))
