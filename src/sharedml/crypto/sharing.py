"""Additive secret sharing of fixed-point numbers over the ring Z_{2^k}.

A value x is encoded as round(x * 2^f) mod 2^k and split into n shares that are uniformly random
(from the OS CSPRNG) subject to summing to the encoding; any n-1 shares are independent of x.
The default ring is 2^128 with f = 32 fractional bits, wide enough that sums of squares of
real-world columns (e.g. amounts around 10^6 over millions of rows) cannot wrap. Elements are
Python ints held in numpy object arrays; this module is for aggregates of modest size. The
secret-shared tensors of the MPC engine use a uint64 ring instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .fixed_point import FixedPoint


@dataclass(frozen=True)
class FixedPointRing:
    """`FixedPoint` encodings reduced modulo 2^bits, as Python integers (rings wider than the MPC engine's
    uint64 one, for sums that must not wrap)."""

    bits: int = 128
    frac_bits: int = 32

    def __post_init__(self) -> None:
        if self.bits % 64 or self.bits < 64:
            raise ValueError("ring bits must be a positive multiple of 64")
        if not 0 <= self.frac_bits < self.bits - 2:
            raise ValueError("fractional bits must leave room for the integer part and the sign")

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    @property
    def max_abs(self) -> float:
        """Largest magnitude that encodes without wrapping (one sign bit and one bit of headroom)."""
        return float(1 << (self.bits - self.frac_bits - 2))

    def encode(self, values: np.ndarray | float) -> np.ndarray:
        """Encode finite floats as ring elements; raises instead of silently wrapping."""
        x = np.asarray(values, dtype=np.float64)
        if x.size and np.all(np.isfinite(x)) and np.max(np.abs(x)) >= self.max_abs:
            raise OverflowError(f"value {np.max(np.abs(x)):g} exceeds the ring's range ±{self.max_abs:g}")
        return FixedPoint(self.frac_bits).encode(x) % self.modulus

    def decode(self, elements: np.ndarray) -> np.ndarray:
        """Map ring elements back to floats (upper half of the ring is negative)."""
        modulus, half = self.modulus, self.modulus >> 1
        elements = np.asarray(elements, dtype=object)
        signed = np.empty(elements.shape, dtype=object)
        signed.flat[:] = [v - modulus if v >= half else v for v in (int(e) % modulus for e in elements.flat)]
        return FixedPoint(self.frac_bits).decode(signed)

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform ring elements from the OS CSPRNG."""
        count = int(np.prod(shape, dtype=np.int64))
        limbs = np.frombuffer(os.urandom(count * self.bits // 8), dtype="<u8").reshape(count, self.bits // 64)
        out = np.zeros(count, dtype=object)
        for i in range(limbs.shape[1]):
            out = out + (limbs[:, i].astype(object) << (64 * i))
        return out.reshape(shape)

    def share(self, elements: np.ndarray, n: int) -> list[np.ndarray]:
        """Split ring elements into n additive shares."""
        if n < 1:
            raise ValueError("need at least one share")
        e = np.asarray(elements, dtype=object)
        shares = [self.random(e.shape) for _ in range(n - 1)]
        last = e
        for s in shares:
            last = last - s
        return shares + [last % self.modulus]

    def reconstruct(self, shares: list[np.ndarray]) -> np.ndarray:
        total = np.zeros(np.shape(shares[0]), dtype=object)
        for s in shares:
            total = total + np.asarray(s, dtype=object)
        return total % self.modulus
