"""Plaintext core of (SecureBoost) gradient-boosted trees: objectives, histograms, splits, a reference learner."""

from .histogram import build_histogram, subtract_histogram
from .objectives import get_objective
from .params import BoostParams, Regularization, TreeParams
from .plain import PlainBoost, Tree
from .split import Split, best_of, find_best_split, leaf_weight

__all__ = [
    "BoostParams",
    "PlainBoost",
    "Regularization",
    "Split",
    "Tree",
    "TreeParams",
    "best_of",
    "build_histogram",
    "find_best_split",
    "get_objective",
    "leaf_weight",
    "subtract_histogram",
]
