"""Per-feature, per-bin sums of gradients and Hessians over one tree node's rows.

These sums are all that split finding needs, which is why SecureBoost hosts can compute them on
encrypted g and h without learning them. Histograms have shape ``(n_features, n_bins + 1)`` (plus a
trailing class axis for several outputs); column ``n_bins`` holds the rows whose value is missing.
Every row of a node falls in exactly one bin of each feature, so each feature's row sums to the
node's totals, and a parent's histogram minus one child's is the other child's.
"""

from __future__ import annotations

import numpy as np


def flat_codes(bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin codes shifted by ``feature * (n_bins + 1)``, so one bincount fills every feature at once."""
    offsets = np.arange(bins.shape[1], dtype=np.int64) * (n_bins + 1)
    return bins.astype(np.int64) + offsets


def build_histogram(
    bins: np.ndarray, rows: np.ndarray, g: np.ndarray, h: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``g`` and ``h`` over ``rows``, per feature and bin: ``(f, n_bins + 1[, K])`` each.

    ``bins`` are the codes of all rows (missing code ``n_bins``); ``g`` and ``h`` are ``(n,)`` or
    ``(n, K)`` for K outputs.
    """
    n_features = bins.shape[1]
    codes = flat_codes(bins[rows], n_bins).ravel()
    length = n_features * (n_bins + 1)

    def one(values: np.ndarray) -> np.ndarray:
        weights = np.repeat(values[rows], n_features)
        return np.bincount(codes, weights=weights, minlength=length).reshape(n_features, n_bins + 1)

    if g.ndim == 1:
        return one(g), one(h)
    G = np.stack([one(g[:, k]) for k in range(g.shape[1])], axis=-1)
    H = np.stack([one(h[:, k]) for k in range(h.shape[1])], axis=-1)
    return G, H


def subtract_histogram(
    parent: tuple[np.ndarray, np.ndarray], child: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The sibling's histogram, ``parent - child``: one subtraction instead of a pass over its rows."""
    return parent[0] - child[0], parent[1] - child[1]
