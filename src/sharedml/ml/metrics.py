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
