"""Fixed-point encoding of reals as integers: x ↦ round(x·2^frac_bits), round half to even.

Why one module: additively homomorphic schemes (`he.py`, hetero LR's protocol) and ring-based secret
sharing (`sharing.py`) both compute on integers, and both must round and refuse NaN/infinity the same
way. This encoding maps to unbounded Python integers; whoever stores them in a bounded space adds its
own range check: `he.EncryptedArray` tracks bounds below `max_plaintext`, `sharing.FixedPointRing`
reduces modulo 2^k. (The MPC engine's `mpc.fixed.FixedPoint64` is the same encoding written directly
in numpy uint64 for speed.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_to_int = np.frompyfunc(int, 1, 1)


@dataclass(frozen=True)
class FixedPoint:
    """Signed fixed-point encoding x ↦ round(x·2^frac_bits); decoding is exact division by 2^frac_bits."""

    frac_bits: int

    def __post_init__(self) -> None:
        if type(self.frac_bits) is not int or self.frac_bits < 0:
            raise ValueError(f"frac_bits must be a non-negative int, not {self.frac_bits!r}")

    def encode(self, values: Any) -> np.ndarray:
        """Finite floats to an object array of Python ints; error at most 2^-(frac_bits+1) per value."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot encode NaN or infinity as a fixed-point number")
        with np.errstate(over="ignore"):
            scaled = np.rint(np.ldexp(x, self.frac_bits))
        if not np.all(np.isfinite(scaled)):
            raise OverflowError(f"value too large for {self.frac_bits} fractional bits in a float64")
        return np.asarray(_to_int(scaled), dtype=object)

    def decode(self, ints: Any) -> np.ndarray:
        """Integers back to float64 (correctly rounded)."""
        arr = np.asarray(ints, dtype=object)
        scale = 1 << self.frac_bits
        return np.array([int(v) / scale for v in arr.flat], dtype=np.float64).reshape(arr.shape)
