"""Job components `hetero_secureboost` (train) and `hetero_secureboost_predict` (batch prediction).

Inputs are tables whose rows are already aligned across parties (a `psi` task's `data`). The guest's
table holds the label; every party's remaining numeric columns, minus the ID columns, are features.
Each party's `model` output holds only its own part: the guest the trees and leaf values, a host
the splits it owns. `predictions` (ID columns, label, score, predicted) appear at the guest only.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ...runtime.component import component
from ...runtime.context import Context
from ..metrics import accuracy, rmse, roc_auc
from ..tables import PredictParams, feature_matrix, label_column, model_columns, prediction_table
from .host_model import splits_of
from .joint_predict import predict_guest, predict_host, transform
from .params import SecureBoostParams
from .secureboost import fit_guest, fit_host

LABEL_TASKS = {"binary:logistic": "binary", "multi:softmax": "multiclass", "reg:squarederror": "regression"}


@component("hetero_secureboost", params=SecureBoostParams, roles=("guest", "host"), inputs=("train",),
           optional_inputs=("validate",), outputs=("model", "predictions", "importance"), min_parties=2)
def hetero_secureboost(ctx: Context, params: SecureBoostParams, train: pd.DataFrame,
                       validate: pd.DataFrame | None = None) -> dict[str, object]:
    """SecureBoost: gradient boosted trees on vertically split data, XGBoost-equivalent, g/h under HE."""
    started = time.perf_counter()
    if len(ctx.parties_with_role("guest")) != 1:
        raise ValueError(f"hetero_secureboost needs exactly one guest (the label holder); roles: {ctx.roles}")
    if ctx.role == "guest":
        y = label_column(ctx, train, params.label, task=LABEL_TASKS[params.objective])
        if params.early_stopping_rounds is not None and validate is None:
            raise ValueError(f"early_stopping_rounds needs validation rows: give guest {ctx.party!r} and every host "
                             "a `validate` input (aligned like `train`)")
        names, X = feature_matrix(ctx, train, params.id_columns + [params.label])
        X_valid = y_valid = None
        if validate is not None:
            y_valid = label_column(ctx, validate, params.label, "validate")
            X_valid = model_columns(ctx, validate, names, "validate")
        fitted = fit_guest(ctx, params, X, y, X_valid, y_valid)
        model = {**fitted["model"], "features": names}
        predictions = _predictions(train, params.id_columns, params.label, model, fitted["margin"])
        _log_quality(ctx, model, y, predictions)
        importance = _importance(names, [t["feature"][i] for t in model["trees"]
                                         for i, owner in enumerate(t["owner"]) if owner == "" and t["left"][i] >= 0])
        outputs: dict[str, object] = {"model": model, "predictions": predictions, "importance": importance}
    else:
        names, X = feature_matrix(ctx, train, params.id_columns)
        X_valid = None if validate is None else model_columns(ctx, validate, names, "validate")
        model = {**fit_host(ctx, params, X, X_valid)["model"], "features": names}
        importance = _importance(names, [split.feature for split in splits_of(model).values()])
        outputs = {"model": model, "importance": importance}
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return outputs


@component("hetero_secureboost_predict", params=PredictParams, roles=("guest", "host"), inputs=("model", "data"),
           outputs=("predictions",), min_parties=2)
def hetero_secureboost_predict(ctx: Context, params: PredictParams, model: dict, data: pd.DataFrame) -> dict:
    """Batch prediction with a trained SecureBoost model; hosts send routing bits, the guest scores."""
    X = model_columns(ctx, data, model["features"], "data")
    if model["role"] == "host":
        predict_host(ctx, model, X)
        return {}
    label = params.label if params.label in data.columns else None
    table = _predictions(data, params.id_columns, label, model, predict_guest(ctx, model, X))
    if label is not None:
        _log_quality(ctx, model, data[label].to_numpy(dtype=np.float64), table)
    return {"predictions": table}


def _predictions(data: pd.DataFrame, id_columns: list[str], label: str | None, model: dict,
                 margin: np.ndarray) -> pd.DataFrame:
    score, predicted = transform(model, margin)
    return prediction_table(data, id_columns, label, score, predicted)


def _log_quality(ctx: Context, model: dict, y: np.ndarray, table: pd.DataFrame) -> None:
    if model["objective"] == "binary:logistic":
        ctx.metrics.log("auc", roc_auc(y, table["score"].to_numpy()))
    if model["objective"] == "reg:squarederror":
        ctx.metrics.log("rmse", rmse(y, table["predicted"].to_numpy()))
    else:
        ctx.metrics.log("accuracy", accuracy(y, table["predicted"].to_numpy()))


def _importance(names: list[str], split_features: list[int]) -> pd.DataFrame:
    """Split counts of this party's own features (a party never sees another's)."""
    counts = np.bincount(np.asarray(split_features, dtype=np.int64), minlength=len(names))
    return pd.DataFrame({"feature": names, "splits": counts}).sort_values("splits", ascending=False,
                                                                          ignore_index=True)
