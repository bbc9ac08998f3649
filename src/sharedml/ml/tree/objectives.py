"""Training objectives: gradients, Hessians, starting margin and output transform, as XGBoost has them.

The guest owns the labels, so it alone evaluates these; hosts only ever see (encrypted) g and h.
Formulas and the starting margin follow XGBoost 3.x so that the plaintext learner reproduces its
models: XGBoost estimates ``base_score`` from the labels (mean label for ``binary:logistic`` and
``reg:squarederror``, centred log class frequencies for ``multi:softmax``), clipping probabilities
at 1e-6 so that a constant label still gives a finite margin.
"""

from __future__ import annotations

import numpy as np

HESS_EPS = 1e-16  # XGBoost's floor on the Hessian, so that no leaf divides by zero
PROB_EPS = 1e-6  # XGBoost's clip of probabilities when turning a base score into a margin


class BinaryLogistic:
    """Log loss on a sigmoid of the margin; labels in {0, 1}."""

    name = "binary:logistic"
    n_outputs = 1

    def base_margin(self, y: np.ndarray) -> np.ndarray:
        p = np.clip(np.mean(y), PROB_EPS, 1 - PROB_EPS)
        return np.array([np.log(p / (1 - p))])

    def grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.transform(margin)
        return p - y, np.maximum(p * (1 - p), HESS_EPS)

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Probability of class 1."""
        return 1.0 / (1.0 + np.exp(-margin))

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return self.transform(margin)


class SquaredError:
    """Half squared error; the margin is the prediction."""

    name = "reg:squarederror"
    n_outputs = 1

    def base_margin(self, y: np.ndarray) -> np.ndarray:
        return np.array([np.mean(y)])

    def grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return margin - y, np.ones_like(margin)

    def transform(self, margin: np.ndarray) -> np.ndarray:
        return margin

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return margin


class Softmax:
    """Multinomial log loss over K margins per row; labels in {0, ..., K-1}; predicts the class."""

    name = "multi:softmax"

    def __init__(self, num_class: int):
        if num_class < 2:
            raise ValueError(f"multi:softmax needs num_class >= 2, got {num_class}")
        self.n_outputs = num_class

    def base_margin(self, y: np.ndarray) -> np.ndarray:
        freq = np.bincount(np.asarray(y, dtype=np.int64), minlength=self.n_outputs) / len(y)
        log_freq = np.log(np.maximum(freq, PROB_EPS))
        return log_freq - log_freq.mean()

    def grad_hess(self, y: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-class g and h, shape (n, K); the Hessian is XGBoost's 2 p (1 - p), a diagonal bound."""
        p = self.transform(margin)
        onehot = np.arange(self.n_outputs) == np.asarray(y, dtype=np.int64)[:, None]
        return p - onehot, np.maximum(2 * p * (1 - p), HESS_EPS)

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, K)."""
        shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return np.argmax(margin, axis=1)


Objective = BinaryLogistic | SquaredError | Softmax


def get_objective(name: str, num_class: int | None = None) -> Objective:
    """The objective called ``name`` (XGBoost's names); ``num_class`` is required for multi:softmax."""
    if name == BinaryLogistic.name:
        return BinaryLogistic()
    if name == SquaredError.name:
        return SquaredError()
    if name == Softmax.name:
        if num_class is None:
            raise ValueError("multi:softmax needs num_class")
        return Softmax(num_class)
    raise ValueError(f"unknown objective {name!r}; known: binary:logistic, reg:squarederror, multi:softmax")


def initial_margin(base: np.ndarray, n: int) -> np.ndarray:
    """Every row's starting margin: shape (n,) for one output, (n, K) for K."""
    return np.tile(base, (n, 1)) if len(base) > 1 else np.full(n, base[0])


def output_column(a: np.ndarray, k: int) -> np.ndarray:
    """Output ``k`` of per-row values (a view): the array itself when there is one output."""
    return a if a.ndim == 1 else a[:, k]
