"""hetero_lr's exact residual (`taylor_point: exact`): d = σ(z) − y on secret shares, its products under HE.

Why: additive HE cannot evaluate the sigmoid on the hosts' encrypted scores, so the other Taylor points
linearise it, which biases the weights when the hosts carry much of the signal on imbalanced data. The
parties' partial scores u_p = X_p w_p already are additive shares of z = Σ_p u_p, so the guest and the
FIRST host (h1) run the MPC engine's sigmoid on them, dealer-free (`mpc.two_party`, tuples by OT), and
come out with ring shares d_g + d_1 = σ(z) − y (mod 2^64, fixed point with `MPC_FRAC_BITS`). Per batch:

  * every further host j splits its u_j into two uniform ring shares, one to the guest, one to h1
    (SCORE_SHARE); each share alone is uniform;
  * guest and h1 compute shares of p = σ(z) (MPC messages: openings of values masked by tuple
    shares only); the guest subtracts its label from its share: d_g; h1's share is d_1;
  * the guest sends [[d_g]] under its key to every host (RESIDUAL_SHARE); h1 sends [[d_1]] under its own
    key to the guest (HOST_SHARE) and d_1 in the clear to the other hosts (HOST_SHARE_PLAIN: alone a
    uniform ring element);
  * host h forms [[d_g + d_1]] = [[d + k·2^64]] (k ∈ {0, 1} per row) and its masked X_hᵀ[[d + k·2^64]];
    the guest decrypts the masked integer (GRADIENT); the host removes its mask and reduces mod 2^64:
    X_h is integer fixed point, so X_h·k·2^64 vanishes and what is left is X_hᵀd exactly, read signed;
  * the guest computes X_gᵀ[[d_1]] under h1's key, masked; h1 decrypts it (GUEST_PART); the guest adds
    its local X_gᵀd_g and reduces mod 2^64.

With an arbiter, [[·]] are under the arbiter's key and it decrypts every masked product. No party ever
holds both shares of anything; z, p and d are never in anyone's clear. Gradients are read with
`FEATURE_FRAC_BITS` + `MPC_FRAC_BITS` fractional bits, so |Xᵀd| must stay below 2^(63 − 30): refused
(`_features`) unless a batch's rows times the largest |feature| stay below 2^28.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...crypto.he import EncryptedArray
from ...crypto.he_scheme import HEPrivateKey, HEPublicKey
from ...mpc import DEFAULT_FRAC_BITS, FixedPoint64, MPCSession, SharedTensor
from ...mpc import functions as F
from ...mpc.fixed import random_ring, signed, wrapping
from .hetero_kernel import multi_exp
from .hetero_messages import (
    GRADIENT,
    GRADIENT_PLAIN,
    GUEST_PART,
    GUEST_PART_PLAIN,
    HOST_SHARE,
    HOST_SHARE_PLAIN,
    RESIDUAL_SHARE,
    SCORE_SHARE,
)
from .hetero_protocol import FEATURE_FRAC_BITS, _ints, decrypt_for, decrypt_masked_ints, mask
from .ss_tuples import add_demand, demand

MPC_FRAC_BITS = DEFAULT_FRAC_BITS  # fractional bits of the ring shares of z, p and d
SIGMOID = "minimax"  # the engine's sigmoid: max abs error 3.5e-4
RING = 1 << 64
_FEATURE_LIMIT = float(1 << 28)  # rows × max |feature| per batch: |Xᵀd|·2^30 stays far below 2^63


def _features(X: np.ndarray, feature_frac_bits: int, party: str) -> np.ndarray:
    """X as integers round(X·2^feature_frac_bits) (int64), refused where Xᵀd could leave the signed ring."""
    largest = float(np.max(np.abs(X), initial=0.0))
    if not np.isfinite(largest) or largest * len(X) >= _FEATURE_LIMIT:
        raise OverflowError(f"party {party!r}: a batch's features are too large for the exact residual's 64-bit "
                            "ring (rows × max |feature| must stay below 2^28); standardise the features")
    return np.rint(np.ldexp(X, feature_frac_bits)).astype(np.int64)


def _to_ring(ints: Any) -> np.ndarray:
    """Python integers (any sign or size) mod 2^64, as uint64."""
    flat = np.asarray(ints, dtype=object)
    return np.array([int(v) % RING for v in flat.flat], dtype=np.uint64).reshape(flat.shape)


def _ring_share(values: Any, shape: tuple[int, ...], peer: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != shape or array.dtype != np.uint64:
        raise ValueError(f"party {peer!r} sent a malformed ring share ({array.dtype}{array.shape}, expected "
                         f"uint64{shape})")
    return array


def encrypt_ring(key: HEPublicKey | HEPrivateKey, share: np.ndarray) -> EncryptedArray:
    """[[share]] of ring elements as the non-negative integers 0 … 2^64 − 1 (public bound 2^64 − 1)."""
    public = getattr(key, "public_key", key)
    ints = np.asarray(share, dtype=np.uint64).astype(object)
    return EncryptedArray(public, key.encrypt(ints), 0, RING - 1)


def ring_array(data: Any, key: HEPublicKey, shape: tuple[int, ...], peer: str) -> EncryptedArray:
    """A received [[ring share]]: its bound is the public 2^64 − 1 whatever the sender wrote."""
    enc = EncryptedArray.from_wire(data, key)
    if enc.shape != shape:
        raise ValueError(f"party {peer!r} sent an encrypted share of shape {enc.shape}, expected {shape}")
    return EncryptedArray(key, enc.ciphertexts, 0, RING - 1)


def add_ring_plain(enc: EncryptedArray, share: np.ndarray) -> EncryptedArray:
    """[[a + b]] for [[a]] and plaintext ring elements b: an integer below 2^65 (a + b mod 2^64, plus 2^64 or not)."""
    key = enc.public_key
    ints = np.asarray(share, dtype=np.uint64).astype(object)
    return EncryptedArray(key, key.add_plain(enc.ciphertexts, ints), 0, enc.bound + RING - 1)


def ring_xt_dot(X: np.ndarray, enc: EncryptedArray) -> EncryptedArray:
    """[[Xᵀ D]] for integer X (B, d) and encrypted integers D (B, K), exactly: (X − s)ᵀ[[D]] + s ⊗ [[Σ D]] with
    s the column minima, so that the bucket multi-exponentiation sees non-negative exponents only."""
    key, shift = enc.public_key, X.min(axis=0)
    shifted = X - shift
    out = enc.sum(axis=0)[None, :].mul(np.broadcast_to(shift[:, None].astype(object), (X.shape[1], enc.shape[1])))
    norm = int(np.asarray(shifted.sum(axis=0), dtype=object).max(initial=0))
    bound = out.bound + enc.bound * norm
    if bound > key.max_plaintext:
        raise OverflowError(f"Xᵀ[[d]] needs {bound.bit_length()}-bit plaintexts; the {key.scheme} key allows "
                            f"{key.max_plaintext.bit_length()}: use a larger key_bits")
    products = np.stack([multi_exp(enc.ciphertexts[:, k], shifted, key.ciphertext_modulus)
                         for k in range(enc.shape[1])], axis=1)
    return EncryptedArray(key, key.add(out.ciphertexts, products), 0, bound)


def decode_ring(ring: np.ndarray, frac_bits: int) -> np.ndarray:
    return np.ldexp(signed(ring).astype(np.float64), -frac_bits)


class SharedSigmoid:
    """The guest's or first host's half of the two-party sigmoid: a dealer-free MPC session between them,
    with each epoch's tuples made ahead of its batches (counted by a dry run, as `ss_lr` does)."""

    def __init__(self, ctx: Any, guest: str, first_host: str) -> None:
        self.mpc = MPCSession(ctx, triples="ot", parties=[guest, first_host], frac_bits=MPC_FRAC_BITS)
        F.sigmoid_plan(SIGMOID)  # fitted once per process: not an epoch's cost
        self._demand: dict[tuple[int, int], dict[str, Any]] = {}

    def prepare(self, batch_sizes: list[int], classes: int) -> None:
        """Make the tuples of an epoch's sigmoids (one per batch) in one offline phase."""
        total: dict[str, Any] = {"mul": 0, "matmul": [], "and_words": 0, "dabits": 0, "trunc": {}}
        for size in batch_sizes:
            if (size, classes) not in self._demand:
                self._demand[size, classes] = demand(self.mpc, lambda z: F.sigmoid(z, SIGMOID), (size, classes))
            total = add_demand(total, self._demand[size, classes])
        self.mpc.triples.prepare(**total)

    @wrapping
    def probability(self, share: np.ndarray) -> np.ndarray:
        """This party's ring share of σ(z) from its ring share of z (both with MPC_FRAC_BITS)."""
        p = F.sigmoid(SharedTensor(self.mpc, share, MPC_FRAC_BITS), SIGMOID)
        if p.frac != MPC_FRAC_BITS:
            p = p.rescaled()
        return p.share

    def close(self) -> None:
        self.mpc.close()


