"""The `evaluate` component: model quality from a prediction table, at the party that holds the labels.

It reads any model's `predictions` output (ID columns, label, `score` or `score_0..K-1`, `predicted`;
see `sharedml.ml.tables.prediction_table`), so one task evaluates SecureBoost, hetero LR or SS-LR
alike. Nothing crosses the wire: the label holder computes everything locally. ROC and PR curve
points are kept (thinned to `curve_points`) in the `report` output for plotting.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..runtime.component import component
from ..runtime.context import Context
from . import metrics


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field("y", description="the true label column of the predictions table")
    task_type: Literal["auto", "binary", "multiclass", "regression"] = Field(
        "auto", description="auto: binary with one `score` column and two labels, multiclass with `score_k` "
        "columns, else regression")
    threshold: float = Field(0.5, description="binary: score at or above which a row counts as positive")
    groups: int = Field(10, ge=2, description="binary: score quantile groups of the lift/gain table")
    curve_points: int = Field(200, ge=2, description="binary: ROC and PR points kept for plotting")


def _thin(curve: dict[str, np.ndarray], points: int) -> dict[str, list[float]]:
    """At most `points` points evenly spread along the curve, the first and last always kept."""
    size = len(next(iter(curve.values())))
    keep = np.unique(np.linspace(0, size - 1, min(points, size)).round().astype(np.int64))
    return {name: values[keep].tolist() for name, values in curve.items()}


def binary_report(y: np.ndarray, score: np.ndarray, threshold: float = 0.5, groups: int = 10,
                  curve_points: int = 200) -> dict[str, Any]:
    predicted = (score >= threshold).astype(np.int64)
    matrix = metrics.confusion(y.astype(np.int64), predicted, np.array([0, 1]))
    precision, recall, f1 = metrics.precision_recall_f1(matrix)
    return {"task_type": "binary", "rows": len(y), "auc": metrics.roc_auc(y, score), "ks": metrics.ks(y, score),
            "accuracy": metrics.accuracy(y, predicted), "precision": float(precision[1]),
            "recall": float(recall[1]), "f1": float(f1[1]), "threshold": threshold,
            "confusion_matrix": {"labels": [0, 1], "counts": matrix.tolist()},
            "lift_gain": {k: v.tolist() for k, v in metrics.lift_gain(y, score, groups).items()},
            "roc_curve": _thin(metrics.roc_curve(y, score), curve_points),
            "pr_curve": _thin(metrics.pr_curve(y, score), curve_points)}


def multiclass_report(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    classes = np.unique(np.r_[y, predicted])
    matrix = metrics.confusion(y, predicted, classes)
    precision, recall, f1 = metrics.precision_recall_f1(matrix)
    present = np.isin(classes, y)  # macro-F1 over the true classes, as sklearn's f1_score(labels=unique(y))
    return {"task_type": "multiclass", "rows": len(y), "accuracy": metrics.accuracy(y, predicted),
            "macro_f1": float(f1[present].mean()), "classes": classes.tolist(),
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "confusion_matrix": {"labels": classes.tolist(), "counts": matrix.tolist()}}


def regression_report(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {"task_type": "regression", "rows": len(y), "rmse": metrics.rmse(y, predicted),
            "mae": metrics.mae(y, predicted), "r2": metrics.r2(y, predicted)}


def _task_type(table: pd.DataFrame, label: str, requested: str) -> str:
    if requested != "auto":
        return requested
    if "score_0" in table.columns:
        return "multiclass"
    if "score" in table.columns and set(np.unique(table[label])) <= {0, 1}:
        return "binary"
    return "regression"


def evaluate_table(table: pd.DataFrame, params: EvaluateParams, where: str = "predictions") -> dict[str, Any]:
    """The report for one prediction table; `where` names it in errors."""
    if params.label not in table.columns:
        raise ValueError(f"{where}: no label column {params.label!r} (columns: {list(table.columns)}); set `label`, "
                         "or evaluate at the party that holds the labels")
    if not len(table):
        raise ValueError(f"{where}: the table is empty")
    task_type = _task_type(table, params.label, params.task_type)
    needed = {"binary": "score", "multiclass": "predicted", "regression": "predicted"}[task_type]
    if needed not in table.columns:
        raise ValueError(f"{where}: a {task_type} evaluation needs a {needed!r} column; it has {list(table.columns)}")
    y = table[params.label].to_numpy()
    if task_type == "binary":
        if not set(np.unique(y)) <= {0, 1}:
            raise ValueError(f"{where}: binary evaluation needs labels 0/1, found {np.unique(y)[:10].tolist()}")
        return binary_report(y.astype(np.int64), table["score"].to_numpy(np.float64), params.threshold,
                             params.groups, params.curve_points)
    if task_type == "multiclass":
        return multiclass_report(y, table["predicted"].to_numpy())
    return regression_report(y.astype(np.float64), table["predicted"].to_numpy(np.float64))


@component("evaluate", params=EvaluateParams, inputs=("predictions",), outputs=("report",))
def evaluate(ctx: Context, params: EvaluateParams, predictions: pd.DataFrame) -> dict[str, object]:
    """Binary, multi-class or regression metrics of a prediction table (run it at the label holder)."""
    report = evaluate_table(predictions, params, f"party {ctx.party!r}, input `predictions`")
    for name, value in report.items():
        if isinstance(value, float | int) and name not in ("rows", "threshold"):
            ctx.metrics.log(name, value)
    return {"report": report}
