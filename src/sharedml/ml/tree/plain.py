"""Plaintext gradient boosting on binned features: the reference the SecureBoost protocol must match.

It is XGBoost's ``tree_method="hist"`` with ``grow_policy="depthwise"`` on pre-binned codes: same
gradients, base score, gain, tie-breaking, learned default direction for missing values and leaf
weights, so that tests can check it tree by tree against XGBoost and the federated learner can be
checked against it. Each level's nodes are split in order; of two children only the smaller one's
histogram is built from rows, the other is the parent's minus it (the trick that in SecureBoost
halves the encrypted work of hosts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .histogram import build_histogram, subtract_histogram
from .objectives import Objective, get_objective, initial_margin, output_column
from .params import BoostParams, Regularization
from .split import Split, find_best_split, leaf_weight


@dataclass
class Tree:
    """One regression tree as parallel arrays indexed by node id (root 0; ``feature == -1``: a leaf).

    A row goes to ``left`` if its code of ``feature`` is ``<= bin``, or if it is missing and
    ``default_left``; ``value`` is the leaf's output, learning rate included (0 at inner nodes).
    """

    feature: np.ndarray
    bin: np.ndarray
    default_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray

    def leaf_of(self, bins: np.ndarray, missing_bin: int) -> np.ndarray:
        """Leaf node id of every row, walking all rows one level per step."""
        node = np.zeros(len(bins), dtype=np.int64)
        rows = np.arange(len(bins))
        while True:
            feature = self.feature[node]
            inner = feature >= 0
            if not inner.any():
                return node
            codes = bins[rows, np.maximum(feature, 0)]
            go_left = np.where(codes == missing_bin, self.default_left[node], codes <= self.bin[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)

    def predict(self, bins: np.ndarray, missing_bin: int) -> np.ndarray:
        return self.value[self.leaf_of(bins, missing_bin)]


@dataclass
class _Node:
    """A node waiting to be split: its id, its rows, its (G, H) totals and its histogram (G, H)."""

    id: int
    rows: np.ndarray
    totals: tuple[float, float]
    hist: tuple[np.ndarray, np.ndarray] | None


class TreeBuilder:
    """Node table that grows as nodes are added; ids are handed out in creation order, as XGBoost does."""

    def __init__(self):
        self.rows: list[list] = []  # [feature, bin, default_left, left, right, value] per node id

    def add(self) -> int:
        self.rows.append([-1, -1, False, -1, -1, 0.0])
        return len(self.rows) - 1

    def set_split(self, node: int, split: Split, left: int, right: int) -> None:
        self.rows[node][:5] = [split.feature, split.bin, split.default_left, left, right]

    def set_leaf(self, node: int, value: float) -> None:
        self.rows[node][5] = value

    def tree(self) -> Tree:
        dtypes = [np.int32, np.int32, bool, np.int32, np.int32]
        columns = list(zip(*self.rows, strict=True))
        width = max(np.size(v) for v in columns[5])  # K for a multi-output tree: leaves hold vectors
        values = np.array([np.broadcast_to(v, (width,)) for v in columns[5]]) if width > 1 else \
            np.array(columns[5], dtype=np.float64)
        return Tree(*(np.array(col, dtype=dt) for col, dt in zip(columns, dtypes, strict=False)), values)


def grow_tree(
    bins: np.ndarray, g: np.ndarray, h: np.ndarray, n_bins: int, params: Regularization, max_depth: int, eta: float,
    columns: np.ndarray | None = None,
) -> Tree:
    """Grow one tree level by level on codes ``bins`` (missing code ``n_bins``) for gradients g, h,
    splitting only on the features ``columns`` (default: all)."""
    builder = TreeBuilder()
    columns = np.arange(bins.shape[1]) if columns is None else np.asarray(columns)
    sampled = bins[:, columns]
    rows = np.arange(len(bins))
    totals = (g.sum(axis=0), h.sum(axis=0))  # arrays of shape (K,) for a multi-output tree
    level = [_Node(builder.add(), rows, totals, build_histogram(sampled, rows, g, h, n_bins))]
    leaves = []
    for depth in range(max_depth):
        next_level = []
        for node in level:
            split = find_best_split(*node.hist, params, node.totals, features=columns)
            if split is None:
                leaves.append(node)
                continue
            children = _split_node(builder, node, split, bins, sampled, g, h, n_bins,
                                   with_hist=depth + 1 < max_depth)
            next_level.extend(children)
        level = next_level
    for node in leaves + level:
        builder.set_leaf(node.id, eta * leaf_weight(*node.totals, params.reg_lambda))
    return builder.tree()


def _split_node(builder, node, split, bins, sampled, g, h, n_bins, with_hist) -> list[_Node]:
    """Record ``split`` at ``node`` and return its children; histograms (of the ``sampled`` columns)
    only if they may split again."""
    goes_left = split.goes_left(bins[node.rows, split.feature], n_bins)
    left_rows, right_rows = node.rows[goes_left], node.rows[~goes_left]
    hists = child_histograms(sampled, g, h, n_bins, node.hist, left_rows, right_rows) if with_hist else (None, None)
    left = _Node(builder.add(), left_rows, (split.g_left, split.h_left), hists[0])
    right = _Node(builder.add(), right_rows, (split.g_right, split.h_right), hists[1])
    builder.set_split(node.id, split, left.id, right.id)
    return [left, right]


def child_histograms(bins, g, h, n_bins, parent_hist, left_rows, right_rows):
    """(left, right) histograms: the smaller child's from its rows, its sibling's by subtraction."""
    if len(left_rows) <= len(right_rows):
        left = build_histogram(bins, left_rows, g, h, n_bins)
        return left, subtract_histogram(parent_hist, left)
    right = build_histogram(bins, right_rows, g, h, n_bins)
    return subtract_histogram(parent_hist, right), right


class PlainBoost:
    """Boosted trees on binned features, with the parameters of `BoostParams` (named and meant as in XGBoost).

    ``max_bin`` is the binner's: codes are ``0..max_bin-1`` and ``max_bin`` marks a missing value.
    With K > 1 outputs (multi:softmax) every round grows one tree per class, stored in ``trees`` in
    XGBoost's order (round-major), tree ``i`` adding to class ``i % K``; with ``multi_strategy=
    "multi_output_tree"`` one tree per round whose leaves hold K values (gains summed over classes).
    Rows and columns are sampled as SecureBoost samples them, columns per block of ``column_blocks``
    (feature counts of the guest, then of each host), so that with the same seed both learners grow
    the same trees; a `SecureBoostParams` is a `BoostParams`, so both can take the same parameters.
    """

    def __init__(self, params: BoostParams, column_blocks: list[int] | None = None):
        self.params = params
        self.num_class = params.num_class
        self.sampling = params.sampling.with_seed()
        self.column_blocks = column_blocks
        self.multi_output = params.multi_strategy == "multi_output_tree"
        self.trees: list[Tree] = []
        self.base_margin_: np.ndarray | None = None

    @property
    def objective(self) -> Objective:
        return get_objective(self.params.objective, self.num_class)

    def fit(self, X_binned: np.ndarray, y: np.ndarray) -> PlainBoost:
        y = np.asarray(y, dtype=np.float64)
        if self.params.objective == "multi:softmax" and self.num_class is None:
            self.num_class = int(y.max()) + 1
        objective = self.objective
        self.base_margin_ = objective.base_margin(y)
        self.trees = []
        margin = initial_margin(self.base_margin_, len(y))
        p = self.params
        for _ in range(p.n_estimators):
            g, h = objective.grad_hess(y, margin)
            for k in range(1 if self.multi_output else objective.n_outputs):
                t = len(self.trees)
                g_k, h_k = (g, h) if self.multi_output else (output_column(g, k), output_column(h, k))
                g_k, h_k = self.sampling.rows(t, g_k, h_k)
                columns = self._columns(t, X_binned.shape[1])
                tree = grow_tree(X_binned, g_k, h_k, p.max_bin, p, p.max_depth, p.learning_rate, columns)
                self.trees.append(tree)
                (margin if self.multi_output else output_column(margin, k))[:] += tree.predict(X_binned, p.max_bin)
        return self

    def _columns(self, tree: int, n_features: int) -> np.ndarray:
        blocks = self.column_blocks or [n_features]
        offsets = np.cumsum([0] + blocks[:-1])
        return np.concatenate([offset + self.sampling.columns(b, tree, size)
                               for b, (offset, size) in enumerate(zip(offsets, blocks, strict=True))])

    def predict_margin(self, X_binned: np.ndarray) -> np.ndarray:
        """Raw scores: ``(n,)``, or ``(n, K)`` for K classes."""
        margin = initial_margin(self.base_margin_, len(X_binned))
        k_outputs = len(self.base_margin_)
        for i, tree in enumerate(self.trees):
            (margin if tree.value.ndim == 2 else output_column(margin, i % k_outputs))[:] += tree.predict(
                X_binned, self.params.max_bin)
        return margin

    def predict_proba(self, X_binned: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or predictions (regression): the objective's transform."""
        return self.objective.transform(self.predict_margin(X_binned))

    def predict(self, X_binned: np.ndarray) -> np.ndarray:
        """What XGBoost's ``predict`` returns: probability of 1, class index, or the regression value."""
        return self.objective.predict(self.predict_margin(X_binned))
