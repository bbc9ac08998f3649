"""Correlated randomness for the online phase, and the trusted dealer that can supply it.

Every interactive operator consumes one kind of preprocessed tuple, always in the same order at
every party (the program is SPMD, so the order is the program order):

- `mul(shape)` / `matmul(shape_a, shape_b)`: Beaver triples, additive shares over Z_2^64 of random
  a, b and c = a·b (elementwise) or c = a @ b;
- `and_words(n)`: boolean triples, XOR shares of random 64-bit words a, b and c = a & b, i.e. 64
  independent bit triples per word;
- `dabits(n)`: random bits r shared both ways: XOR shares (low bit of a uint64) and additive shares;
- `trunc(n, shift)`: random r over Z_2^64 with additive shares of r's top bit and of
  (r mod 2^63) >> shift, for truncation without the 2-party restriction (see tensor.py).

A `TripleSource` hands each party its shares. `DealerSource` is the client of a **trusted dealer**:
a separate party (role `dealer`, e.g. run by the coordinator's operator) that knows every tuple in
the clear. It is flagged as such in the job and in docs/security.md: the dealer must not collude
with any computing party and must not see any opened value. Seed compression: the dealer gives each
party a 32-byte seed once; every party except the last derives all its shares from its seed, and
the last party derives a and b from its seed and receives only the correction of c (or of the
arithmetic share). So the dealer sends one array per tuple instead of one per party and value.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..crypto.prg import SeededStream
from ..runtime.context import Context

_SEED_TAG, _REQUEST_TAG, _CORRECTION_TAG = "mpc/dealer/seed", "mpc/dealer/request", "mpc/dealer/correction"
_DOMAIN = b"sharedml.mpc.dealer"
_ONE = np.uint64(1)


@dataclass
class Tuple:
    """A party's shares of one preprocessed tuple; `last` may arrive later than the others, so it is
    fetched on first use (the dealer's answer then overlaps the online opening round)."""

    first: np.ndarray
    second: np.ndarray
    fetch_last: Callable[[], np.ndarray]
    _last: np.ndarray | None = None

    @property
    def last(self) -> np.ndarray:
        if self._last is None:
            self._last = self.fetch_last()
        return self._last


class TripleSource(ABC):
    """Where one party's preprocessed tuples come from."""

    name: str
    makes_trunc_pairs = False

    @abstractmethod
    def mul(self, shape: tuple[int, ...]) -> Tuple:
        """(a, b, c) with c = a * b elementwise."""

    @abstractmethod
    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        """(a, b, c) with c = a @ b."""

    @abstractmethod
    def and_words(self, n: int) -> Tuple:
        """(a, b, c) XOR-shared with c = a & b, n words."""

    @abstractmethod
    def dabits(self, n: int) -> Tuple:
        """(boolean share, arithmetic share, unused) of n random bits."""

    def trunc(self, n: int, shift: int) -> Tuple:
        """(r, unused, stack of [top bit of r, (r mod 2^63) >> shift]) where `makes_trunc_pairs`."""
        raise NotImplementedError(f"{self.name} tuples cannot make truncation pairs; use local truncation")

    def close(self) -> None:  # noqa: B027 - most sources have nothing to release
        """Tell a helper (the dealer) that no more tuples are needed."""


class NoTuples(TripleSource):
    """For sessions that only add, scale and open (e.g. a secure sum): asking for a tuple is an error."""

    name = "none"

    def _refuse(self, *args: Any) -> Tuple:
        raise RuntimeError("this session has no tuple source (triples=None); products and comparisons need "
                           "triples='dealer' (with a dealer party) or triples='he' (two parties)")

    mul = matmul = and_words = dabits = _refuse


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


class DealerSource(TripleSource):
    """A computing party's side of the trusted dealer (see the module docstring)."""

    name = "dealer"
    makes_trunc_pairs = True

    def __init__(self, ctx: Context, parties: list[str], dealer: str) -> None:
        self.ctx, self.dealer = ctx, dealer
        self.is_last = ctx.party == parties[-1]
        self.stream = SeededStream(ctx.recv(dealer, _SEED_TAG), domain=_DOMAIN)

    def _fetch(self, request: dict[str, Any]) -> Callable[[], np.ndarray]:
        self.ctx.send(self.dealer, _REQUEST_TAG, request)
        return lambda: self.ctx.recv(self.dealer, _CORRECTION_TAG)

    def _tuple(self, shapes: tuple[tuple[int, ...], ...], request: dict[str, Any]) -> Tuple:
        first, second = self.stream.uint64(shapes[0]), self.stream.uint64(shapes[1])
        if self.is_last:
            return Tuple(first, second, self._fetch(request))
        last = self.stream.uint64(shapes[2])
        return Tuple(first, second, lambda: last)

    def mul(self, shape: tuple[int, ...]) -> Tuple:
        return self._tuple((shape, shape, shape), {"kind": "mul", "shape": list(shape)})

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        shape_c = np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (shape_a[-2], shape_b[-1])
        return self._tuple((shape_a, shape_b, shape_c),
                           {"kind": "matmul", "shape_a": list(shape_a), "shape_b": list(shape_b)})

    def and_words(self, n: int) -> Tuple:
        return self._tuple(((n,), (n,), (n,)), {"kind": "and", "n": n})

    def dabits(self, n: int) -> Tuple:
        bits = self.stream.uint64(n) & _ONE
        if self.is_last:
            return Tuple(bits, np.zeros(0, np.uint64), self._fetch({"kind": "dabits", "n": n}))
        arithmetic = self.stream.uint64(n)
        return Tuple(bits, arithmetic, lambda: arithmetic)

    def trunc(self, n: int, shift: int) -> Tuple:
        r = self.stream.uint64(n)
        if self.is_last:
            fetch = self._fetch({"kind": "trunc", "n": n, "shift": shift})
            return Tuple(r, np.zeros(0, np.uint64), fetch)
        top, low = self.stream.uint64(n), self.stream.uint64(n)
        return Tuple(r, top, lambda: np.stack([top, low]))

    def close(self) -> None:
        if self.is_last:
            self.ctx.send(self.dealer, _REQUEST_TAG, {"kind": "done"})


def serve_dealer(ctx: Context, parties: list[str], *, timeout: float | None = None) -> dict[str, int]:
    """Run the trusted dealer for `parties` until the last one says it is done; returns counts.

    Mirrors exactly the reads each party makes from its seed (see DealerSource), computes the true
    tuple and sends the last party its correction.
    """
    streams = {}
    for party in parties:
        seed = secrets.token_bytes(32)
        ctx.send(party, _SEED_TAG, seed)
        streams[party] = SeededStream(seed, domain=_DOMAIN)
    others, last = [streams[p] for p in parties[:-1]], streams[parties[-1]]
    served: dict[str, int] = {}
    while True:
        request = ctx.recv(parties[-1], _REQUEST_TAG, timeout)
        kind = request["kind"]
        if kind == "done":
            return served
        served[kind] = served.get(kind, 0) + 1
        ctx.send(parties[-1], _CORRECTION_TAG, _correction(kind, request, others, last))


def _correction(kind: str, request: dict[str, Any], others: list[SeededStream], last: SeededStream) -> np.ndarray:
    """The last party's share that makes the sum of all shares the true value."""
    if kind in ("mul", "matmul", "and"):
        if kind == "mul":
            shapes = [tuple(request["shape"])] * 3
        elif kind == "matmul":
            sa, sb = tuple(request["shape_a"]), tuple(request["shape_b"])
            shapes = [sa, sb, np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])]
        else:
            shapes = [(request["n"],)] * 3
        combine = np.bitwise_xor if kind == "and" else np.add
        shares = [(s.uint64(shapes[0]), s.uint64(shapes[1]), s.uint64(shapes[2])) for s in others]
        a_last, b_last = last.uint64(shapes[0]), last.uint64(shapes[1])
        a = combine.reduce([s[0] for s in shares] + [a_last])
        b = combine.reduce([s[1] for s in shares] + [b_last])
        c = np.bitwise_and(a, b) if kind == "and" else (a * b if kind == "mul" else _matmul(a, b))
        if kind == "and":
            return np.bitwise_xor.reduce([c] + [s[2] for s in shares])
        return c - np.add.reduce([np.zeros_like(c)] + [s[2] for s in shares])
    n = request["n"]
    if kind == "dabits":
        shares = [(s.uint64(n) & _ONE, s.uint64(n)) for s in others]
        bits = np.bitwise_xor.reduce([s[0] for s in shares] + [last.uint64(n) & _ONE])
        return bits - np.add.reduce([np.zeros(n, np.uint64)] + [s[1] for s in shares])
    if kind == "trunc":
        shift = request["shift"]
        shares = [(s.uint64(n), s.uint64(n), s.uint64(n)) for s in others]
        r = np.add.reduce([s[0] for s in shares] + [last.uint64(n)])
        top, low = r >> np.uint64(63), (r & np.uint64((1 << 63) - 1)) >> np.uint64(shift)
        zero = np.zeros(n, np.uint64)
        return np.stack([top - np.add.reduce([zero] + [s[1] for s in shares]),
                         low - np.add.reduce([zero] + [s[2] for s in shares])])
    raise ValueError(f"the dealer got an unknown request kind {kind!r}")
