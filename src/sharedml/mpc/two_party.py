"""Dealer-free tuples for two parties: Beaver triples from additively homomorphic encryption, boolean
triples and daBits from oblivious transfer.

Arithmetic triples (elementwise and matrix). The first party P0 holds an OU (or Paillier) key pair;
each party draws its own a_i, b_i. Then c = a·b needs the cross terms a0·b1 + a1·b0:

    P0 → P1: Enc(a0), Enc(b0)
    P1 → P0: Enc(a0)^b1 · Enc(b0)^a1 · Enc(ρ)        (for matrices: Enc(A0)@B1 and A1@Enc(B0))
    P0: c0 = a0·b0 + Dec(...) mod 2^64;  P1: c1 = a1·b1 − ρ mod 2^64

The cross term is an integer below 2^(129 + log2 k) (k the inner dimension), far under the
plaintext space, and ρ is uniform over an interval 2^40 times larger, so P0's decryption is
statistically (2^-40) independent of a1, b1; ρ's fresh encryption also re-randomises the ciphertext.
P1 sees only ciphertexts under P0's key. Semi-honest security.

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
from .ot import OTExtension, and_triples
from .triples import TripleSource, Tuple

_KEY_TAG, _ENCRYPTED_TAG, _MASKED_TAG = "mpc/he/key", "mpc/he/encrypted", "mpc/he/masked"
_STATISTICAL_BITS = 40
_ONE = np.uint64(1)
_MOD = 1 << 64


def _random(shape: tuple[int, ...]) -> np.ndarray:
    return SeededStream(secrets.token_bytes(32), domain=b"sharedml.mpc.he-triples").uint64(shape)


def _as_ints(ring: np.ndarray) -> np.ndarray:
    return np.asarray(ring, dtype=np.uint64).astype(object)


def _to_ring(ints: np.ndarray) -> np.ndarray:
    flat = [int(v) % _MOD for v in np.asarray(ints, dtype=object).ravel()]
    return np.array(flat, dtype=np.uint64).reshape(np.shape(ints))


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
                 timeout: float = 3600.0) -> None:
        if len(parties) != 2:
            raise ValueError(f"dealer-free tuples are for exactly 2 parties, got {parties}; use a dealer for more")
        if scheme not in ("ou", "paillier"):
            raise ValueError(f"unknown HE scheme {scheme!r}: use 'ou' or 'paillier'")
        self.ctx, self.timeout = ctx, timeout
        self.is_key_holder = ctx.party == parties[0]
        self.peer = parties[1] if self.is_key_holder else parties[0]
        if self.is_key_holder:
            generate = ou.generate_keypair if scheme == "ou" else paillier.generate_keypair
            self.public_key, self._private_key = generate(key_bits)
            ctx.send(self.peer, _KEY_TAG, self.public_key.to_dict())
        else:
            key_class = ou.OUPublicKey if scheme == "ou" else paillier.PaillierPublicKey
            self.public_key = key_class.from_dict(ctx.recv(self.peer, _KEY_TAG, timeout))
        self.ot = OTExtension(ctx, self.peer, tag="mpc/ot")
        self.pools: dict[Any, _Pool] = defaultdict(_Pool)

    # -- offline phase -----------------------------------------------------------------------------
    def prepare(self, *, mul: int = 0, matmul: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (),
                and_words: int = 0, dabits: int = 0, trunc: dict[int, int] | None = None) -> None:
        """Make tuples ahead of the online phase: `mul` elements of elementwise triples, one matrix
        triple per (shape_a, shape_b), `and_words` boolean words, `dabits` daBits, and per shift
        (usually the session's fractional bits) a number of truncation pairs."""
        if mul:
            self.pools["mul"].add(*self._arithmetic((mul,), None))
        for shape_a, shape_b in matmul:
            self.pools[("matmul", tuple(shape_a), tuple(shape_b))].add(*self._arithmetic(shape_a, shape_b))
        if and_words:
            self.pools["and"].add(*and_triples(self.ctx, self.peer, and_words, ot=self.ot))
        if dabits:
            self.pools["dabits"].add(*self._dabits(dabits))
        for shift, count in (trunc or {}).items():
            self.pools[("trunc", shift)].add(*truncation_pairs(self.session, count, shift))

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
        a, b, c = (x.reshape(shape) for x in self._draw("mul", n, lambda k: self._arithmetic((k,), None)))
        return Tuple(a, b, lambda: c)

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        if len(shape_a) != 2 or len(shape_b) not in (1, 2):
            raise ValueError(f"dealer-free matrix triples are for 2-D @ 1-D or 2-D operands, got {shape_a} @ {shape_b}")
        pool = self.pools[("matmul", tuple(shape_a), tuple(shape_b))]
        a, b, c = pool.parts.pop(0) if pool.parts else self._arithmetic(shape_a, shape_b)
        shape_c = (shape_a[0],) + tuple(shape_b[1:])
        return Tuple(a.reshape(shape_a), b.reshape(shape_b), lambda: c.reshape(shape_c))

    def and_words(self, n: int) -> Tuple:
        a, b, c = self._draw("and", n, lambda k: and_triples(self.ctx, self.peer, k, ot=self.ot))
        return Tuple(a, b, lambda: c)

    def dabits(self, n: int) -> Tuple:
        bits, arithmetic = self._draw("dabits", n, self._dabits)
        return Tuple(bits, arithmetic, lambda: arithmetic)

    def trunc(self, n: int, shift: int) -> Tuple:
        r, top, low = self._draw(("trunc", shift), n, lambda k: truncation_pairs(self.session, k, shift))
        return Tuple(r, top, lambda: np.stack([top, low]))

    # -- generation --------------------------------------------------------------------------------
    def _arithmetic(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...] | None) -> list[np.ndarray]:
        """One elementwise triple of shape_a (shape_b None) or one matrix triple shape_a @ shape_b."""
        elementwise = shape_b is None
        a, b = _random(shape_a), _random(shape_a if elementwise else shape_b)
        own = a * b if elementwise else np.matmul(a, b)
        key: HEPublicKey = self.public_key
        if self.is_key_holder:
            encrypted = [key.encrypt(_as_ints(a)), key.encrypt(_as_ints(b))]
            self.ctx.send(self.peer, _ENCRYPTED_TAG, [key.ciphertexts_to_bytes(e) for e in encrypted])
            masked = self.ctx.recv(self.peer, _MASKED_TAG, self.timeout)
            cross = self._private_key.decrypt(key.ciphertexts_from_bytes(masked, own.shape))
            return [a, b, own + _to_ring(cross)]
        raw_a, raw_b = self.ctx.recv(self.peer, _ENCRYPTED_TAG, self.timeout)
        enc_a = key.ciphertexts_from_bytes(raw_a, a.shape)
        enc_b = key.ciphertexts_from_bytes(raw_b, b.shape)
        if elementwise:
            cross = key.add(key.mul_plain(enc_a, _as_ints(b)), key.mul_plain(enc_b, _as_ints(a)))
            inner = 1
        else:  # Enc(A0) @ B1 + A1 @ Enc(B0), the second as (Enc(B0)^T @ A1^T)^T
            b_matrix = b if b.ndim == 2 else b[:, None]
            enc_b_matrix = enc_b if enc_b.ndim == 2 else enc_b[:, None]
            first = key.dot(enc_a, _as_ints(b_matrix))
            second = key.dot(enc_b_matrix.T, _as_ints(a).T).T
            cross = key.add(first, second).reshape(own.shape)
            inner = shape_a[-1]
        bound = 1 << (129 + inner.bit_length() + _STATISTICAL_BITS)
        rho = SeededStream(secrets.token_bytes(32), domain=b"sharedml.mpc.he-mask").integers_below(own.shape, bound)
        rho = np.asarray(rho, dtype=object)
        masked = key.add(cross, key.encrypt(rho))
        self.ctx.send(self.peer, _MASKED_TAG, key.ciphertexts_to_bytes(masked))
        return [a, b, own - _to_ring(rho)]

    def _dabits(self, n: int) -> list[np.ndarray]:
        bits = _random((n,)) & _ONE
        if self.is_key_holder:  # OT receiver, choosing with its bits
            got = self.ot.receive(bits.astype(bool), 8).view(np.uint64).ravel()
            return [bits, bits - np.uint64(2) * got]
        s = _random((n,))
        self.ot.send(s.view(np.uint8).reshape(n, 8), (s + bits).view(np.uint8).reshape(n, 8))
        return [bits, bits + np.uint64(2) * s]
