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
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...runtime.component import ColumnList, component
from ...runtime.context import Context
from ..metrics import accuracy, log_loss, rmse, roc_auc
from ..tables import PredictParams, column_scaling, feature_matrix, label_column, model_columns, prediction_table
from .hetero_train import AUTO_EPOCHS, TrainConfig, arbiter_of, fit_arbiter, fit_guest, fit_host
from .steps import AUTO_MIN_STEPS

ROLES = ("guest", "host", "arbiter")


class HeteroGLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field("y", description="the label column, in the guest's table")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    epochs: int = Field(10, ge=1, description="passes over the training rows")
    batch_size: int = Field(1024, ge=1, description="rows per mini-batch (the same rows at every party)")
    optimizer: Literal["sgd", "adam", "preconditioned"] = Field(
        "sgd", description="adam: per-coordinate steps; preconditioned: each party scales its gradient by the "
        "inverse of its own columns' Gram matrix (a block-diagonal Newton step; far fewer epochs on correlated "
        "features); every party updates only its own weights, from its own gradient")
    learning_rate: float = Field(0.15, gt=0)
    learning_rate_schedule: Literal["constant", "inverse_sqrt"] = Field(
        "constant", description="inverse_sqrt: learning_rate / sqrt(1 + epoch)")
    penalty: Literal["none", "l2", "l1"] = Field("l2", description="l1 is applied as a soft-threshold step")
    alpha: float = Field(1e-4, ge=0, description="regularisation on the mean loss (sklearn C = 1 / (alpha · n))")
    fit_intercept: bool = True
    standardize: bool = Field(True, description="each party scales its own columns to mean 0, variance 1")
    tol: float = Field(0.0, ge=0, description="stop once all weights together move less than this in an epoch "
                       "(hosts then report ‖Δw‖² per epoch); 0: off")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop after this many epochs without a "
                                              "better validation score (needs the `validate` input)")
    he_scheme: Literal["ou", "paillier"] = Field("ou", description="homomorphic scheme")
    key_bits: int = Field(2048, ge=1024, description="HE modulus size; below 2048 only for tests")
    seed: int | None = Field(None, ge=0, description="batch shuffling seed (default: from the CSPRNG)")

    @model_validator(mode="after")
    def _consistent(self) -> HeteroGLMParams:
        if self.penalty == "l1" and self.optimizer != "sgd":
            raise ValueError("penalty l1 (a soft-threshold step) needs optimizer sgd")
        return self

    def config(self, objective: str) -> TrainConfig:
        return TrainConfig(objective=objective, taylor_point=getattr(self, "taylor_point", "zero"),
                           optimizer=self.optimizer, epochs=self.epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, schedule=self.learning_rate_schedule,
                           penalty=self.penalty, alpha=self.alpha, tol=self.tol,
                           early_stopping_rounds=self.early_stopping_rounds, he_scheme=self.he_scheme,
                           key_bits=self.key_bits, seed=self.seed)


class HeteroLRParams(HeteroGLMParams):
    # Defaults measured on the robustness suite (benchmarks/robustness.py, docs/robustness.md) and on
    # default_credit: Adam at 0.05 (inverse_sqrt) for 20 epochs stays within 0.0035 AUC of sklearn on every
    # family, three seeds, 10^4-10^5 rows. The former default, preconditioned at 0.2 for 10 epochs, assumes the
    # logistic curvature of balanced classes (1/4): with 3 % positives the true one is ~0.03, its steps are 8x
    # too short, and it stopped 0.017 AUC below sklearn. Twice the epochs of before: twice the training time.
    epochs: int | None = Field(
        None, ge=1, description=f"passes over the training rows; default: {AUTO_EPOCHS} (Adam's decaying steps then "
        "settle within 0.0035 AUC of the optimum on every robustness family; 10 left up to 0.006), more on a small "
        f"table so that training takes at least {AUTO_MIN_STEPS} mini-batch steps (20 passes over 750 rows are 20 "
        "steps, up to 0.013 AUC short)")
    optimizer: Literal["sgd", "adam", "preconditioned"] = Field(
        "adam", description="see hetero_linr; adam by default for logistic regression: its per-coordinate steps "
        "do not depend on the loss's curvature, which class imbalance shrinks (preconditioned assumes balanced "
        "classes and fell 0.017 AUC short on 3 % positives)")
    learning_rate: float = Field(0.05, gt=0, description="adam: the largest step of a standardised weight")
    learning_rate_schedule: Literal["constant", "inverse_sqrt"] = Field(
        "inverse_sqrt", description="inverse_sqrt: learning_rate / sqrt(1 + epoch)")
    taylor_point: Literal["zero", "guest"] = Field(
        "guest", description="where the sigmoid is linearised: zero (FATE: d = z/4 + 1/2 - y) or each row's guest "
        "partial score (closer to exact logistic regression when the guest's features carry much of the signal; "
        "one more encrypted vector per batch, same disclosure)")


