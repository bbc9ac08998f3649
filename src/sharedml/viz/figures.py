"""Figures of a model's quality, drawn with matplotlib from what the job stored (the optional `viz` extra).

Why from stored records only: every figure here is drawn from an `evaluate` report (ROC and PR points,
lift/gain, confusion counts), a task's metric records (anything logged with a step: loss or validation
per round, tree or epoch) or an importance table, so any component that writes those shows up, and a
plot never needs the data or another party's model. Each function returns a `Figure` (shown inline in
Jupyter, saved by the report page).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from ..jobs.results import TaskResult

try:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; Jupyter's inline backend still wins when active
    from matplotlib.figure import Figure
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("plots need matplotlib: pip install 'sharedml[viz]'") from err

SIZE = (4.6, 3.4)


def _figure(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig, ax


def _binary(report: dict[str, Any], what: str) -> None:
    if report.get("task_type") != "binary":
        raise ValueError(f"a {what} needs a binary report; this one is {report.get('task_type')!r}")


def roc(report: dict[str, Any]) -> Figure:
    """True against false positive rate, with the AUC."""
    _binary(report, "ROC curve")
    fig, ax = _figure(f"ROC  (AUC {report['auc']:.4f})")
    ax.plot(report["roc_curve"]["fpr"], report["roc_curve"]["tpr"], lw=1.8)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    return fig


def precision_recall(report: dict[str, Any]) -> Figure:
    """Precision against recall, with the positives' share as the no-skill line."""
    _binary(report, "PR curve")
    fig, ax = _figure("precision-recall")
    ax.plot(report["pr_curve"]["recall"], report["pr_curve"]["precision"], lw=1.8)
    positives = report["confusion_matrix"]["counts"][1]
    ax.axhline(sum(positives) / max(report["rows"], 1), ls="--", lw=0.8, color="grey")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    return fig


def ks(report: dict[str, Any]) -> Figure:
    """Share of positives and of negatives scored above each threshold; KS is the widest gap."""
    _binary(report, "KS curve")
    curve = report["roc_curve"]
    threshold = np.asarray(curve["threshold"], dtype=np.float64)
    tpr, fpr = np.asarray(curve["tpr"]), np.asarray(curve["fpr"])
    finite = np.isfinite(threshold)
    fig, ax = _figure(f"KS  ({report['ks']:.4f})")
    ax.plot(threshold[finite], tpr[finite], label="positives above", lw=1.6)
    ax.plot(threshold[finite], fpr[finite], label="negatives above", lw=1.6)
    if finite.any():
        at = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
        ax.vlines(threshold[at], fpr[at], tpr[at], colors="black", lw=1.2)
    ax.set(xlabel="score threshold", ylabel="cumulative share")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    return fig


def lift_gain(report: dict[str, Any]) -> Figure:
    """Cumulative gain (share of positives in the top-scored share of rows) and lift, by score decile."""
    _binary(report, "lift/gain chart")
    table = report["lift_gain"]
    fig, ax = _figure("gain and lift")
    ax.plot([0, *table["share"]], [0, *table["gain"]], marker="o", ms=3, label="gain")
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
    ax.set(xlabel="share of rows (highest scores first)", ylabel="share of positives", xlim=(0, 1), ylim=(0, 1.01))
    lift = ax.twinx()
    lift.plot(table["share"], table["lift"], color="tab:orange", marker="s", ms=3, label="lift")
    lift.set_ylabel("lift")
    fig.legend(loc="lower right", fontsize=8)
    return fig


def confusion(report: dict[str, Any]) -> Figure:
    """Counts of true (rows) against predicted (columns) labels."""
    matrix = report.get("confusion_matrix")
    if matrix is None:
        raise ValueError(f"a {report.get('task_type')!r} report has no confusion matrix")
    counts, labels = np.asarray(matrix["counts"]), [str(label) for label in matrix["labels"]]
    fig, ax = _figure("confusion matrix")
    ax.grid(False)
    ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > counts.max() / 2 else "black", fontsize=9)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true")
    return fig


def curves(records: list[dict[str, Any]]) -> list[Figure]:
    """One figure per metric logged with a step (loss, validation score, ... per round, tree or epoch)."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        if record.get("step") is not None and isinstance(record.get("value"), int | float):
            series[record["name"]].append((record["step"], record["value"]))
    figures = []
    for name, points in series.items():
        if len(points) < 2:
            continue
        steps, values = zip(*sorted(points), strict=True)
        fig, ax = _figure(name)
        ax.plot(steps, values, marker="o", ms=2.5, lw=1.4)
        ax.set(xlabel="step (round, tree or epoch)", ylabel=name)
        figures.append(fig)
    return figures


def importance(table: pd.DataFrame, top: int = 20) -> Figure:
    """A party's own features by importance (its model part's table: feature and one numeric column)."""
    value = next(c for c in table.columns if c != "feature" and pd.api.types.is_numeric_dtype(table[c]))
    used = table[table[value] > 0]  # features no tree used have nothing to show
    shown = (used if len(used) else table).sort_values(value, ascending=False).head(top).iloc[::-1]
    fig = Figure(figsize=(SIZE[0], max(2.0, 0.22 * len(shown) + 0.8)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(f"feature importance ({value})", fontsize=10)
    ax.barh(shown["feature"].astype(str), shown[value])
    ax.tick_params(axis="y", labelsize=8)
    return fig


REPORT_FIGURES = {"roc": roc, "precision_recall": precision_recall, "ks": ks, "lift_gain": lift_gain,
                  "confusion": confusion}
NEEDS = {"roc": ("auc", "roc_curve"), "precision_recall": ("pr_curve", "confusion_matrix", "rows"),
         "ks": ("ks", "roc_curve"), "lift_gain": ("lift_gain",), "confusion": ("confusion_matrix",)}


def report_figures(report: dict[str, Any]) -> list[Figure]:
    """Every figure a report has the data for: all five for an `evaluate` report of a binary task, the
    confusion matrix for multi-class, none for regression; a figure whose data a report lacks is skipped."""
    kinds = REPORT_FIGURES if report.get("task_type") == "binary" else {"confusion": confusion}
    return [draw(report) for kind, draw in kinds.items() if all(key in report for key in NEEDS[kind])]


def task_figures(result: TaskResult) -> list[Figure]:
    """Every figure of one task's results at one party: a curve per metric logged by step, the report's,
    and the feature importance."""
    drawn = curves(result.metrics)
    if result.report is not None:
        drawn += report_figures(result.report)
    if result.importance is not None and len(result.importance):
        drawn.append(importance(result.importance))
    return drawn