class ExactResidual:
    """One batch of the exact-residual exchange for one party (see the module docstring); the caller is
    `hetero_protocol.BatchProtocol`, whose keys, parties and masking helpers it uses."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.first = protocol.hosts[0]
        self.sigmoid = None
        if protocol.ctx.party in (protocol.guest, self.first):
            self.sigmoid = SharedSigmoid(protocol.ctx, protocol.guest, self.first)

    def encryptions_per_row(self) -> dict[str, int]:
        p = self.protocol
        me = p.ctx.party
        return {p.arbiter or me: 1} if me in (p.guest, self.first) else {}

    def prepare(self, batch_sizes: list[int], classes: int) -> None:
        if self.sigmoid is not None:
            self.sigmoid.prepare(batch_sizes, classes)

    def close(self) -> None:
        if self.sigmoid is not None:
            self.sigmoid.close()

    @wrapping
    def _z_share(self, U: np.ndarray) -> np.ndarray:
        """The guest's or h1's ring share of z: its own scores plus the shares the further hosts sent."""
        p = self.protocol
        z = self.sigmoid.mpc.fxp.encode(U)
        for host, share in SCORE_SHARE.gather(p.ctx, p.hosts[1:]).items():
            z = z + _ring_share(share, U.shape, host)
        return z

    @wrapping
    def guest_gradient(self, X: np.ndarray, U: np.ndarray, Y: np.ndarray) -> np.ndarray:
        p, ctx = self.protocol, self.protocol.ctx
        fxp = self.sigmoid.mpc.fxp
        d_g = self.sigmoid.probability(self._z_share(U)) - fxp.encode(Y)
        own = p.keys.shared if p.arbiter is not None else p.keys.own[1]
        RESIDUAL_SHARE.broadcast(ctx, encrypt_ring(own, d_g).to_wire(), p.hosts)
        p.prefetch(U.shape[1])
        Xint = _features(X, FEATURE_FRAC_BITS, ctx.party)
        first_key = p.keys.shared if p.arbiter is not None else p.keys.peers[self.first]
        product = ring_xt_dot(Xint, ring_array(HOST_SHARE.recv(ctx, self.first), first_key, U.shape, self.first))
        if p.arbiter is not None:
            remote = decrypt_masked_ints(ctx, p.arbiter, product)
        else:
            masked, r = mask(product)
            GUEST_PART.send(ctx, self.first, masked.to_wire())
            for host in p.hosts:
                decrypt_for(ctx, host, p.keys.own[1])
            remote = _ints(GUEST_PART_PLAIN.recv(ctx, self.first), r.shape, self.first) - r
        local = Xint.view(np.uint64).T @ d_g
        return decode_ring(local + _to_ring(remote), FEATURE_FRAC_BITS + MPC_FRAC_BITS)

    @wrapping
    def host_gradient(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        p, ctx = self.protocol, self.protocol.ctx
        if ctx.party == self.first:
            d_1 = self.sigmoid.probability(self._z_share(U))
            own = p.keys.shared if p.arbiter is not None else p.keys.own[1]
            HOST_SHARE.send(ctx, p.guest, encrypt_ring(own, d_1).to_wire())
            HOST_SHARE_PLAIN.broadcast(ctx, d_1, p.others)
        else:
            encoded = FixedPoint64(MPC_FRAC_BITS).encode(U)
            r = random_ring(U.shape)
            SCORE_SHARE.send(ctx, p.guest, encoded - r)
            SCORE_SHARE.send(ctx, self.first, r)
            d_1 = _ring_share(HOST_SHARE_PLAIN.recv(ctx, self.first), U.shape, self.first)
        p.prefetch(U.shape[1])
        Xint = _features(X, FEATURE_FRAC_BITS, ctx.party)
        d = add_ring_plain(ring_array(RESIDUAL_SHARE.recv(ctx, p.guest), p._guest_key(), U.shape, p.guest), d_1)
        product = ring_xt_dot(Xint, d)
        if p.arbiter is not None:
            ints = decrypt_masked_ints(ctx, p.arbiter, product)
        else:
            masked, r = mask(product)
            GRADIENT.send(ctx, p.guest, masked.to_wire())
            if ctx.party == self.first:
                enc = EncryptedArray.from_wire(GUEST_PART.recv(ctx, p.guest), p.keys.own[0])
                GUEST_PART_PLAIN.send(ctx, p.guest, p.keys.own[1].decrypt(enc.ciphertexts))
            ints = _ints(GRADIENT_PLAIN.recv(ctx, p.guest), r.shape, p.guest) - r
        return decode_ring(_to_ring(ints), FEATURE_FRAC_BITS + MPC_FRAC_BITS)
