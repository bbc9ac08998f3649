"""The `psi` job component: align the parties' tables on the IDs they share, revealing no other ID.

Each party's output `data` is its own table restricted to the intersection, in the same row order
at every receiving party, so a vertical training task can follow directly; `size` is the
intersection's size. Parties that are not receivers get no output; in cardinality mode receivers
get only `size`.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..runtime.component import ColumnList, component
from ..runtime.context import Context
from .checkpoint import BucketCheckpoint
from .ecdh import DEFAULT_BUCKET_SIZE, ecdh_psi
from .ids import Normalisation, PsiInputError, first_duplicates, hash_to_points, id_strings
from .spu_engine import spu_intersect


class PsiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"],
                                  description="the column, or columns of a composite key, that identify a row")
    receivers: list[str] | None = Field(None, description="parties that learn the intersection; default: all")
    cardinality_only: bool = Field(False, description="receivers learn only the intersection's size")
    trim: bool = Field(False, description="strip surrounding whitespace from text IDs")
    lower: bool = Field(False, description="compare text IDs case-insensitively")
    duplicates: Literal["error", "first"] = Field(
        "error", description="an ID on several rows: fail, or keep the first of those rows")
    null_ids: Literal["error", "skip"] = Field("error", description="rows with a null ID: fail, or leave them out")
    engine: Literal["ecdh", "spu"] = Field("ecdh", description="ecdh: built in; spu: SecretFlow's PSI library")
    spu_protocol: Literal["rr22", "kkrt", "ecdh"] = Field("rr22", description="protocol of the spu engine")
    bucket_size: int = Field(DEFAULT_BUCKET_SIZE, ge=1000, description="IDs per bucket (bounds memory)")


@component("psi", params=PsiParams, inputs=("data",), outputs=("data", "size"), min_parties=2)
def psi(ctx: Context, params: PsiParams, data: pd.DataFrame) -> dict[str, object]:
    """Private set intersection on `id_columns`; outputs each receiver's aligned rows and the size."""
    started = time.perf_counter()
    ids, rows = id_strings(data, params.id_columns, ctx.party, Normalisation(params.trim, params.lower),
                           params.null_ids)
    if params.engine == "spu":  # spu hashes the IDs itself: find repeats without hashing them here
        later = np.flatnonzero(pd.Series(ids, dtype=object).duplicated().to_numpy())
        earlier = np.array([ids.index(ids[later[0]])]) if later.size else later
        kept = _unique(later, earlier, rows, params.duplicates, ctx.party)
        rows = rows[kept]
        matched, size = _spu(ctx, params, [ids[i] for i in kept], rows)
    else:
        points = hash_to_points(ids)
        kept = _unique(*first_duplicates(points), rows, params.duplicates, ctx.party)
        points, rows = points[kept], rows[kept]
        checkpoint = BucketCheckpoint(ctx.resume_dir) if ctx.resume_dir is not None else None
        result = ecdh_psi(ctx, points, reveal_to=params.receivers, cardinality_only=params.cardinality_only,
                          bucket_size=params.bucket_size, checkpoint=checkpoint, tag="psi")
        matched = None if result.rows is None else rows[result.rows]
        size = result.size
    ctx.metrics.log("ids", len(rows))
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    outputs: dict[str, object] = {}
    if size is not None:
        outputs["size"] = size
        ctx.metrics.log("intersection_size", size)
    if matched is not None:
        outputs["data"] = data.iloc[matched].reset_index(drop=True)
    return outputs


def _unique(later: np.ndarray, earlier: np.ndarray, rows: np.ndarray, policy: str, party: str) -> np.ndarray:
    """Positions of the IDs to intersect: each ID once (its first row), or an error naming rows.

    `later`: positions that repeat an earlier ID; `earlier[0]`: where the first of them came before.
    """
    # Error messages name rows, never IDs: a failure's message is sent to every peer.
    if not later.size:
        return np.arange(len(rows))
    if policy == "error":
        raise PsiInputError(f"party {party!r}: {later.size} row(s) repeat an ID of an earlier row (e.g. row "
                            f"{rows[later[0]]} repeats row {rows[earlier[0]]}); deduplicate the data or set "
                            "`duplicates: first` to keep the first row of each ID")
    keep = np.ones(len(rows), dtype=bool)
    keep[later] = False
    return np.flatnonzero(keep)


def _spu(ctx: Context, params: PsiParams, keys: list, rows: np.ndarray) -> tuple[np.ndarray | None, int | None]:
    """SecretFlow's PSI on a link of its own, TLS'd with this party's federation certificate."""
    if params.cardinality_only:
        raise ValueError("engine: spu has no cardinality-only mode; use engine: ecdh")
    if params.receivers is not None and len(params.receivers) != 1:
        raise ValueError(f"engine: spu gives the intersection to one receiver or to both parties, not to "
                         f"{params.receivers}; leave `receivers` out or name one party")
    receiver = None if params.receivers is None else params.receivers[0]
    transport = ctx.channel.transport
    found = spu_intersect(ctx, keys, protocol=params.spu_protocol, receiver=receiver, workdir=ctx.workdir,
                          host=getattr(transport, "host", "127.0.0.1"), identity=getattr(transport, "identity", None),
                          timeout=ctx.channel.timeout or 600.0, bucket_size=params.bucket_size)
    if receiver is not None and receiver != ctx.party:
        return None, None
    return rows[found], len(found)
