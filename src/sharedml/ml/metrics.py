"""Evaluation metrics computed locally by the party that holds the labels (numpy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied scores sharing their average rank)."""
    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        raise ValueError("AUC needs both classes among the labels")
    order = np.argsort(score, kind="mergesort")
    ranked = np.asarray(score)[order]
    ranks = np.empty(len(ranked))
    starts = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]
    ends = np.r_[starts[1:], len(ranked)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(predicted)))


def rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - predicted) ** 2)))


def log_loss(y: np.ndarray, probability: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood: binary (probability of class 1, shape (n,)) or multi-class ((n, K))."""
    p = np.clip(np.asarray(probability, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(y)
    if p.ndim == 1:
        return float(-np.mean(np.where(y > 0.5, np.log(p), np.log(1 - p))))
    return float(-np.mean(np.log(p[np.arange(len(y)), y.astype(np.int64)])))


def mae(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - predicted)))


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot (as sklearn: 0 for a constant label predicted exactly)."""
    y = np.asarray(y, dtype=np.float64)
    residual = float(np.sum((y - predicted) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


def _ranked_counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, true positives, false positives) at each distinct score, highest score first:
    predicting positive for score >= threshold gives those counts."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    ranked, positive = np.asarray(score, dtype=np.float64)[order], np.asarray(y).astype(bool)[order]
    last_of_tie = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    tp = np.cumsum(positive)[last_of_tie]
    return ranked[last_of_tie], tp, (last_of_tie + 1) - tp


def roc_curve(y: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """ROC points (fpr, tpr) at every distinct threshold, starting from (0, 0) at threshold +inf."""
    thresholds, tp, fp = _ranked_counts(y, score)
    return {"fpr": np.r_[0.0, fp / max(fp[-1], 1)], "tpr": np.r_[0.0, tp / max(tp[-1], 1)],
            "threshold": np.r_[np.inf, thresholds]}


def pr_curve(y: np.ndarray, score: np.ndarray) -> dict[str, np.ndarray]:
    """Precision–recall points at every distinct threshold, highest threshold first."""
    thresholds, tp, fp = _ranked_counts(y, score)
    return {"recall": tp / max(tp[-1], 1), "precision": tp / (tp + fp), "threshold": thresholds}


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic: the largest gap between the score distributions of the two classes."""
    curve = roc_curve(y, score)
    return float(np.max(curve["tpr"] - curve["fpr"]))


def confusion(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Counts[i, j]: rows of true class classes[i] predicted as classes[j]."""
    index = {c: i for i, c in enumerate(classes.tolist())}
    true = np.array([index[c] for c in np.asarray(y).tolist()], dtype=np.int64)
    pred = np.array([index.get(c, -1) for c in np.asarray(predicted).tolist()], dtype=np.int64)
    keep = pred >= 0
    k = len(classes)
    return np.bincount(true[keep] * k + pred[keep], minlength=k * k).reshape(k, k)


def precision_recall_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix (0 where undefined, as sklearn)."""
    tp = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1


def lift_gain(y: np.ndarray, score: np.ndarray, groups: int = 10) -> dict[str, np.ndarray]:
    """Cumulative gain and lift by score quantile group (highest scores first): after the top share q of
    rows, gain = share of all positives captured, lift = gain / q."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    positive = np.asarray(y).astype(bool)[order]
    ends = np.ceil(np.arange(1, groups + 1) * len(positive) / groups).astype(np.int64)
    captured = np.cumsum(positive)[ends - 1] / max(int(positive.sum()), 1)
    share = ends / len(positive)
    return {"share": share, "gain": captured, "lift": captured / share}
