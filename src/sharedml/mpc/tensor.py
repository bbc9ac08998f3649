"""SharedTensor: an array additively secret-shared over Z_2^64, with numpy-like arithmetic.

Each computing party holds a uint64 array; the value is the sum of all parties' arrays mod 2^64,
read as a signed fixed-point number with `frac` fractional bits (`frac == 0` for integers, e.g.
comparison results). Linear operations are local. `*` and `@` between shared values cost one
opening round with a Beaver triple; a product of fixed-point values is then truncated back to the
session's fractional bits:

- `local` truncation (SecureML, 2 parties only, no communication): each party shifts its own share.
  The result is ⌊x / 2^s⌋ or one more, except with probability at most 2^(ℓx + 1 - 64) for a value
  of ℓx bits, when it is wrong by about ±2^(64-s) (a wrapped share). With 18 fractional bits and
  |x·y| < 2^10 that is < 2^-17 per element.
- `tuple` truncation (any number of parties, needs tuples from a dealer): opens x + 2^62 + r for a
  uniform r whose top bit and (r mod 2^63) >> s are shared, and corrects the one possible wrap
  exactly. The result is ⌊x / 2^s⌋ or one more whenever |x| < 2^62; no large errors. One round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .core import SessionCore
from .fixed import signed, wrapping

_HIGH_BIT = 63
_LOW_MASK = np.uint64((1 << 63) - 1)


class SharedTensor:
    """One party's share of a secret array (see the module docstring)."""

    __array_priority__ = 100  # numpy defers `ndarray op SharedTensor` to our reflected operators

    def __init__(self, session: SessionCore, share: np.ndarray, frac: int) -> None:
        self.session = session
        self.share = np.asarray(share, dtype=np.uint64)
        self.frac = frac

    # -- shape -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.share.shape

    @property
    def ndim(self) -> int:
        return self.share.ndim

    @property
    def size(self) -> int:
        return self.share.size

    def __len__(self) -> int:
        return len(self.share)

    def __repr__(self) -> str:
        return f"SharedTensor(shape={self.shape}, frac={self.frac}, party={self.session.ctx.party!r})"

    def _new(self, share: np.ndarray, frac: int | None = None) -> SharedTensor:
        return SharedTensor(self.session, share, self.frac if frac is None else frac)

    def reshape(self, *shape: Any) -> SharedTensor:
        return self._new(self.share.reshape(*shape))

    def transpose(self, *axes: int) -> SharedTensor:
        return self._new(self.share.transpose(*axes))

    @property
    def T(self) -> SharedTensor:  # noqa: N802 - numpy's name
        return self._new(self.share.T)

    def flatten(self) -> SharedTensor:
        return self._new(self.share.ravel().copy())

    def __getitem__(self, index: Any) -> SharedTensor:
        return self._new(self.share[index])

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> SharedTensor:
        return self._new(np.sum(self.share, axis=axis, keepdims=keepdims, dtype=np.uint64))

    def mean(self, axis: int | None = None) -> SharedTensor:
        count = self.size if axis is None else self.shape[axis]
        return self.sum(axis) * (1.0 / count)

    # -- public operands ---------------------------------------------------------------------------
    def _encode_public(self, value: Any) -> tuple[np.ndarray, int]:
        """A public operand as ring elements: integers exactly (frac 0), reals at the session's bits."""
        array = np.asarray(value)
        if array.dtype.kind in "iub":
            return array.astype(np.int64).view(np.uint64), 0
        return self.session.fxp.encode(array), self.session.fxp.frac_bits

    def _encode_multiplier(self, value: Any) -> tuple[np.ndarray, int]:
        """A public multiplier; a small real gets extra fractional bits (as many as its magnitude
        frees), so that e.g. 1/n in a mean keeps its relative precision."""
        array = np.asarray(value)
        if array.dtype.kind in "iub":
            return self._encode_public(array)
        largest = float(np.max(np.abs(array), initial=0.0))
        extra = int(np.clip(-np.floor(np.log2(largest)), 0, 20)) if largest > 0 else 0
        frac = self.session.fxp.frac_bits + extra
        return self.session.fxp.encode(array, frac), frac

    def _aligned(self, share: np.ndarray, frac: int, target: int) -> np.ndarray:
        """Rescale an encoding up to `target` fractional bits (exact: a left shift)."""
        return share if frac == target else share << np.uint64(target - frac)

    @wrapping
    def _linear(self, other: Any, sign: int) -> SharedTensor:
        if isinstance(other, SharedTensor):
            frac = max(self.frac, other.frac)
            theirs = self._aligned(other.share, other.frac, frac)
            mine = self._aligned(self.share, self.frac, frac)
            return self._new(mine + theirs if sign > 0 else mine - theirs, frac)
        encoded, other_frac = self._encode_public(other)
        frac = max(self.frac, other_frac)
        mine = self._aligned(self.share, self.frac, frac)
        if not self.session.is_first:
            return self._new(np.broadcast_to(mine, np.broadcast_shapes(mine.shape, encoded.shape)).copy(), frac)
        encoded = self._aligned(encoded, other_frac, frac)
        return self._new(mine + encoded if sign > 0 else mine - encoded, frac)

    def __add__(self, other: Any) -> SharedTensor:
        return self._linear(other, +1)

    __radd__ = __add__

    def __sub__(self, other: Any) -> SharedTensor:
        return self._linear(other, -1)

    def __rsub__(self, other: Any) -> SharedTensor:
        return (-self)._linear(other, +1)

    @wrapping
    def __neg__(self) -> SharedTensor:
        return self._new(np.uint64(0) - self.share)

    # -- products ----------------------------------------------------------------------------------
    @wrapping
    def __mul__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return beaver_mul(self, other)
        encoded, frac = self._encode_multiplier(other)
        return self._new(self.share * encoded, self.frac + frac).rescaled()

    __rmul__ = __mul__

    @wrapping
    def __matmul__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return beaver_matmul(self, other)
        encoded, frac = self._encode_public(other)
        return self._new(np.matmul(self.share, encoded), self.frac + frac).rescaled()

    @wrapping
    def __rmatmul__(self, other: Any) -> SharedTensor:
        encoded, frac = self._encode_public(other)
        return self._new(np.matmul(encoded, self.share), self.frac + frac).rescaled()

    def rescaled(self) -> SharedTensor:
        """Truncate back to the session's fractional bits if a product went beyond them."""
        excess = self.frac - self.session.fxp.frac_bits
        return self.truncate(excess) if excess > 0 else self

    def truncate(self, bits: int) -> SharedTensor:
        """Divide by 2^bits (see the module docstring for the two methods and their errors)."""
        if self.session.truncation == "none":
            raise RuntimeError("this session cannot truncate: products of reals among more than two parties "
                               "need a dealer's truncation pairs (triples='dealer')")
        if self.session.truncation == "local":
            return self._new(_truncate_local(self.share, bits, self.session.is_first), self.frac - bits)
        return self._new(_truncate_tuple(self.session, self.share, bits), self.frac - bits)

    # -- output ------------------------------------------------------------------------------------
    def reveal(self, to: str | None = None) -> np.ndarray | None:
        """The plaintext at every computing party, or only at `to` (the others get None)."""
        if to is None:
            (ring,) = self.session.open(self.share)
        else:
            ring = self.session.reveal_to(self.share, to)
            if ring is None:
                return None
        if self.frac == 0:
            return signed(ring).copy()
        return self.session.fxp.decode(ring, self.frac)