class HeteroPoissonParams(HeteroGLMParams):
    exposure: str | None = Field(None, description="guest column with each row's exposure (default: 1)")


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
        send_scores(ctx, "glm/predict", X, model)
        return {}
    z = joint_scores(ctx, "glm/predict", X, model)
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
    config = params.config(objective)
    if ctx.party == arbiter_of(ctx):
        fit_arbiter(ctx, config)
        return {}
    outputs = _fit_guest(ctx, params, config, train, validate) if ctx.role == "guest" else \
        _fit_host(ctx, params, config, train, validate)
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return outputs


def _fit_guest(ctx: Context, params: HeteroGLMParams, config: TrainConfig, train: pd.DataFrame,
               validate: pd.DataFrame | None) -> dict[str, object]:
    exposure_column = getattr(params, "exposure", None)
    exclude = params.id_columns + [params.label] + ([exposure_column] if exposure_column else [])
    y = label_column(ctx, train, params.label)
    names, X = feature_matrix(ctx, train, exclude)
    X = _finite(ctx, X, names, "train")
    model: dict[str, object] = {"role": "guest", "objective": config.objective, "features": names,
                                "label": params.label, "exposure": exposure_column}
    model["classes"], Y = _targets(ctx, config.objective, y)
    exposure = _exposure(ctx, train, model, "train")
    mean, scale = column_scaling(X, params.standardize)
    valid = None
    if validate is not None:
        y_valid = label_column(ctx, validate, params.label, "validate")
        X_valid = _finite(ctx, model_columns(ctx, validate, names, "validate"), names, "validate")
        metric = _validation_metric(model, y_valid, _exposure(ctx, validate, model, "validate"))
        valid = (_design((X_valid - mean) / scale, params.fit_intercept), metric)
    intercept = (X.shape[1], _initial_intercept(config.objective, Y, exposure)) if params.fit_intercept else None
    W = fit_guest(ctx, config, _design((X - mean) / scale, params.fit_intercept), Y, exposure, intercept, valid)
    coef = W[:X.shape[1]] / scale[:, None]
    model["coef"] = coef
    model["intercept"] = (W[-1] if params.fit_intercept else np.zeros(W.shape[1])) - mean @ coef
    table = _prediction_table(train, params.id_columns, params.label, model, joint_scores(ctx, "glm/train", X, model),
                              exposure)
    _log_quality(ctx, model, y, table)
    return {"model": model, "predictions": table}


def _fit_host(ctx: Context, params: HeteroGLMParams, config: TrainConfig, train: pd.DataFrame,
              validate: pd.DataFrame | None) -> dict[str, object]:
    names, X = feature_matrix(ctx, train, params.id_columns)
    X = _finite(ctx, X, names, "train")
    mean, scale = column_scaling(X, params.standardize)
    X_valid = None
    if validate is not None:
        X_valid = (_finite(ctx, model_columns(ctx, validate, names, "validate"), names, "validate") - mean) / scale
    W = fit_host(ctx, config, (X - mean) / scale, X_valid)
    coef = W / scale[:, None]
    model = {"role": "host", "features": names, "coef": coef, "offset": -(mean @ coef)}
    send_scores(ctx, "glm/train", X, model)
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
