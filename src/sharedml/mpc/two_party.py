"""Dealer-free tuples for two parties: Beaver triples from oblivious transfer (matrix triples, and
elementwise ones with `elementwise="ot"`) or additively homomorphic encryption, boolean triples,
daBits and truncation pairs from OT too.

Matrix triples (default `matrix="ot"`). Each party draws its own A_i, B_i; C = A·B needs the cross
terms A0·B1 + A1·B0, each a Gilboa product over correlated OT (ot.gilboa_send/receive): the holder
of one operand chooses with each bit of each of its elements, the other offers the matching column
(or row) of its own operand as the correlation and keeps the negated random sums. Whichever operand
makes fewer OTs × bytes chooses: for X_b(1024×24) @ w(24×1), w's 24·64 bits choose and each OT
carries a 1024-element column; bit k's correlation travels in only its 64 − k low bits (rounded
up per group of 16 bits). At that shape a triple costs ~0.35 s and ~8.4 MB per party on a 2-core
machine (both parties), against ~5 s for HE.

Matrix triples by HE (`matrix="he"`) and elementwise triples by HE (`elementwise="he"`, session
`triples="he"`): each party holds its own OU (or Paillier) key pair, encrypts the smaller of its two
operands under its own key, and returns the peer's cross term masked:

    Pi → Pj: Enc_i(a_i)
    Pj → Pi: Enc_i(a_i)^b_j · Enc_i(ρ_j)            (for matrices: Enc_i(A_i) @ B_j or A_j @ Enc_i(B_i))
    Pi: c_i = a_i·b_i + Dec_i(...) − ρ_i mod 2^64

A cross term is an integer below 2^(129 + log2 k) (k the inner dimension), far under the plaintext
space, and ρ is uniform over an interval 2^40 times larger, so each decryption is statistically
(2^-40) independent of the peer's values; ρ's fresh encryption also re-randomises the ciphertext.
Each party sees only ciphertexts under the peer's key. HE elementwise triples cost ~2 ms each
(~0.5 KB per party); by OT (Gilboa, 128 correlated OTs per triple) ~0.05 ms and ~1.3 KB per party.
The key pairs are made only where HE is used (not at all for `triples="ot"`).

Boolean triples come from IKNP random OTs (ot.and_triples); a daBit (a random bit r = r0 ⊕ r1
shared both ways) from one chosen-message OT of 8 bytes: P1 sends (s, s + r1), P0 chooses with r0
and gets s + r0·r1, so r = r0 + r1 − 2·r0·r1 splits into additive shares locally. A truncation pair
is 64 such bits in their additive form only, one correlated OT each: r = r_0 ⊕ r_1 bitwise, so its
value, its top bit and (r mod 2^63) >> shift are linear in the bits' shares, and dealer-free sessions
truncate as exactly as dealer ones.

All semi-honest; OT randomness from the OS CSPRNG and ChaCha20 keyed by it (see ot.py). The offline
phase: `prepare(...)` makes tuples ahead and keeps them; the online phase takes from these pools first
and makes what is missing on the spot. Both parties make the same calls in the same order, so their
pools stay in step.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

import numpy as np

from ..crypto.he_scheme import HEPublicKey
from ..crypto.he_schemes import SchemeName, check_scheme, generate_keypair, public_key_from_dict
from ..crypto.prg import SeededStream
from ..runtime.context import Context
from .fixed import random_ring
from .ot import OTExtension, and_triples, gilboa_receive, gilboa_send
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

    def __init__(self, ctx: Context, parties: list[str], *, scheme: SchemeName = "ou", key_bits: int = 2048,
                 elementwise: str = "he", matrix: str = "ot", timeout: float = 3600.0) -> None:
        if len(parties) != 2:
            raise ValueError(f"dealer-free tuples are for exactly 2 parties, got {parties}; use a dealer for more")
        check_scheme(scheme)
        if elementwise not in ("he", "ot"):
            raise ValueError(f"elementwise triples come from 'he' or 'ot', not {elementwise!r}")
        if matrix not in ("he", "ot"):
            raise ValueError(f"matrix triples come from 'ot' or 'he', not {matrix!r}")
        self.elementwise, self.matrix = elementwise, matrix
        self.ctx, self.timeout = ctx, timeout
        self.is_first = ctx.party == parties[0]
        self.peer = parties[1] if self.is_first else parties[0]
        if "he" in (elementwise, matrix):  # 2048-bit keys take seconds to make: only where HE is used
            self._exchange_keys(scheme, key_bits)
        self.ot = OTExtension(ctx, self.peer, tag="mpc/ot")
        self.pools: dict[Any, _Pool] = defaultdict(_Pool)

    def _exchange_keys(self, scheme: str, key_bits: int) -> None:
        """A fresh key pair of our own; the peer's public key."""
        self.public_key, self._private_key = generate_keypair(scheme, key_bits)
        self.ctx.send(self.peer, _KEY_TAG, self.public_key.to_dict())
        self.peer_key: HEPublicKey = public_key_from_dict(scheme, self.ctx.recv(self.peer, _KEY_TAG, self.timeout))

    # -- offline phase -----------------------------------------------------------------------------
    def prepare(self, *, mul: int = 0, matmul: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (),
                and_words: int = 0, dabits: int = 0, trunc: dict[int, int] | None = None) -> None:
        """Make tuples ahead of the online phase: `mul` elements of elementwise triples, one matrix
        triple per (shape_a, shape_b), `and_words` boolean words, `dabits` daBits, and per shift
        (usually the session's fractional bits) a number of truncation pairs."""
        if mul:
            self.pools["mul"].add(*self._elementwise(mul))
        for shape_a, shape_b in matmul:
            self.pools[("matmul", tuple(shape_a), tuple(shape_b))].add(*self._matrix(shape_a, shape_b))
        for shift, count in (trunc or {}).items():
            self.pools[("trunc", shift)].add(*self._truncation(count, shift))
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
        a, b, c = pool.parts.pop(0) if pool.parts else self._matrix(shape_a, shape_b)
        shape_c = (shape_a[0],) + tuple(shape_b[1:])
        return Tuple(a.reshape(shape_a), b.reshape(shape_b), lambda: c.reshape(shape_c))

    def and_words(self, n: int) -> Tuple:
        a, b, c = self._draw("and", n, self._and_words)
        return Tuple(a, b, lambda: c)

    def dabits(self, n: int) -> Tuple:
        bits, arithmetic = self._draw("dabits", n, self._dabits)
        return Tuple(bits, arithmetic, lambda: arithmetic)

    def trunc(self, n: int, shift: int) -> Tuple:
        r, top, low = self._draw(("trunc", shift), n, lambda k: self._truncation(k, shift))
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
        """n elementwise triples from OT (Gilboa's product, ot.gilboa_send/receive): each party's a_i
        chooses, bit by bit, between s and s + b_j offered by the peer. 128 correlated OTs per triple."""
        a, b = random_ring((n,)), random_ring((n,))
        cross = self._cross_terms(a, b[:, None])
        return [a, b, a * b + cross[:, 0]]

    def _cross_terms(self, chooser: np.ndarray, offered: np.ndarray) -> np.ndarray:
        """This party's share of chooser_0 ⊗ offered_1 + chooser_1 ⊗ offered_0 (rows: chooser's
        elements, (p,); columns: what each is multiplied with, (p, L)), both Gilboa products in turn."""
        share = np.zeros(offered.shape, np.uint64)
        for first_chooses in (True, False):  # both parties run them in this order
            if first_chooses == self.is_first:
                share += gilboa_receive(self.ot, chooser, offered.shape[1])
            else:
                share += gilboa_send(self.ot, offered)
        return share

    def _matrix(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> list[np.ndarray]:
        """One matrix triple a @ b = c, by OT (default) or HE (`matrix="he"`)."""
        if self.matrix == "he":
            return self._arithmetic(shape_a, shape_b)
        a, b = random_ring(shape_a), random_ring(shape_b)
        b_matrix = b if b.ndim == 2 else b[:, None]
        (m, k), n = a.shape, b_matrix.shape[1]
        # choose with the bits of the operand whose elements times 64 OTs cost less: each OT sends a
        # 16-byte IKNP row plus ~4.5 bytes per element of the other operand's matching row or column
        if k * n * (16 + 4.5 * m) <= m * k * (16 + 4.5 * n):  # right operand chooses: b[k', l] · a[:, k']
            offered = np.repeat(a.T[:, None, :], n, axis=1).reshape(k * n, m)
            cross = self._cross_terms(b_matrix.ravel(), offered).reshape(k, n, m).sum(axis=0, dtype=np.uint64).T
        else:  # left operand chooses: a[i, k'] · b[k', :]
            offered = np.tile(b_matrix, (m, 1))
            cross = self._cross_terms(a.ravel(), offered).reshape(m, k, n).sum(axis=1, dtype=np.uint64)
        c = np.matmul(a, b_matrix) + cross
        return [a, b, c.reshape((m,) + tuple(shape_b[1:]))]

    def _truncation(self, n: int, shift: int) -> list[np.ndarray]:
        return _in_chunks(lambda k: self._trunc_pairs(k, shift), n, 1 << 14)

    def _trunc_pairs(self, n: int, shift: int) -> list[np.ndarray]:
        """n truncation pairs from 64 random shared bits each: r = r_0 ⊕ r_1 for each party's uniform
        r_i, so bit k of r is r_0k + r_1k − 2·r_0k·r_1k, linear in shares of the product, which one
        correlated OT gives (the first party chooses with r_0k, the second offers r_1k). Then r, its
        top bit and (r mod 2^63) >> shift are sums of the bits' shares: 64 OTs per pair, no rounds
        of AND gates."""
        r = random_ring((n,))
        bits = np.unpackbits(r.astype("<u8").view(np.uint8).reshape(n, 8), axis=1, bitorder="little")
        if self.is_first:
            product = self.ot.correlated_receive(bits.ravel().astype(bool), 1).reshape(n, 64)
        else:
            product = np.uint64(0) - self.ot.correlated_send(bits.reshape(-1, 1).astype(np.uint64)).reshape(n, 64)
        shared = bits.astype(np.uint64) - np.uint64(2) * product  # additive shares of r's bits
        weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
        low = (shared[:, shift:63] * (weights[:63 - shift])).sum(axis=1, dtype=np.uint64)
        return [(shared * weights).sum(axis=1, dtype=np.uint64), shared[:, 63].copy(), low]

    def _dabits(self, n: int) -> list[np.ndarray]:
        bits = random_ring((n,)) & _ONE
        if self.is_first:  # OT receiver, choosing with its bits
            got = self.ot.receive(bits.astype(bool), 8).view(np.uint64).ravel()
            return [bits, bits - np.uint64(2) * got]
        s = random_ring((n,))
        self.ot.send(s.view(np.uint8).reshape(n, 8), (s + bits).view(np.uint8).reshape(n, 8))
        return [bits, bits + np.uint64(2) * s]
