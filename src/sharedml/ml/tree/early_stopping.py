"""Early stopping on a validation set: score every boosting round, stop after `rounds` rounds
without improvement and keep the model as it was at the best round (XGBoost's rule)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..metrics import accuracy, log_loss, rmse, roc_auc
from .objectives import get_objective

DEFAULT_METRIC = {"binary:logistic": "logloss", "reg:squarederror": "rmse", "multi:softmax": "mlogloss"}
HIGHER_IS_BETTER = {"auc", "accuracy"}


def resolve_metric(name: str, objective: str) -> str:
    """The metric `name` stands for: "auto" is the objective's default, as in XGBoost."""
    return DEFAULT_METRIC[objective] if name == "auto" else name


def metric_function(name: str, objective: str, num_class: int | None) -> Callable[[np.ndarray, np.ndarray], float]:
    """metric(y, margin) for a resolved metric `name`."""
    transform = get_objective(objective, num_class).transform
    functions = {
        "logloss": lambda y, m: log_loss(y, transform(m)),
        "mlogloss": lambda y, m: log_loss(y, transform(m)),
        "auc": lambda y, m: roc_auc(y, transform(m)),
        "rmse": lambda y, m: rmse(y, transform(m)),
        "accuracy": lambda y, m: accuracy(y, get_objective(objective, num_class).predict(m)),
    }
    return functions[name]


class EarlyStopping:
    """Tracks the validation score per round; `update` returns True when training should stop."""

    def __init__(self, metric: str, rounds: int | None):
        self.higher_is_better = metric in HIGHER_IS_BETTER
        self.rounds = rounds
        self.best_round = -1
        self.best_score = -np.inf if self.higher_is_better else np.inf

    def update(self, round_: int, score: float) -> bool:
        better = score > self.best_score if self.higher_is_better else score < self.best_score
        if better:
            self.best_round, self.best_score = round_, score
        return self.rounds is not None and round_ - self.best_round >= self.rounds
