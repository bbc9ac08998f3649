"""Job components `hetero_secureboost` (train) and `hetero_secureboost_predict` (batch prediction).

Inputs are tables whose rows are already aligned across parties (a `psi` task's `data`). The guest's
table holds the label; every party's remaining numeric columns, minus the ID columns, are features.
Each party's `model` output holds only its own part: the guest the trees and leaf values, a host
the splits it owns. `predictions` (ID columns, label, score, predicted) appear at the guest only.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...runtime.component import ColumnList, component
from ...runtime.context import Context
from ..metrics import accuracy, rmse, roc_auc
from ..tables import PredictParams, feature_matrix, label_column, model_columns, prediction_table
from .joint_predict import predict_guest, predict_host, transform
from .sampling import Sampling
from .secureboost import BoostParams, fit_guest, fit_host

LABEL_TASKS = {"binary:logistic": "binary", "multi:softmax": "multiclass", "reg:squarederror": "regression"}

class SecureBoostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field("y", description="the label column, in the guest's table")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="columns that are not features")
    objective: Literal["binary:logistic", "reg:squarederror", "multi:softmax"] = "binary:logistic"
    num_class: int | None = Field(None, ge=2, description="multi:softmax only; default: max label + 1")
    multi_strategy: Literal["one_output_per_tree", "multi_output_tree"] = Field(
        "one_output_per_tree", description="multi:softmax: one tree per class and round, or one tree per round "
        "with a value per class in each leaf (about K times less HE work; up to 4-5 classes per ciphertext)")
    n_estimators: int = Field(10, ge=1, description="boosting rounds (trees per class)")
    max_depth: int = Field(5, ge=1, le=16)
    learning_rate: float = Field(0.3, gt=0)
    reg_lambda: float = Field(1.0, ge=0)
    gamma: float = Field(0.0, ge=0)
    min_child_weight: float = Field(1.0, ge=0)
    max_bin: int = Field(32, ge=2, le=255, description="bins per feature (each party bins its own columns)")
    he_scheme: Literal["ou", "paillier"] = Field("ou", description="homomorphic scheme for g and h")
    key_bits: int = Field(2048, ge=1024, description="HE modulus size; below 2048 only for tests")
    subsample: float = Field(1.0, gt=0, le=1, description="share of rows each tree uses (hosts cannot tell which)")
    colsample_bytree: float = Field(1.0, gt=0, le=1, description="share of each party's own features per tree")
    goss: bool = Field(False, description="gradient-based one-side sampling instead of uniform `subsample`")
    top_rate: float = Field(0.2, gt=0, lt=1, description="GOSS: share of rows with the largest |g| always kept")
    other_rate: float = Field(0.1, gt=0, lt=1, description="GOSS: share of rows sampled from the rest")
    seed: int | None = Field(None, ge=0, description="sampling seed (default: fresh CSPRNG seeds per party)")
    guest_only_rounds: int = Field(0, ge=0, description="first rounds grown on the guest's features only")
    complete_secure: bool = Field(False, description="FATE's name for guest_only_rounds >= 1")
    early_stopping_rounds: int | None = Field(None, ge=1, description="stop after this many rounds without a "
                                              "better validation score (needs the `validate` input)")
    eval_metric: Literal["auto", "logloss", "mlogloss", "auc", "rmse", "accuracy"] = Field(
        "auto", description="validation metric; auto: logloss, rmse or mlogloss by objective")

    @model_validator(mode="after")
    def _consistent(self) -> SecureBoostParams:
        if self.goss and self.subsample < 1:
            raise ValueError("choose either goss or subsample < 1, not both")
        if self.goss and self.top_rate + self.other_rate > 1:
            raise ValueError("goss needs top_rate + other_rate <= 1")
        return self

    def boost(self) -> BoostParams:
        sampling = Sampling(self.subsample, self.colsample_bytree, self.goss, self.top_rate, self.other_rate,
                            self.seed)
        guest_only = max(self.guest_only_rounds, 1 if self.complete_secure else 0)
        return BoostParams(self.objective, self.num_class, self.n_estimators, self.max_depth, self.learning_rate,
                           self.reg_lambda, self.gamma, self.min_child_weight, self.max_bin, self.he_scheme,
                           self.key_bits, sampling=sampling, guest_only_rounds=guest_only,
                           early_stopping_rounds=self.early_stopping_rounds, eval_metric=self.eval_metric,
                           multi_strategy=self.multi_strategy)


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
        fitted = fit_guest(ctx, params.boost(), X, y, X_valid, y_valid)
        model = {**fitted["model"], "features": names}
        predictions = _predictions(train, params.id_columns, params.label, model, fitted["margin"])
        _log_quality(ctx, model, y, predictions)
        importance = _importance(names, [t["feature"][i] for t in model["trees"]
                                         for i, owner in enumerate(t["owner"]) if owner == "" and t["left"][i] >= 0])
        outputs: dict[str, object] = {"model": model, "predictions": predictions, "importance": importance}
    else:
        names, X = feature_matrix(ctx, train, params.id_columns)
        X_valid = None if validate is None else model_columns(ctx, validate, names, "validate")
        model = {**fit_host(ctx, params.boost(), X, X_valid)["model"], "features": names}
        importance = _importance(names, [split[0] for split in model["splits"].values()])
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
