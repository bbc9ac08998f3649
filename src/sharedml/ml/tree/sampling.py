"""Row and column sampling per tree: uniform row subsampling, GOSS, and column subsampling.

Rows are never dropped from the protocol; a row left out of a tree gets g = h = 0 (as XGBoost does
for `subsample`), so it still walks the tree but adds nothing to any sum. In SecureBoost the guest
samples and hosts receive encrypted zeros like any other value: they cannot tell which rows a tree
used. That privacy costs GOSS its usual speed-up (hosts still sum every row); here it is a
regulariser. Columns are sampled by each party among its own features only, so no party learns
which of another's features a tree may use.

Every choice comes from a `numpy` generator seeded with (seed, block, tree, purpose): the same seed
gives the same samples in the secure learner and in the plaintext reference (`PlainBoost`), where
block 0 is the guest's columns and block i the i-th host's. Without a seed each party draws its own
from the OS CSPRNG.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

_ROWS, _COLUMNS = 0, 1


@dataclass(frozen=True)
class Sampling:
    """`subsample`: probability that a row is used (uniform); `goss`: keep the `top_rate` largest |g|,
    sample `other_rate` of all rows from the rest and scale their g, h by (1 - top_rate) / other_rate."""

    subsample: float = 1.0
    colsample_bytree: float = 1.0
    goss: bool = False
    top_rate: float = 0.2
    other_rate: float = 0.1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.subsample <= 1 and 0 < self.colsample_bytree <= 1):
            raise ValueError("subsample and colsample_bytree must be in (0, 1]")
        if self.goss and not (0 < self.top_rate and 0 < self.other_rate and self.top_rate + self.other_rate <= 1):
            raise ValueError("goss needs top_rate > 0, other_rate > 0 and top_rate + other_rate <= 1")
        if self.goss and self.subsample < 1:
            raise ValueError("choose either goss or subsample < 1, not both")

    def with_seed(self) -> Sampling:
        """This sampling with a seed: the given one, else a fresh one from the OS CSPRNG."""
        if self.seed is not None:
            return self
        return Sampling(self.subsample, self.colsample_bytree, self.goss, self.top_rate, self.other_rate,
                        secrets.randbits(63))

    def _rng(self, block: int, tree: int, purpose: int) -> np.random.Generator:
        if self.seed is None:
            raise ValueError("call with_seed() first")
        return np.random.default_rng([self.seed, block, tree, purpose])

    def rows(self, tree: int, g: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(g, h) of tree `tree` with left-out rows zeroed (and GOSS's sampled rows scaled)."""
        if not self.goss and self.subsample >= 1:
            return g, h
        rng = self._rng(0, tree, _ROWS)
        n = len(g)
        if not self.goss:
            weight = (rng.random(n) < self.subsample).astype(np.float64)
        else:
            top = math.ceil(self.top_rate * n)
            size = np.abs(g) if g.ndim == 1 else np.abs(g).sum(axis=1)  # vector outputs: |g| summed
            order = np.argsort(-size, kind="stable")
            others = rng.choice(order[top:], size=min(math.ceil(self.other_rate * n), n - top), replace=False)
            weight = np.zeros(n)
            weight[order[:top]] = 1.0
            weight[others] = (1 - self.top_rate) / self.other_rate
        weight = weight if g.ndim == 1 else weight[:, None]
        return g * weight, h * weight

    def columns(self, block: int, tree: int, n_features: int) -> np.ndarray:
        """Indices (sorted) of this block's features that tree `tree` may split on."""
        if self.colsample_bytree >= 1 or n_features == 0:
            return np.arange(n_features)
        count = max(1, round(self.colsample_bytree * n_features))
        return np.sort(self._rng(block, tree, _COLUMNS).choice(n_features, size=count, replace=False))
