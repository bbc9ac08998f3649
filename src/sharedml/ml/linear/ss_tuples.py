"""Tuples had ahead of the online phase: counted by a dry run, fetched from a trusted dealer in bulk.

`demand` counts the tuples a step will draw by running it once on a session that opens nothing:
every operator is data-oblivious, so the counts depend on shapes only. The counts have the form of
`TwoPartySource.prepare`'s arguments (the dealer-free offline phase) and `PrefetchedSource.prepare`'s.

`DealerSource` asks the dealer for every tuple at the moment an operator needs it: one request and
one answer per tuple, about twenty per SGD step, each a message on the critical path of the party
that receives the corrections. Tuples are independent of the data, so training can fetch an
epoch's worth ahead (the offline phase the dealer-free source has, with the same `prepare`
signature): elementwise kinds in one request each, matrix triples of one shape as one batched
request. `request` and `collect` split `prepare` so that the dealer can compute the next epoch's
tuples while the parties run this one. The online phase then draws from these pools and sends
nothing to the dealer. What is missing from a pool is fetched on the spot, as before.

The dealer learns nothing new: it already knows every tuple, and only the shapes of the requests.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from typing import Any

import numpy as np

from ...mpc import MPCSession, SharedTensor, TripleSource
from ...mpc.core import SessionCore
from ...mpc.triples import Tuple


class _Tally(TripleSource):
    """Zero tuples of the right shapes, counted in the form `TwoPartySource.prepare` takes."""

    name = "tally"
    makes_trunc_pairs = True

    def __init__(self) -> None:
        self.demand: dict[str, Any] = {"mul": 0, "matmul": [], "and_words": 0, "dabits": 0, "trunc": {}}

    def mul(self, shape: tuple[int, ...]) -> Tuple:
        self.demand["mul"] += math.prod(shape)
        zero = np.zeros(shape, np.uint64)
        return Tuple(zero, zero, lambda: zero)

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        self.demand["matmul"].append((tuple(shape_a), tuple(shape_b)))
        shape_c = (shape_a[0],) + tuple(shape_b[1:])
        return Tuple(np.zeros(shape_a, np.uint64), np.zeros(shape_b, np.uint64), lambda: np.zeros(shape_c, np.uint64))

    def and_words(self, n: int) -> Tuple:
        self.demand["and_words"] += n
        zero = np.zeros(n, np.uint64)
        return Tuple(zero, zero, lambda: zero)

    def dabits(self, n: int) -> Tuple:
        self.demand["dabits"] += n
        zero = np.zeros(n, np.uint64)
        return Tuple(zero, zero, lambda: zero)

    def trunc(self, n: int, shift: int) -> Tuple:
        self.demand["trunc"][shift] = self.demand["trunc"].get(shift, 0) + n
        return Tuple(np.zeros(n, np.uint64), np.zeros(n, np.uint64), lambda: np.zeros((2, n), np.uint64))


class _DryRun(SessionCore):
    """A copy of a session's core that talks to no one: openings return this party's own words, tuples
    are zeros from a `_Tally`. Running a step on it counts the tuples the real step will draw."""

    def __init__(self, like: MPCSession) -> None:
        self.ctx, self.fxp, self.parties, self.index = like.ctx, like.fxp, like.parties, like.index
        self.peers, self.truncation = like.peers, like.truncation
        self.rounds = 0
        self.triples = _Tally()

    def open(self, *shares: np.ndarray, xor: bool = False) -> list[np.ndarray]:
        return [np.asarray(s, dtype=np.uint64).copy() for s in shares]


def demand(mpc: MPCSession, step: Any, *shapes: tuple[int, ...]) -> dict[str, Any]:
    """The tuples `step(*tensors)` draws for shared operands of these shapes."""
    dry = _DryRun(mpc)
    step(*(SharedTensor(dry, np.zeros(shape, np.uint64), mpc.fxp.frac_bits) for shape in shapes))
    return dry.triples.demand


def add_demand(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    trunc = dict(total["trunc"])
    for shift, count in more["trunc"].items():
        trunc[shift] = trunc.get(shift, 0) + count
    return {"mul": total["mul"] + more["mul"], "matmul": total["matmul"] + more["matmul"],
            "and_words": total["and_words"] + more["and_words"], "dabits": total["dabits"] + more["dabits"],
            "trunc": trunc}


class _Flat:
    """Elementwise tuples as flat arrays, consumed front to back (any shape can draw from them)."""

    def __init__(self) -> None:
        self.parts: deque[list[np.ndarray]] = deque()
        self.size = 0

    def add(self, arrays: list[np.ndarray]) -> None:
        self.parts.append([a.ravel() for a in arrays])
        self.size += self.parts[-1][0].size

    def take(self, n: int) -> list[np.ndarray]:
        out = []
        self.size -= n
        while n:
            part = self.parts[0]
            k = min(n, part[0].size)
            out.append([a[:k] for a in part])
            if k == part[0].size:
                self.parts.popleft()
            else:
                self.parts[0] = [a[k:] for a in part]
            n -= k
        return [np.concatenate(arrays) for arrays in zip(*out, strict=True)]


class PrefetchedSource(TripleSource):
    """Another source's tuples, fetched by `prepare` in bulk and handed out in the online phase."""

    def __init__(self, inner: TripleSource) -> None:
        self.inner, self.name, self.makes_trunc_pairs = inner, inner.name, inner.makes_trunc_pairs
        self.flat: dict[Any, _Flat] = defaultdict(_Flat)
        self.matrices: dict[tuple, deque[list[np.ndarray]]] = defaultdict(deque)
        self.pending: list[tuple[Any, Tuple, int | None]] = []

    def prepare(self, *, mul: int = 0, matmul: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (),
                and_words: int = 0, dabits: int = 0, trunc: dict[int, int] | None = None) -> None:
        """Fetch the tuples `TwoPartySource.prepare` would make for the same arguments."""
        self.request(mul=mul, matmul=matmul, and_words=and_words, dabits=dabits, trunc=trunc)
        self.collect()

    def request(self, *, mul: int = 0, matmul: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (),
                and_words: int = 0, dabits: int = 0, trunc: dict[int, int] | None = None) -> None:
        """Ask for tuples (one request per kind, and per shape of matrix triple) without waiting for them."""
        if mul:
            self.pending.append(("mul", self.inner.mul((mul,)), None))
        counts: dict[tuple, int] = {}
        for shape_a, shape_b in matmul:
            key = (tuple(shape_a), tuple(shape_b))
            counts[key] = counts.get(key, 0) + 1
        for (shape_a, shape_b), count in counts.items():
            batched = self.inner.matmul((count, *shape_a), (count, *shape_b))
            self.pending.append((("matmul", shape_a, shape_b), batched, count))
        if and_words:
            self.pending.append(("and", self.inner.and_words(and_words), None))
        if dabits:
            self.pending.append(("dabits", self.inner.dabits(dabits), None))
        for shift, count in (trunc or {}).items():
            self.pending.append((("trunc", shift), self.inner.trunc(count, shift), None))

    def collect(self) -> None:
        """Wait for the answers to every request so far (they arrive in request order) and pool them."""
        for kind, made, count in self.pending:
            if count is not None:
                self.matrices[kind].extend([made.first[i], made.second[i], made.last[i]] for i in range(count))
            elif kind == "dabits":
                self.flat[kind].add([made.first, made.last])
            elif kind[0] == "trunc":
                top, low = made.last
                self.flat[kind].add([made.first, top, low])
            else:
                self.flat[kind].add([made.first, made.second, made.last])
        self.pending = []

    def _draw(self, kind: Any, n: int) -> list[np.ndarray] | None:
        pool = self.flat[kind]
        return pool.take(n) if pool.size >= n else None

    def mul(self, shape: tuple[int, ...]) -> Tuple:
        drawn = self._draw("mul", math.prod(shape))
        if drawn is None:
            return self.inner.mul(shape)
        a, b, c = (x.reshape(shape) for x in drawn)
        return Tuple(a, b, lambda: c)

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        pool = self.matrices[("matmul", tuple(shape_a), tuple(shape_b))]
        if not pool:
            return self.inner.matmul(shape_a, shape_b)
        a, b, c = pool.popleft()
        return Tuple(a, b, lambda: c)

    def and_words(self, n: int) -> Tuple:
        drawn = self._draw("and", n)
        if drawn is None:
            return self.inner.and_words(n)
        a, b, c = drawn
        return Tuple(a, b, lambda: c)

    def dabits(self, n: int) -> Tuple:
        drawn = self._draw("dabits", n)
        if drawn is None:
            return self.inner.dabits(n)
        bits, arithmetic = drawn
        return Tuple(bits, arithmetic, lambda: arithmetic)

    def trunc(self, n: int, shift: int) -> Tuple:
        drawn = self._draw(("trunc", shift), n)
        if drawn is None:
            return self.inner.trunc(n, shift)
        r, top, low = drawn
        return Tuple(r, top, lambda: np.stack([top, low]))

    def close(self) -> None:
        self.inner.close()
