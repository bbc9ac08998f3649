"""Quantile binning of one party's own features into small integer codes.

Tree learners only ever compare a feature with thresholds, so replacing values by bin codes loses
nothing but resolution, and it lets SecureBoost hosts send per-bin (encrypted) gradient sums instead
of anything about individual values. Codes: a value ``x`` of feature ``j`` gets the smallest ``b``
with ``x <= edges[j][b]`` (values above the last edge are clipped into the last bin, so unseen
extremes still bin), and NaN gets the dedicated code ``missing_bin == max_bin``, one past every real
bin, so that a histogram with ``max_bin + 1`` columns holds the missing values in its last column.
"""

from __future__ import annotations

import numpy as np

MIN_BIN = 2  # fewest bins per feature: one threshold
MAX_BIN = int(np.iinfo(np.uint16).max) - 1  # most bins whose codes, the missing code included, fit uint16


class QuantileBinner:
    """Equal-frequency bins per feature; edges are observed values, so no fitted bin is empty."""

    def __init__(self, max_bin: int = 32):
        if not MIN_BIN <= max_bin <= MAX_BIN:
            raise ValueError(f"max_bin must be in [{MIN_BIN}, {MAX_BIN}], got {max_bin}")
        self.max_bin = max_bin
        self.edges: list[np.ndarray] = []

    @property
    def missing_bin(self) -> int:
        """Code of NaN: one past the largest real bin, the last column of a histogram."""
        return self.max_bin

    @property
    def dtype(self) -> type:
        return np.uint8 if self.max_bin <= np.iinfo(np.uint8).max else np.uint16

    @property
    def n_bins(self) -> list[int]:
        """Number of real (non-missing) bins of each feature."""
        return [len(e) for e in self.edges]

    def fit(self, X: np.ndarray) -> QuantileBinner:
        X = np.asarray(X, dtype=np.float64)
        self.edges = [self._feature_edges(X[:, j]) for j in range(X.shape[1])]
        return self

    def _feature_edges(self, column: np.ndarray) -> np.ndarray:
        """Distinct values if there are few, else the values at quantiles 1/max_bin, ..., 1."""
        values = column[~np.isnan(column)]
        distinct = np.unique(values)
        if len(distinct) <= self.max_bin:
            return distinct
        quantiles = np.arange(1, self.max_bin + 1) / self.max_bin
        return np.unique(np.quantile(values, quantiles, method="inverted_cdf"))

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != len(self.edges):
            raise ValueError(f"binner was fitted on {len(self.edges)} features, got {X.shape[1]}")
        codes = np.empty(X.shape, dtype=self.dtype)
        for j, edges in enumerate(self.edges):
            column = X[:, j]
            binned = np.minimum(np.searchsorted(edges, column, side="left"), max(len(edges) - 1, 0))
            codes[:, j] = np.where(np.isnan(column), self.missing_bin, binned)
        return codes

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def threshold(self, feature: int, bin: int) -> float:
        """Real threshold t of a split after ``bin``: non-missing ``x <= t`` goes left, as its code does.

        ``bin == -1`` (only missing values left) gives -inf; the last bin gives +inf because
        transform clips larger values into it.
        """
        edges = self.edges[feature]
        if bin < 0:
            return -np.inf
        if bin >= len(edges) - 1:
            return np.inf
        return float(edges[bin])

    def to_dict(self) -> dict:
        return {"max_bin": self.max_bin, "edges": [e.tolist() for e in self.edges]}

    @classmethod
    def from_dict(cls, state: dict) -> QuantileBinner:
        binner = cls(int(state["max_bin"]))
        binner.edges = [np.asarray(e, dtype=np.float64) for e in state["edges"]]
        return binner


class EqualWidthBinner(QuantileBinner):
    """Bins of equal width between each feature's fitted minimum and maximum.

    Same codes, missing bin, clipping and serialised form as `QuantileBinner` (only the edges
    differ), so whatever applies a quantile binner applies this one. Unlike quantile bins these
    follow the scale, not the mass, of the data: skewed features leave bins empty, which WOE
    handles (an empty bin has WOE 0). A constant feature gets one bin.
    """

    def _feature_edges(self, column: np.ndarray) -> np.ndarray:
        values = column[~np.isnan(column)]
        if not values.size:
            return values
        low, high = values.min(), values.max()
        if low == high:
            return np.array([high])
        edges = low + (high - low) * np.arange(1, self.max_bin + 1) / self.max_bin
        edges[-1] = high  # exact, whatever the rounding of the sum above
        return edges
