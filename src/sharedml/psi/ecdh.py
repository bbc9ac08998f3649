"""ECDH-PSI for two or more parties (semi-honest), bucket by bucket.

Each party blinds the hashes of its own IDs with a secret X25519 scalar, in an order it shuffled
secretly. The blinded sets travel round a ring of the parties, each adding its own scalar, until
every set carries every scalar: then equal IDs, and only those, have equal values. The *leader*
collects these fully blinded sets (truncated to 128 bits), intersects them, and tells each party
which positions of its own shuffled list are in the intersection, in the order of the sorted
intersection values. That order is the same at every party, so each party's table comes out
aligned row by row with every other party's, without any party sending an ID.

With three or more parties the party just before the leader on the ring shuffles the leader's
fully blinded set once more before handing it over; otherwise the leader, who sees every party's
fully blinded set, could tell which of its own IDs lie in each pairwise intersection. It then
learns only their sizes. `docs/security.md` lists what each party learns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ..crypto.prg import secret_permutation
from ..runtime.context import Context
from ..runtime.peer_values import peer_int
from .checkpoint import BucketCheckpoint, fingerprint
from .curve import Blinder
from .ids import POINT_BYTES

MATCH_BYTES = 16  # fully blinded values are compared on 128 bits: collisions are out of reach
DEFAULT_BUCKET_SIZE = 1 << 20


class PsiProtocolError(RuntimeError):
    """A peer sent something the protocol does not allow, or the parties' settings disagree."""


@dataclass
class PsiResult:
    """What one party learned: `rows` (positions into its ID list, in the order every party shares)
    and `size`; None where this party was not to learn it."""

    rows: np.ndarray | None
    size: int | None


@dataclass(frozen=True)
class _Plan:
    ring: list[str]  # the leader first, then the others in the parties' agreed order
    reveal: frozenset[str]
    cardinality_only: bool
    tag: str

    @property
    def leader(self) -> str:
        return self.ring[0]


def ecdh_psi(ctx: Context, points: np.ndarray, *, reveal_to: list[str] | None = None,
             cardinality_only: bool = False, bucket_size: int = DEFAULT_BUCKET_SIZE,
             checkpoint: BucketCheckpoint | None = None, tag: str = "psi") -> PsiResult:
    """Intersect this party's hashed IDs (`points`, unique rows of 32 bytes) with every peer's.

    `reveal_to`: the parties that learn the intersection (default: all); with one receiver it also
    leads. `cardinality_only`: they learn its size, not its members. Rows come back bucket-major,
    then in the order of the fully blinded values: identical at every receiving party.
    """
    parties = ctx.parties
    reveal = frozenset(parties if reveal_to is None else reveal_to)
    unknown = sorted(reveal - set(parties))
    if unknown or not reveal:
        raise ValueError(f"reveal_to names {unknown or 'nobody'}; choose among the parties {parties}")
    leader = next(iter(reveal)) if len(reveal) == 1 else parties[0]
    plan = _Plan([leader] + [p for p in parties if p != leader], reveal, cardinality_only, tag)

    setup = [plan.ring, sorted(reveal), cardinality_only, bucket_size]
    ctx.broadcast(f"{tag}/setup", {"setup": setup, "size": len(points)})
    sizes = {ctx.party: len(points)}
    for peer, theirs in ctx.gather(f"{tag}/setup").items():
        if theirs["setup"] != setup:
            raise PsiProtocolError(f"party {peer!r} runs PSI with settings {theirs['setup']} but party "
                                   f"{ctx.party!r} with {setup} (ring, receivers, cardinality only, bucket size)")
        sizes[peer] = int(theirs["size"])
    n_buckets = max(1, math.ceil(max(sizes.values()) / bucket_size))
    bucket_of = points[:, :8].copy().view(np.uint64).ravel() % np.uint64(n_buckets)
    order = np.argsort(bucket_of, kind="stable")
    bounds = np.searchsorted(bucket_of[order], np.arange(n_buckets + 1))

    done = _resume(ctx, checkpoint, points, setup + [n_buckets, sorted(sizes.items())], tag)
    blinder = Blinder()
    rows_parts: list[np.ndarray] = []
    size_total: int | None = 0
    for b in range(n_buckets):
        local = order[bounds[b]:bounds[b + 1]]
        if b in done:
            rows, size = checkpoint.load(b)  # type: ignore[union-attr]
        else:
            rows, size = _bucket(ctx, plan, f"{tag}/{b}", points[local], blinder)
            if checkpoint is not None:
                checkpoint.save(b, rows, size)
        if rows is not None:
            rows_parts.append(local[rows])
        size_total = None if size is None or size_total is None else size_total + size
        ctx.progress(b + 1, n_buckets, f"PSI bucket {b + 1}/{n_buckets}")
    if checkpoint is not None:
        checkpoint.clear()
    learns_rows = ctx.party in reveal and not cardinality_only
    return PsiResult(np.concatenate(rows_parts) if learns_rows else None, size_total)