def concatenate(tensors: Sequence[SharedTensor], axis: int = 0) -> SharedTensor:
    """numpy.concatenate for shared tensors of one session and one scale."""
    first = tensors[0]
    if any(t.frac != first.frac for t in tensors):
        raise ValueError("cannot concatenate shared tensors of different fixed-point scales")
    return first._new(np.concatenate([t.share for t in tensors], axis=axis))


def stack(tensors: Sequence[SharedTensor], axis: int = 0) -> SharedTensor:
    first = tensors[0]
    if any(t.frac != first.frac for t in tensors):
        raise ValueError("cannot stack shared tensors of different fixed-point scales")
    return first._new(np.stack([t.share for t in tensors], axis=axis))


@wrapping
def beaver_mul(x: SharedTensor, y: SharedTensor) -> SharedTensor:
    """x * y elementwise (with broadcasting) from one Beaver triple; one round."""
    session = x.session
    xs, ys = np.broadcast_arrays(x.share, y.share)
    triple = session.triples.mul(xs.shape)
    d, e = session.open(xs - triple.first, ys - triple.second)
    z = triple.last + d * triple.second + e * triple.first
    if session.is_first:
        z += d * e
    return SharedTensor(session, z, x.frac + y.frac).rescaled()


@wrapping
def beaver_matmul(x: SharedTensor, y: SharedTensor) -> SharedTensor:
    """x @ y from one matrix triple; one round, and bytes for the two operands only."""
    session = x.session
    triple = session.triples.matmul(x.shape, y.shape)
    e, f = session.open(x.share - triple.first, y.share - triple.second)
    z = triple.last + np.matmul(e, triple.second) + np.matmul(triple.first, f)
    if session.is_first:
        z += np.matmul(e, f)
    return SharedTensor(session, z, x.frac + y.frac).rescaled()


@wrapping
def _truncate_local(share: np.ndarray, bits: int, first: bool) -> np.ndarray:
    shift = np.uint64(bits)
    if first:
        return share >> shift
    return np.uint64(0) - ((np.uint64(0) - share) >> shift)


@wrapping
def _truncate_tuple(session: SessionCore, share: np.ndarray, bits: int) -> np.ndarray:
    shift = np.uint64(bits)
    pair = session.triples.trunc(share.size, bits)
    r = pair.first.reshape(share.shape)
    masked = share + r
    if session.is_first:
        masked = masked + np.uint64(1 << 62)
    (c,) = session.open(masked)
    top, low = (v.reshape(share.shape) for v in pair.last)
    c_top = c >> np.uint64(_HIGH_BIT)
    # wrap bit b = c_top XOR top, linear in top's shares because c_top is public
    b = top - np.uint64(2) * c_top * top
    out = b * np.uint64(1 << (63 - bits)) - low
    if session.is_first:
        out += ((c & _LOW_MASK) >> shift) + c_top * np.uint64(1 << (63 - bits)) - np.uint64(1 << (62 - bits))
    return out
