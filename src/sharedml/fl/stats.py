"""Federated descriptive statistics over horizontally partitioned data.

Count, mean and variance come from secure sums (two passes: the global mean first, then the
sum of squared deviations from it, which is numerically stable). The global minimum and maximum
come from a bitwise binary search over an order-preserving integer image of float64: at each of
64 steps the parties securely count how many of them hold a value at or above a threshold.
What every party learns: the global figures, plus, for each probed threshold, how many parties
have a local extreme beyond it — never which party, nor any party's own count, sum or extreme.

`federated_scaler` reuses the first two sums alone (no extremes) for federated standardisation:
the mean and standard deviation of the union of all parties' rows, which `homo_lr`, `homo_nn` and
`homo_scale` scale every client's rows by. Every party of the task learns those global figures only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..crypto.sharing import FixedPointRing
from ..runtime.component import component
from ..runtime.context import Context
from ..runtime.peer_values import BadPeerValue, peer_int
from .rounds import signature
from .secure_sum import secure_sum

COUNT_RING = FixedPointRing(bits=64, frac_bits=0)
MAX_COLUMNS = 1 << 20  # columns a party may announce for a federated scaler: bounds the arrays others build
_SIGN = np.uint64(1 << 63)


def sortable_keys(x: np.ndarray) -> np.ndarray:
    """Map float64 to uint64 so that integer order equals float order (NaN must be removed first)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def from_sortable_keys(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint64)
    return np.where(keys & _SIGN, keys ^ _SIGN, ~keys).view(np.float64)


def secure_max_keys(ctx: Context, local_max: list[int | None], tag: str) -> list[int | None]:
    """Global maximum of per-party uint64 keys (None = this party has no value), by binary search."""
    lo = [0] * len(local_max)
    hi = [(1 << 64) - 1] * len(local_max)
    any_value = secure_sum(ctx, np.array([m is not None for m in local_max], dtype=np.float64),
                           f"{tag}/any", COUNT_RING)
    for step in range(64):
        mid = [(a + b + 1) // 2 for a, b in zip(lo, hi, strict=True)]
        above = np.array([m is not None and m >= t for m, t in zip(local_max, mid, strict=True)], dtype=np.float64)
        count = secure_sum(ctx, above, f"{tag}/{step}", COUNT_RING)
        for j in range(len(mid)):
            if count[j] > 0:
                lo[j] = mid[j]
            else:
                hi[j] = mid[j] - 1
    return [lo[j] if any_value[j] > 0 else None for j in range(len(lo))]


def secure_moments(ctx: Context, values: np.ndarray, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean, sum of squared deviations from the mean) of each column of `values` (NaN skipped) over
    every party's rows, by two secure sums: the mean first, then the squared deviations from it (stable
    where a one-pass sum of squares would cancel). A party without rows passes zero rows of the same width."""
    present = ~np.isnan(values)
    n_local = present.sum(axis=0).astype(np.float64)
    sum_local = np.where(present, values, 0.0).sum(axis=0)
    totals = secure_sum(ctx, np.stack([n_local, sum_local]), f"{tag}/sum")
    count = np.rint(totals[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = totals[1] / count
    sq_local = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
    return count, mean, secure_sum(ctx, sq_local, f"{tag}/sq")


def federated_describe(ctx: Context, frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """count / mean / variance / std / min / max of `columns` over the union of all parties' rows."""
    values = frame[columns].to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    count, mean, sq_total = secure_moments(ctx, values, "stats")
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = sq_total / (count - 1)

    keys = [sortable_keys(values[present[:, j], j]) for j in range(len(columns))]
    local_max = [int(k.max()) if k.size else None for k in keys]
    local_neg_min = [int(~k.min()) if k.size else None for k in keys]  # max of the complement = min
    extremes = secure_max_keys(ctx, local_max + local_neg_min, "stats/extreme")
    m = len(columns)
    maxima = [np.nan if k is None else from_sortable_keys(np.uint64(k)).item() for k in extremes[:m]]
    minima = [np.nan if k is None else from_sortable_keys(~np.uint64(k)).item() for k in extremes[m:]]
    return pd.DataFrame({
        "column": columns, "count": count.astype(np.int64), "mean": mean, "variance": variance,
        "std": np.sqrt(variance), "min": minima, "max": maxima,
    })