def _resume(ctx: Context, checkpoint: BucketCheckpoint | None, points: np.ndarray, settings: list,
            tag: str) -> set[int]:
    """Buckets every party finished in an earlier run of the same PSI."""
    mine = set() if checkpoint is None else checkpoint.open(fingerprint(points, settings))
    ctx.broadcast(f"{tag}/resume", sorted(mine))
    common = reduce(lambda acc, theirs: acc & {int(b) for b in theirs}, ctx.gather(f"{tag}/resume").values(), mine)
    if checkpoint is not None:
        checkpoint.keep_only(common)
        if common:
            ctx.log.info("PSI resumes: %d bucket(s) already finished by every party", len(common))
    return common


def _bucket(ctx: Context, plan: _Plan, tag: str, points: np.ndarray,
            blinder: Blinder) -> tuple[np.ndarray | None, int | None]:
    """One bucket: returns this party's rows (positions into `points`) and the intersection size."""
    me, ring, leader = ctx.party, plan.ring, plan.leader
    i = ring.index(me)
    nxt, prv = ring[(i + 1) % len(ring)], ring[(i - 1) % len(ring)]
    perm = secret_permutation(len(points))
    held = blinder.blind(points[perm])
    for step in range(1, len(ring)):
        ctx.send(nxt, f"{tag}/ring{step}", held)
        held = blinder.blind(_array(ctx.recv(prv, f"{tag}/ring{step}"), prv, np.uint8, POINT_BYTES))
    # `held` is now the set of party `nxt` under every party's scalar.
    full = np.ascontiguousarray(held[:, :MATCH_BYTES])
    sigma = None
    if nxt == leader and (len(ring) > 2 or plan.cardinality_only):
        sigma = secret_permutation(len(full))
        full = full[sigma]
    if me != leader:
        ctx.send(leader, f"{tag}/full", full)
        return _follow(ctx, plan, tag, perm, sigma)
    fulls = {nxt: full}
    for p in ring[1:]:
        owner = ring[(ring.index(p) + 1) % len(ring)]
        fulls[owner] = _array(ctx.recv(p, f"{tag}/full"), p, np.uint8, MATCH_BYTES)
    return _lead(ctx, plan, tag, perm, fulls)


def _lead(ctx: Context, plan: _Plan, tag: str, perm: np.ndarray,
          fulls: dict[str, np.ndarray]) -> tuple[np.ndarray | None, int | None]:
    keys = {owner: arr.view(f"S{MATCH_BYTES}").ravel() for owner, arr in fulls.items()}
    common = reduce(lambda a, b: np.intersect1d(a, b, assume_unique=True), keys.values())
    size = len(common)
    if plan.cardinality_only:
        for p in plan.reveal - {plan.leader}:
            ctx.send(p, f"{tag}/size", size)
        return None, size if plan.leader in plan.reveal else None
    mine = None
    for owner, owner_keys in keys.items():
        at = np.searchsorted(common, owner_keys)
        members = np.flatnonzero(common[np.minimum(at, max(size - 1, 0))] == owner_keys) if size else at[:0]
        ordered = members[np.argsort(at[members], kind="stable")].astype(np.int64)
        if owner == plan.leader:
            mine = ordered
        elif owner in plan.reveal:
            ctx.send(owner, f"{tag}/order", ordered)
    if plan.leader not in plan.reveal:
        return None, None
    holder = plan.ring[-1]
    if len(plan.ring) > 2:  # our set was shuffled by the holder: it maps the positions back
        ctx.send(holder, f"{tag}/unshuffle", mine)
        mine = _positions(ctx.recv(holder, f"{tag}/unshuffled"), holder, len(perm))
    return perm[mine], size


def _follow(ctx: Context, plan: _Plan, tag: str, perm: np.ndarray,
            sigma: np.ndarray | None) -> tuple[np.ndarray | None, int | None]:
    leader = plan.leader
    if plan.cardinality_only:
        if ctx.party in plan.reveal:
            return None, peer_int(ctx.recv(leader, f"{tag}/size"), leader, "intersection size", 0, len(perm))
        return None, None
    rows = None
    if ctx.party in plan.reveal:
        rows = perm[_positions(ctx.recv(leader, f"{tag}/order"), leader, len(perm))]
    if sigma is not None and leader in plan.reveal:
        shuffled = _positions(ctx.recv(leader, f"{tag}/unshuffle"), leader, len(sigma))
        ctx.send(leader, f"{tag}/unshuffled", sigma[shuffled])
    return rows, None if rows is None else len(rows)


def _array(obj: object, peer: str, dtype: type, width: int) -> np.ndarray:
    if not (isinstance(obj, np.ndarray) and obj.dtype == dtype and obj.ndim == 2 and obj.shape[1] == width):
        raise PsiProtocolError(f"party {peer!r} sent {type(obj).__name__} "
                               f"{getattr(obj, 'dtype', '')}{getattr(obj, 'shape', '')} where an (m, {width}) "
                               f"{np.dtype(dtype).name} array belongs")
    return obj


def _positions(obj: object, peer: str, bound: int) -> np.ndarray:
    ok = isinstance(obj, np.ndarray) and obj.dtype == np.int64 and obj.ndim == 1
    if not ok or (obj.size and (obj.min() < 0 or obj.max() >= bound or np.unique(obj).size != obj.size)):
        raise PsiProtocolError(f"party {peer!r} sent positions that are not distinct indices below {bound}")
    return obj
