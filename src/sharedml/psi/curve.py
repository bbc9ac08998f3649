"""Commutative blinding on Curve25519: x ↦ X25519(k, x), with a fresh secret k per party and run.

X25519 clamps k to a multiple of the cofactor with a fixed top bit, and scalar multiplication on
the u-line commutes, so X25519(a, X25519(b, P)) == X25519(b, X25519(a, P)): the basis of ECDH-PSI.
Each point costs one call into OpenSSL (through `cryptography`); no library offers a batched form,
so the loop below is over C calls, about 3 µs of Python overhead against 25-50 µs of curve work.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .ids import POINT_BYTES


class BlindingError(ValueError):
    """A point that X25519 refuses (one of low order): only a faulty or malicious peer sends one."""


class Blinder:
    """One party's secret blinding key for one PSI run (never stored, never sent)."""

    def __init__(self) -> None:
        self._key = X25519PrivateKey.generate()

    def blind(self, points: np.ndarray) -> np.ndarray:
        """(m, 32) uint8 → (m, 32) uint8, each point multiplied by this party's secret scalar."""
        if points.ndim != 2 or points.shape[1] != POINT_BYTES or points.dtype != np.uint8:
            raise BlindingError(f"expected an (m, {POINT_BYTES}) uint8 array of points, got "
                                f"{points.dtype} {points.shape}")
        raw = np.ascontiguousarray(points).tobytes()
        exchange = self._key.exchange
        load = X25519PublicKey.from_public_bytes
        try:
            out = b"".join([exchange(load(raw[i:i + POINT_BYTES])) for i in range(0, len(raw), POINT_BYTES)])
        except ValueError as err:
            raise BlindingError("a point of low order was received; the peer is faulty or malicious") from err
        return np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES)