def federated_scaler(ctx: Context, X: np.ndarray | None, columns: list[str] | None,
                     tag: str = "scaler") -> dict[str, list[float]]:
    """StandardScaler's statistics of the union of all parties' rows: {"offset": mean, "scale": population
    standard deviation (1 for a constant column)} of each column of X, by `secure_moments` among every party
    of the task. A party without rows (a horizontal task's aggregator) passes X = None and columns = None:
    it contributes nothing and learns the same global figures. Parties first agree on the columns (their
    count, and a hash of the names: schema, not data), so that every sum lines up column by column."""
    mine = None if X is None else {"columns": X.shape[1], "signature": signature(columns or [])}
    ctx.broadcast(f"{tag}/columns", mine)
    announced = {peer: _announced(peer, value) for peer, value in ctx.gather(f"{tag}/columns").items()}
    announced = {p: a for p, a in {**announced, ctx.party: mine}.items() if a is not None}
    groups: dict[tuple[object, ...], list[str]] = {}
    for party, value in sorted(announced.items()):
        groups.setdefault(tuple(value.values()), []).append(party)
    if len(groups) > 1:
        majority = max(groups.values(), key=len)
        odd = sorted(p for members in groups.values() if members is not majority for p in members)
        raise ValueError(f"client(s) {odd} have different feature columns (names, order or count) from "
                         f"client(s) {majority}; give every client the same feature columns in the same order")
    if not groups:
        raise ValueError("no party of the task holds rows: nothing to compute a scaler from")
    width = next(iter(announced.values()))["columns"]
    count, mean, sq_total = secure_moments(ctx, np.empty((0, width)) if X is None else X, tag)
    if (count == 0).any():
        empty = np.flatnonzero(count == 0).tolist() if columns is None else [columns[j] for j in
                                                                             np.flatnonzero(count == 0)]
        raise ValueError(f"column(s) {empty} have no values at any party: nothing to scale them by")
    std = np.sqrt(sq_total / count)
    return {"offset": mean.tolist(), "scale": np.where(std > 0, std, 1.0).tolist()}


def apply_scaler(scaler: dict[str, list[float]] | None, X: np.ndarray) -> np.ndarray:
    """(X - offset) / scale, or X itself when there is no scaler (standardisation off)."""
    if scaler is None:
        return X
    return (X - np.asarray(scaler["offset"])) / np.asarray(scaler["scale"])


def _announced(peer: str, value: object) -> dict[str, object] | None:
    """A peer's {columns, signature} (None: it holds no rows), checked before it sizes any array."""
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("signature"), str)):
        raise BadPeerValue(f"party {peer!r} sent a malformed column announcement")
    return {"columns": peer_int(value.get("columns"), peer, "column count", 1, MAX_COLUMNS),
            "signature": value["signature"]}


class FederatedStatsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str] | None = Field(None, description="columns to describe; default: every numeric column")
    exclude: list[str] = Field(default_factory=lambda: ["id"], description="columns never described")


@component("federated_stats", params=FederatedStatsParams, inputs=("data",), outputs=("stats",),
           min_parties=2)
def federated_stats(ctx: Context, params: FederatedStatsParams, data: pd.DataFrame) -> dict[str, object]:
    """Count, mean, variance, min and max of numeric columns across parties' rows, by secure sums."""
    if params.columns is None:
        columns = [str(c) for c in data.select_dtypes("number").columns if c not in params.exclude]
    else:
        columns = [c for c in params.columns if c not in params.exclude]
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ValueError(f"party {ctx.party!r}: column(s) {missing} not in its data")
    # Column names are schema, not data: parties compare them so that every secure sum lines up.
    ctx.broadcast("stats/columns", columns)
    for peer, theirs in ctx.gather("stats/columns").items():
        if theirs != columns:
            raise ValueError(f"party {peer!r} describes columns {theirs} but party {ctx.party!r} has {columns}; "
                             "list the columns explicitly in the task's params")
    return {"stats": federated_describe(ctx, data, columns)}
