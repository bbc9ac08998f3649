"""Dealer-free tuples for two parties: Beaver triples from additively homomorphic encryption, boolean
triples and daBits from oblivious transfer.

Arithmetic triples (elementwise and matrix). Each party holds its own OU (or Paillier) key pair and
draws its own a_i, b_i; c = a·b needs the cross terms a0·b1 + a1·b0. Symmetrically, each party
encrypts the smaller of its operands (for a·b, a; for A @ B, A or B by size) under its own key,
and returns the peer's cross term masked:

    Pi → Pj: Enc_i(a_i)
    Pj → Pi: Enc_i(a_i)^b_j · Enc_i(ρ_j)            (for matrices: Enc_i(A_i) @ B_j or A_j @ Enc_i(B_i))
    Pi: c_i = a_i·b_i + Dec_i(...) − ρ_i mod 2^64

so a 1000×100 @ 100×1 triple encrypts 100 values per party, not 100,000. A cross term is an integer
below 2^(129 + log2 k) (k the inner dimension), far under the plaintext space, and ρ is uniform
over an interval 2^40 times larger, so each decryption is statistically (2^-40) independent of the
peer's values; ρ's fresh encryption also re-randomises the ciphertext. Each party sees only
ciphertexts under the peer's key. Semi-honest security.

Elementwise triples can come from OT instead (`elementwise="ot"`, session `triples="ot"`): Gilboa's
product, 128 OTs of 8 bytes per triple, about 50 times faster than HE here though heavier on the
wire (about 6 KB per triple); matrix triples stay with HE, whose cost grows with the smaller operand.

Boolean triples come from IKNP random OTs (ot.and_triples); a daBit (a random bit r = r0 ⊕ r1
shared both ways) from one chosen-message OT of 8 bytes: P1 sends (s, s + r1), P0 chooses with r0
and gets s + r0·r1, so r = r0 + r1 − 2·r0·r1 splits into additive shares locally.

The offline phase: `prepare(...)` makes tuples ahead and keeps them; the online phase takes from
these pools first and makes what is missing on the spot. Both parties make the same calls in the
same order, so their pools stay in step. Truncation pairs come from a binary adder on the two
parties' random shares (boolean.truncation_pairs), so dealer-free sessions truncate as exactly as
dealer ones.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

import numpy as np

from ..crypto import ou, paillier
from ..crypto.he_scheme import HEPublicKey
from ..crypto.prg import SeededStream
from ..runtime.context import Context
from .boolean import truncation_pairs
from .fixed import random_ring
from .ot import OTExtension, and_triples
from .triples import TripleSource, Tuple

_KEY_TAG, _ENCRYPTED_TAG, _MASKED_TAG = "mpc/he/key", "mpc/he/encrypted", "mpc/he/masked"
_STATISTICAL_BITS = 40
_ONE = np.uint64(1)
_MOD = 1 << 64


def _as_ints(ring: np.ndarray) -> np.ndarray:
    return np.asarray(ring, dtype=np.uint64).astype(object)


def _to_ring(ints: np.ndarray) -> np.ndarray:
    return (np.asarray(ints, dtype=object) % _MOD).astype(np.uint64)


def _in_chunks(make: Any, n: int, chunk: int) -> list[np.ndarray]:
    """make(n) as make(chunk) several times, concatenated: OT-made tuples take ~1 KB of working memory
    per bit triple or Gilboa product while they are made, so large batches go in pieces."""
    parts = [make(min(chunk, n - start)) for start in range(0, n, chunk)] or [make(0)]
    return [np.concatenate(arrays) for arrays in zip(*parts, strict=True)]


class _Pool:
    """Tuples made ahead, consumed front to back; elementwise kinds are flat so any shape can draw."""

    def __init__(self) -> None:
        self.parts: list[list[np.ndarray]] = []

    def size(self) -> int:
        return sum(len(p[0]) for p in self.parts)

    def add(self, *arrays: np.ndarray) -> None:
        self.parts.append([a.ravel() for a in arrays])

    def take(self, n: int) -> list[np.ndarray]:
        out: list[list[np.ndarray]] = []
        while n:
            part = self.parts[0]
            k = min(n, len(part[0]))
            out.append([a[:k] for a in part])
            if k == len(part[0]):
                self.parts.pop(0)
            else:
                self.parts[0] = [a[k:] for a in part]
            n -= k
        return [np.concatenate(arrays) for arrays in zip(*out, strict=True)]


class TwoPartySource(TripleSource):
    """Tuples for exactly two parties with no third party (see the module docstring)."""

    name = "he"
    makes_trunc_pairs = True
    session: Any = None  # set by the MPCSession; truncation pairs are made by a protocol of the session

    def __init__(self, ctx: Context, parties: list[str], *, scheme: str = "ou", key_bits: int = 2048,
                 elementwise: str = "he", timeout: float = 3600.0) -> None:
        if len(parties) != 2:
            raise ValueError(f"dealer-free tuples are for exactly 2 parties, got {parties}; use a dealer for more")
        if scheme not in ("ou", "paillier"):
            raise ValueError(f"unknown HE scheme {scheme!r}: use 'ou' or 'paillier'")
        if elementwise not in ("he", "ot"):
            raise ValueError(f"elementwise triples come from 'he' or 'ot', not {elementwise!r}")
        self.elementwise = elementwise
        self.ctx, self.timeout = ctx, timeout
        self.is_first = ctx.party == parties[0]
        self.peer = parties[1] if self.is_first else parties[0]
        generate = ou.generate_keypair if scheme == "ou" else paillier.generate_keypair
        key_class = ou.OUPublicKey if scheme == "ou" else paillier.PaillierPublicKey
        self.public_key, self._private_key = generate(key_bits)
        ctx.send(self.peer, _KEY_TAG, self.public_key.to_dict())
        self.peer_key: HEPublicKey = key_class.from_dict(ctx.recv(self.peer, _KEY_TAG, timeout))
        self.ot = OTExtension(ctx, self.peer, tag="mpc/ot")
        self.pools: dict[Any, _Pool] = defaultdict(_Pool)

    # -- offline phase -----------------------------------------------------------------------------
    def prepare(self, *, mul: int = 0, matmul: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (),
                and_words: int = 0, dabits: int = 0, trunc: dict[int, int] | None = None) -> None:
        """Make tuples ahead of the online phase: `mul` elements of elementwise triples, one matrix
        triple per (shape_a, shape_b), `and_words` boolean words, `dabits` daBits, and per shift
        (usually the session's fractional bits) a number of truncation pairs."""
        if mul:
            self.pools["mul"].add(*self._elementwise(mul))
        for shape_a, shape_b in matmul:
            self.pools[("matmul", tuple(shape_a), tuple(shape_b))].add(*self._arithmetic(shape_a, shape_b))
        for shift, count in (trunc or {}).items():  # first: making them uses AND triples and daBits
            self.pools[("trunc", shift)].add(*truncation_pairs(self.session, count, shift))
        if and_words:
            self.pools["and"].add(*self._and_words(and_words))
        if dabits:
            self.pools["dabits"].add(*self._dabits(dabits))

    def _draw(self, kind: Any, n: int, make: Any) -> list[np.ndarray]:
        pool = self.pools[kind]
        have = min(pool.size(), n)
        parts = pool.take(have) if have else []
        if have < n:
            fresh = [a.ravel() for a in make(n - have)]
            parts = [np.concatenate([p, f]) for p, f in zip(parts, fresh, strict=True)] if parts else fresh
        return parts

    # -- TripleSource ------------------------------------------------------------------------------
    def mul(self, shape: tuple[int, ...]) -> Tuple:
        n = int(np.prod(shape, dtype=np.int64))
        a, b, c = (x.reshape(shape) for x in self._draw("mul", n, self._elementwise))
        return Tuple(a, b, lambda: c)

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        if len(shape_a) != 2 or len(shape_b) not in (1, 2):
            raise ValueError(f"dealer-free matrix triples are for 2-D @ 1-D or 2-D operands, got {shape_a} @ {shape_b}")
        pool = self.pools[("matmul", tuple(shape_a), tuple(shape_b))]
        a, b, c = pool.parts.pop(0) if pool.parts else self._arithmetic(shape_a, shape_b)
        shape_c = (shape_a[0],) + tuple(shape_b[1:])
        return Tuple(a.reshape(shape_a), b.reshape(shape_b), lambda: c.reshape(shape_c))

    def and_words(self, n: int) -> Tuple:
        a, b, c = self._draw("and", n, self._and_words)
        return Tuple(a, b, lambda: c)

    def dabits(self, n: int) -> Tuple:
        bits, arithmetic = self._draw("dabits", n, self._dabits)
        return Tuple(bits, arithmetic, lambda: arithmetic)

    def trunc(self, n: int, shift: int) -> Tuple:
        r, top, low = self._draw(("trunc", shift), n, lambda k: truncation_pairs(self.session, k, shift))
        return Tuple(r, top, lambda: np.stack([top, low]))

    # -- generation --------------------------------------------------------------------------------
    def _arithmetic(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...] | None) -> list[np.ndarray]:
        """One elementwise triple of shape_a (shape_b None) or one matrix triple shape_a @ shape_b.

        Symmetric: each party encrypts the smaller of its two operands under its own key, and
        computes the cross term of the peer's encrypted operand with its own other operand, masked.
        """
        elementwise = shape_b is None
        a, b = random_ring(shape_a), random_ring(shape_a if elementwise else shape_b)
        own = a * b if elementwise else np.matmul(a, b)
        left_small = elementwise or a.size <= b.size  # shapes are public, so both parties agree
        small = a if left_small else b
        mine, theirs = self.public_key, self.peer_key
        self.ctx.send(self.peer, _ENCRYPTED_TAG, mine.ciphertexts_to_bytes(mine.encrypt(_as_ints(small))))
        encrypted = theirs.ciphertexts_from_bytes(self.ctx.recv(self.peer, _ENCRYPTED_TAG, self.timeout), small.shape)
        b_matrix = b if elementwise or b.ndim == 2 else b[:, None]
        if elementwise:  # Enc(a_peer) ⊙ b
            term = theirs.mul_plain(encrypted, _as_ints(b))
        elif left_small:  # Enc(A_peer) @ B
            term = theirs.dot(encrypted, _as_ints(b_matrix))
        else:  # A @ Enc(B_peer), as (Enc(B_peer)^T @ A^T)^T
            term = theirs.dot((encrypted if encrypted.ndim == 2 else encrypted[:, None]).T, _as_ints(a).T).T
        term = np.asarray(term, dtype=object).reshape(own.shape)
        inner = 1 if elementwise else shape_a[-1]
        bound = 1 << (129 + inner.bit_length() + _STATISTICAL_BITS)
        rho = SeededStream(secrets.token_bytes(32), domain=b"sharedml.mpc.he-mask").integers_below(own.shape, bound)
        rho = np.asarray(rho, dtype=object)
        self.ctx.send(self.peer, _MASKED_TAG, theirs.ciphertexts_to_bytes(theirs.add(term, theirs.encrypt(rho))))
        masked = mine.ciphertexts_from_bytes(self.ctx.recv(self.peer, _MASKED_TAG, self.timeout), own.shape)
        return [a, b, own + _to_ring(self._private_key.decrypt(masked)) - _to_ring(rho)]

    def _elementwise(self, n: int) -> list[np.ndarray]:
        return self._arithmetic((n,), None) if self.elementwise == "he" else _in_chunks(self._gilboa, n, 1 << 14)

    def _and_words(self, n: int) -> list[np.ndarray]:
        return _in_chunks(lambda k: list(and_triples(self.ctx, self.peer, k, ot=self.ot)), n, 1 << 14)

    def _gilboa(self, n: int) -> list[np.ndarray]:
        """n elementwise triples from OT (Gilboa's product): for a cross term a_i·b_j, party i chooses
        with each of a_i's 64 bits between s and s + b_j offered by party j (s fresh per OT), so
        Σ 2^k·(what i got) − Σ 2^k·s = a_i·b_j mod 2^64. 128 OTs of 8 bytes per triple."""
        a, b = random_ring((n,)), random_ring((n,))
        weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
        cross = np.zeros(n, np.uint64)
        for chooser_first in (True, False):  # term a_first·b_second, then a_second·b_first
            if chooser_first == self.is_first:
                bits = np.unpackbits(a.view(np.uint8).reshape(n, 8), axis=1, bitorder="little").astype(bool)
                got = self.ot.receive(bits.ravel(), 8).view(np.uint64).reshape(n, 64)
                cross += (got * weights).sum(axis=1, dtype=np.uint64)
            else:
                s = random_ring((n, 64))
                self.ot.send(s.view(np.uint8).reshape(-1, 8), (s + b[:, None]).view(np.uint8).reshape(-1, 8))
                cross -= (s * weights).sum(axis=1, dtype=np.uint64)
        return [a, b, a * b + cross]

    def _dabits(self, n: int) -> list[np.ndarray]:
        bits = random_ring((n,)) & _ONE
        if self.is_first:  # OT receiver, choosing with its bits
            got = self.ot.receive(bits.astype(bool), 8).view(np.uint64).ravel()
            return [bits, bits - np.uint64(2) * got]
        s = random_ring((n,))
        self.ot.send(s.view(np.uint8).reshape(n, 8), (s + bits).view(np.uint8).reshape(n, 8))
        return [bits, bits + np.uint64(2) * s]
