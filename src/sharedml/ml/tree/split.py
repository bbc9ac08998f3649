"""Best split of a tree node from its gradient histograms, with XGBoost's gain and tie-breaking.

For a node with totals G, H and a candidate putting G_L, H_L left and G_R, H_R right, the gain is
XGBoost's loss change ``G_L²/(H_L+λ) + G_R²/(H_R+λ) - G²/(H+λ)`` — without the paper's factor ½,
because XGBoost compares exactly this quantity with ``gamma`` (``min_split_loss``); keeping its
convention means the same ``gamma`` prunes the same splits. A candidate needs ``H_L, H_R >=
min_child_weight``, a split needs ``gain > 1e-6`` and ``gain >= gamma``.

Candidates, in XGBoost's order: for each feature, first "non-missing codes <= b go left, missing
right" for b ascending, then — only if the node has missing values of that feature — "codes <= b
and missing go left" for b descending from the second-to-last bin to -1 (-1: only missing go left).
Ties go to the lowest feature id, then to the earliest candidate in that order, which is what
XGBoost's ``SplitEntry::Update`` does. Like XGBoost, each term G²/(H+λ) and the gain are rounded to
float32 before comparing: candidates that differ only by summation-order rounding (common in the
first tree, where g takes two values) are then ties, decided by the rule above rather than by noise.

Because ties are resolved by global feature id and not by position, the best split over several
histogram blocks (one per party, each passing its global feature ids and the node's totals) is
``best_of`` the blocks' ``find_best_split`` results, the same as over all features at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .params import Regularization

MIN_GAIN = 1e-6  # XGBoost's kRtEps: smaller loss changes are rounding noise, not splits


@dataclass(frozen=True)
class Split:
    """Non-missing rows with code ``<= bin`` go left, missing rows go left iff ``default_left``.
    The side sums are floats, or arrays of shape (K,) for vector outputs."""

    feature: int
    bin: int
    default_left: bool
    gain: float
    g_left: float | np.ndarray
    h_left: float | np.ndarray
    g_right: float | np.ndarray
    h_right: float | np.ndarray

    def sort_key(self) -> tuple:
        """Smaller is better: larger gain, then lower feature id, then earlier in enumeration order."""
        return (-self.gain, self.feature, self.default_left, -self.bin if self.default_left else self.bin)

    def goes_left(self, codes: np.ndarray, missing_bin: int) -> np.ndarray:
        """Which rows (given their codes of this split's feature) go to the left child."""
        return np.where(codes == missing_bin, self.default_left, codes <= self.bin)


def leaf_weight(g_sum: float, h_sum: float, reg_lambda: float) -> float:
    """Newton step -G/(H+λ) that minimises the node's second-order loss (before the learning rate)."""
    return -g_sum / (h_sum + reg_lambda)


def _score(g_sum, h_sum, reg_lambda, multi: bool = False):
    """G²/(H+λ) rounded to float32, as XGBoost rounds each term (and so the gain) of a loss change;
    for vector outputs (`multi`: a trailing output axis) the sum over outputs, then rounded."""
    score = np.asarray(g_sum) ** 2 / (np.asarray(h_sum) + reg_lambda)
    return np.float32(score.sum(axis=-1) if multi else score)


def _gains(g_left, h_left, g_right, h_right, parent_score, params: Regularization, multi: bool = False) -> np.ndarray:
    """Gains, -inf where a side's hessian (summed over outputs when `multi`) is below min_child_weight."""
    hl, hr = (h_left.sum(axis=-1), h_right.sum(axis=-1)) if multi else (h_left, h_right)
    valid = (hl >= params.min_child_weight) & (hr >= params.min_child_weight) & (hl > 0) & (hr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty sides with λ = 0; masked below
        gain = _score(g_left, h_left, params.reg_lambda, multi) + _score(g_right, h_right, params.reg_lambda, multi)
    return np.where(valid & np.isfinite(gain), gain - parent_score, -np.inf)


def split_gains(g_left: np.ndarray, h_left: np.ndarray, g_total, h_total, params: Regularization) -> np.ndarray:
    """Gains (as `find_best_split` rounds them; -inf where invalid) of candidates given by their left sums,
    shape (m,), or (m, K) with totals of shape (K,) for vector outputs.

    SecureBoost's guest scores a host's shuffled candidates this way: it sees left sums only.
    """
    multi = np.ndim(g_total) == 1
    parent_score = _score(g_total, h_total, params.reg_lambda, multi)
    return _gains(g_left, h_left, g_total - g_left, h_total - h_left, parent_score, params, multi)


def best_of(candidates: Iterable[Split | None]) -> Split | None:
    """The best of several blocks' splits (None where a block has no valid split)."""
    found = [c for c in candidates if c is not None]
    return min(found, key=Split.sort_key) if found else None


def find_best_split(
    G: np.ndarray,
    H: np.ndarray,
    params: Regularization,
    totals: tuple[float, float] | None = None,
    features: np.ndarray | None = None,
) -> Split | None:
    """Best split in histograms ``G, H`` of shape ``(f, n_bins + 1)`` (last column: missing values),
    or ``(f, n_bins + 1, K)`` for vector outputs (multi-output trees: gains summed over outputs).

    ``totals`` are the node's (G, H); pass them when known (XGBoost uses the parent split's sums),
    else they are read off the first feature. ``features`` are the global ids of the histogram rows
    (default 0..f-1); they decide ties and are what ``Split.feature`` reports.
    """
    features = np.arange(G.shape[0]) if features is None else np.asarray(features)
    if len(features) == 0:
        return None
    order = np.argsort(features, kind="stable")
    G, H, features = G[order], H[order], features[order]
    multi = G.ndim == 3
    g_total, h_total = totals if totals is not None else (G[0].sum(axis=0), H[0].sum(axis=0))
    n_bins = G.shape[1] - 1

    def gains(g_left, h_left, g_right, h_right):
        parent = _score(g_total, h_total, params.reg_lambda, multi)
        return _gains(g_left, h_left, g_right, h_right, parent, params, multi)

    # missing right: left = bins 0..b, right = the rest (missing included)
    g_fwd = np.cumsum(G[:, :-1], axis=1)
    h_fwd = np.cumsum(H[:, :-1], axis=1)
    forward = gains(g_fwd, h_fwd, g_total - g_fwd, h_total - h_fwd)
    # missing left: right = bins b+1..last accumulated from the top, left = the rest; b = n_bins-2 .. -1
    g_bwd = np.cumsum(G[:, -2::-1], axis=1)
    h_bwd = np.cumsum(H[:, -2::-1], axis=1)
    backward = gains(g_total - g_bwd, h_total - h_bwd, g_bwd, h_bwd)
    backward[(H[:, -1].sum(axis=-1) if multi else H[:, -1]) <= 0] = -np.inf  # no missing values of that feature

    candidates = np.concatenate([forward, backward], axis=1)
    f, c = np.unravel_index(np.argmax(candidates), candidates.shape)
    gain = float(candidates[f, c])
    if not (gain > MIN_GAIN and gain >= params.gamma):
        return None
    if c < n_bins:  # missing right
        b, default_left = c, False
        left = g_fwd[f, c], h_fwd[f, c]
        right = g_total - left[0], h_total - left[1]
    else:  # missing left
        k = c - n_bins
        b, default_left = n_bins - 2 - k, True
        right = g_bwd[f, k], h_bwd[f, k]
        left = g_total - right[0], h_total - right[1]
    sums = [np.asarray(v, dtype=np.float64) if multi else float(v) for v in left + right]
    return Split(int(features[f]), int(b), default_left, gain, *sums)
