"""Fixed-point numbers in the ring Z_2^64, the MPC engine's value space.

A real x is stored as round(x · 2^f) mod 2^64 in a uint64 array; the upper half of the ring is
negative. numpy's uint64 arithmetic wraps modulo 2^64, which is exactly the ring's arithmetic, so
shares are added and multiplied with plain numpy operators.

`f` (the fractional bits) defaults to 18, as in SecretFlow SPU's 64-bit field: resolution 3.8e-6 and
a range of ±2^(63-18) ≈ ±3.5e13 for stored values. A product of two stored values carries 2f
fractional bits until it is truncated, so products must stay below 2^(62-2f) ≈ 6.7e7 in magnitude
(see the truncation methods in tensor.py for where the bound comes from).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from ..crypto.prg import SeededStream

RING_BITS = 64
DEFAULT_FRAC_BITS = 18

# Ring arithmetic wraps by design; numpy warns when a 0-d (scalar) uint64 operation wraps, so the
# functions that compute on shares run under this.
wrapping = np.errstate(over="ignore")


def random_ring(shape: int | tuple[int, ...]) -> np.ndarray:
    """Uniform elements of Z_2^64 from a fresh CSPRNG stream (OS entropy, ChaCha20 expansion)."""
    return SeededStream(secrets.token_bytes(32), domain=b"sharedml.mpc.random").uint64(shape)


def signed(ring: np.ndarray) -> np.ndarray:
    """The two's-complement reading of ring elements: int64 in [-2^63, 2^63)."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64)


@dataclass(frozen=True)
class FixedPoint64:
    """Reals with `frac_bits` fractional bits as elements of Z_2^64 in uint64 arrays.

    The encoding is `crypto.fixed_point.FixedPoint`'s, round(x·2^f), read modulo 2^64. It is a class of
    its own, not that one plus a reduction, because shares are computed on with numpy's wrapping uint64
    arithmetic: encoding straight to uint64 keeps whole arrays vectorised, where `FixedPoint` makes
    Python integers (unbounded, for HE plaintexts) and `crypto.sharing.FixedPointRing` Python integers
    modulo a wider 2^k (secure sums)."""

    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self) -> None:
        if not 1 <= self.frac_bits <= 30:
            raise ValueError(f"frac_bits must be in [1, 30] so products fit the 64-bit ring, got {self.frac_bits}")

    def encode(self, values: np.ndarray | float, frac_bits: int | None = None) -> np.ndarray:
        """Finite reals → ring elements; refuses NaN, infinity and values that would wrap."""
        f = self.frac_bits if frac_bits is None else frac_bits
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot encode NaN or infinity as a fixed-point ring element")
        limit = float(1 << (RING_BITS - 2 - f))
        if x.size and np.max(np.abs(x)) >= limit:
            raise OverflowError(f"value {np.max(np.abs(x)):g} exceeds the fixed-point range ±{limit:g} "
                                f"({f} fractional bits)")
        return np.rint(np.ldexp(x, f)).astype(np.int64).view(np.uint64)

    def decode(self, ring: np.ndarray, frac_bits: int | None = None) -> np.ndarray:
        f = self.frac_bits if frac_bits is None else frac_bits
        return np.ldexp(signed(ring).astype(np.float64), -f)
