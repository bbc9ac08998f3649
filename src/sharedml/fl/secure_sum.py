"""Secure sum by additive secret sharing: every party learns the total and nothing else.

Each party encodes its input as fixed-point ring elements (absolute error at most 2^-97 per
input), splits it into one share per party, keeps one and sends the others out; each party adds
the shares it holds and broadcasts that partial sum; the total is the sum of the partial sums.
Any single party's view (its own shares, the shares sent to it, the partial sums) is uniformly
random apart from the total. Semi-honest; a coalition of all parties but one learns the remaining
party's input, as the total reveals it (with two parties, each therefore learns the other's
input — use it with three or more).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..crypto.sharing import FixedPointRing
from ..runtime.component import component
from ..runtime.context import Context

# 96 fractional bits resolve sums of squares of tiny values (1e-6 squared is 1e-12) to ~1e-29, and the
# 2^256 ring still leaves room for magnitudes up to 2^158: aggregates of any real column fit.
DEFAULT_RING = FixedPointRing(bits=256, frac_bits=96)


def secure_sum(ctx: Context, values: np.ndarray | float, tag: str = "secure_sum",
               ring: FixedPointRing = DEFAULT_RING) -> np.ndarray:
    """Elementwise total over all parties of `values` (same shape everywhere); every party gets it."""
    local = np.asarray(values, dtype=np.float64)
    shares = ring.share(ring.encode(local), len(ctx.parties))
    mine = ctx.parties.index(ctx.party)
    for i, peer in enumerate(ctx.parties):
        if peer != ctx.party:
            ctx.send(peer, f"{tag}/share", shares[i])
    held = shares[mine]
    for peer, share in ctx.gather(f"{tag}/share").items():
        held = held + _checked(share, local.shape, peer)
    held = held % ring.modulus
    ctx.broadcast(f"{tag}/partial", held)
    total = held
    for peer, partial in ctx.gather(f"{tag}/partial").items():
        total = total + _checked(partial, local.shape, peer)
    return ring.decode(total % ring.modulus)


def _checked(received: object, shape: tuple[int, ...], peer: str) -> np.ndarray:
    arr = np.asarray(received, dtype=object)
    if arr.shape != shape:
        raise ValueError(f"party {peer!r} sent a share of shape {arr.shape}, expected {shape}: "
                         "every party must contribute values of the same shape")
    return arr


class SecureSumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(default_factory=lambda: ["value"], min_length=1,
                               description="numeric columns whose local sums are added up across parties")


@component("secure_sum", params=SecureSumParams, inputs=("data",), outputs=("result",), min_parties=2)
def secure_sum_component(ctx: Context, params: SecureSumParams, data: pd.DataFrame) -> dict[str, object]:
    """Total of each party's private column sums; each party learns only the totals."""
    missing = [c for c in params.columns if c not in data.columns]
    if missing:
        raise ValueError(f"party {ctx.party!r}: column(s) {missing} not in its data; "
                         f"columns are: {', '.join(map(str, data.columns))}")
    local = data[params.columns].apply(pd.to_numeric, errors="raise").sum().to_numpy(dtype=np.float64)
    total = secure_sum(ctx, local)
    ctx.metrics.log("parties", len(ctx.parties))
    return {"result": pd.DataFrame({"column": params.columns, "total": total})}
