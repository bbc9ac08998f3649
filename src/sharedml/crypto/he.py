"""Fixed-point numbers, overflow tracking and packing on top of any additively homomorphic scheme.

Why: the schemes (`sharedml.crypto.paillier`, `sharedml.crypto.ou`) work on signed integers of
bounded size and silently wrap beyond `max_plaintext`. Models work on floats. This layer, written
once against the `HEPublicKey` / `HEPrivateKey` protocol of `sharedml.crypto.he_scheme`, encodes
floats as fixed-point integers, carries a public bound on the magnitude of every plaintext through
each operation, and refuses (`OverflowError`, before computing) any operation whose result could
exceed `max_plaintext`, instead of returning garbage after decryption.

* `fixed_point.FixedPoint(frac_bits)` encodes: x ↦ round(x·2^frac_bits) (round half to even), NaN/inf refused.
* `EncryptedArray`: ciphertexts + `frac_bits` + `bound` (|plaintext integer| ≤ bound for every
  element). `+` and `-` (with another EncryptedArray or floats), `*` (floats or ints; a float
  multiplier is encoded with its own fractional bits, which add up), `sum`, `@` (plaintext matrix on
  either side), `rerandomize`, `decrypt`, and a wire form for `sharedml.net.serialization`.
* `Packer` / `PackedArray`: several small integers per plaintext, for sending and summing fewer
  ciphertexts (SecureBoost histograms, LR gradients).

Packing layout: with slot width s bits and k slots, values v_0 … v_(k-1) (signed, |v_i| ≤ V) become
the single plaintext P = Σ v_i·2^(i·s). Adding packed plaintexts adds slot by slot; a sum of up to
N of them has |slot| ≤ N·V < 2^(s-1) (s = bitlen(N·V) + 1), so each slot is recovered exactly by
reading P in balanced base 2^s (lowest slot first: the low s bits as a signed number, subtract,
shift). |P| < 2^(k·s-1) ≤ max_plaintext, so the total never wraps either. Negative slots simply
borrow from the slot above, which the balanced reading undoes; unlike offset-shifted (non-negative)
slots, unpacking therefore needs no per-element count of summed terms, only the public bound N.

Security notes (semi-honest parties): `shape`, `frac_bits`, `bound` (and for packed arrays the
number of summed terms) travel in clear beside the ciphertexts. The bound is public by design: pass
`max_abs` to `encrypt` to make it a declared range; otherwise it is derived from the data (rounded
up to a power of two, revealing the order of magnitude of the largest value). A bound received from
a peer is trusted as far as the peer is (semi-honest model); it only protects against honest
mistakes. Results of operations are not re-randomised: call `rerandomize()` before sending a result
to a party that saw the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharedml.crypto.fixed_point import FixedPoint
from sharedml.crypto.he_scheme import HEPrivateKey, HEPublicKey

__all__ = ["DEFAULT_FRAC_BITS", "EncryptedArray", "PackedArray", "Packer", "encrypt"]

DEFAULT_FRAC_BITS = 32
_to_int = np.frompyfunc(int, 1, 1)


def _is_integer_array(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "iub" or (arr.dtype.kind == "O" and all(hasattr(v, "__index__") for v in arr.flat))


def _int_array(values: Any) -> np.ndarray:
    """Integers (int dtypes, or object arrays of ints) as an object array of Python ints; refuses anything else."""
    arr = np.asarray(values)
    if not _is_integer_array(arr):
        raise TypeError(f"expected integers, got an array of {arr.dtype}")
    return np.asarray(_to_int(arr), dtype=object)


def _max_abs(ints: np.ndarray) -> int:
    return max((abs(int(v)) for v in ints.flat), default=0)


def _magnitude(x: int) -> str:
    """Readable size of a bound: exact when short, else as a power of two."""
    return f"{x} (2^{math.log2(x):.1f})" if 0 < x < 2**64 else f"2^{math.log2(x):.1f}" if x else "0"


def _same_key(a: HEPublicKey, b: HEPublicKey) -> bool:
    return a is b or a.to_dict() == b.to_dict()


def _encode_multiplier(k: Any, frac_bits: int) -> tuple[np.ndarray, int]:
    """Integer multipliers stay exact (0 fractional bits); floats get `frac_bits`."""
    if isinstance(k, EncryptedArray | PackedArray):
        raise TypeError("an additively homomorphic scheme cannot multiply two ciphertexts")
    arr = np.asarray(k)
    if _is_integer_array(arr):
        return _int_array(arr), 0
    return FixedPoint(frac_bits).encode(arr), frac_bits


class EncryptedArray:
    """Encrypted fixed-point array: plaintext integers m with |m| ≤ `bound`, meaning m / 2^`frac_bits`."""

    __array_ufunc__ = None  # make `ndarray + EncryptedArray` call our reflected operators

    def __init__(self, public_key: HEPublicKey, ciphertexts: np.ndarray, frac_bits: int, bound: int) -> None:
        if type(frac_bits) is not int or frac_bits < 0:
            raise ValueError(f"frac_bits must be a non-negative int, not {frac_bits!r}")
        if type(bound) is not int or not 0 <= bound <= public_key.max_plaintext:
            raise ValueError(f"bound must be an int in [0, max_plaintext], not {bound!r}"[:200])
        self.public_key = public_key
        self.ciphertexts = np.asarray(ciphertexts, dtype=object)
        self.frac_bits = frac_bits
        self.bound = bound

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ciphertexts.shape

    @property
    def ndim(self) -> int:
        return self.ciphertexts.ndim

    @property
    def size(self) -> int:
        return self.ciphertexts.size

    @property
    def T(self) -> EncryptedArray:  # noqa: N802  (numpy's name)
        return self._new(self.ciphertexts.T, self.frac_bits, self.bound)

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __getitem__(self, index: Any) -> EncryptedArray:
        return self._new(np.asarray(self.ciphertexts[index], dtype=object), self.frac_bits, self.bound)

    def __repr__(self) -> str:
        return (
            f"EncryptedArray({self.public_key.scheme}, shape={self.shape}, frac_bits={self.frac_bits}, "
            f"bound={_magnitude(self.bound)})"
        )

    def _new(self, ciphertexts: np.ndarray, frac_bits: int, bound: int) -> EncryptedArray:
        return EncryptedArray(self.public_key, ciphertexts, frac_bits, bound)

    def _check(self, bound: int, op: str) -> int:
        limit = self.public_key.max_plaintext
        if bound > limit:
            raise OverflowError(
                f"{op} could overflow: the result's plaintext bound {_magnitude(bound)} exceeds the "
                f"{self.public_key.scheme} max_plaintext {_magnitude(limit)}; use smaller values, fewer terms, "
                "fewer fractional bits or a larger key"
            )
        return bound

    def _scaled(self, frac_bits: int) -> np.ndarray:
        """Ciphertexts of the same values at `frac_bits` ≥ self.frac_bits (the caller checked the bound)."""
        shift = frac_bits - self.frac_bits
        if not shift:
            return self.ciphertexts
        return self.public_key.mul_plain(self.ciphertexts, np.array(1 << shift, dtype=object))

    def __add__(self, other: Any) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            if not _same_key(self.public_key, other.public_key):
                raise ValueError("cannot add arrays encrypted under different keys")
            frac = max(self.frac_bits, other.frac_bits)
            bound = (self.bound << (frac - self.frac_bits)) + (other.bound << (frac - other.frac_bits))
            bound = self._check(bound, "addition")
            return self._new(self.public_key.add(self._scaled(frac), other._scaled(frac)), frac, bound)
        plain = FixedPoint(self.frac_bits).encode(other)
        bound = self._check(self.bound + _max_abs(plain), "adding a plaintext")
        return self._new(self.public_key.add_plain(self.ciphertexts, plain), self.frac_bits, bound)

    __radd__ = __add__

    def __neg__(self) -> EncryptedArray:
        return self._new(self.public_key.mul_plain(self.ciphertexts, np.array(-1)), self.frac_bits, self.bound)

    def __sub__(self, other: Any) -> EncryptedArray:
        return self + (-other if isinstance(other, EncryptedArray) else -np.asarray(other, dtype=np.float64))

    def __rsub__(self, other: Any) -> EncryptedArray:
        return -self + other

    def mul(self, k: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> EncryptedArray:
        """Elementwise product with plaintext `k` (broadcast); float multipliers get `frac_bits` fractional bits."""
        ints, k_frac = _encode_multiplier(k, frac_bits)
        bound = self._check(self.bound * _max_abs(ints), "multiplication by a plaintext")
        return self._new(self.public_key.mul_plain(self.ciphertexts, ints), self.frac_bits + k_frac, bound)

    def __mul__(self, k: Any) -> EncryptedArray:
        return self.mul(k)

    __rmul__ = __mul__

    def sum(self, axis: int | None = None) -> EncryptedArray:
        count = self.size if axis is None else self.shape[axis]
        bound = self._check(self.bound * count, f"sum of {count} elements")
        return self._new(self.public_key.sum(self.ciphertexts, axis), self.frac_bits, bound)

    def matmul(self, matrix: Any, frac_bits: int = DEFAULT_FRAC_BITS) -> EncryptedArray:
        """self @ plaintext `matrix` (1-D or 2-D); float entries get `frac_bits` fractional bits."""
        ints, m_frac = _encode_multiplier(matrix, frac_bits)
        if ints.ndim == 0:
            raise ValueError("matmul needs a 1-D or 2-D matrix, not a scalar")
        column_norms = np.asarray(np.abs(ints).sum(axis=0), dtype=object)
        bound = self._check(self.bound * max(column_norms.ravel().tolist(), default=0), "matrix product")
        return self._new(self.public_key.dot(self.ciphertexts, ints), self.frac_bits + m_frac, bound)

    def __matmul__(self, matrix: Any) -> EncryptedArray:
        return self.matmul(matrix)

    def __rmatmul__(self, matrix: Any) -> EncryptedArray:
        transposed = np.asarray(matrix).T
        return self.matmul(transposed) if self.ndim == 1 else self.T.matmul(transposed).T

    def rerandomize(self) -> EncryptedArray:
        """Fresh randomness, same plaintexts: unlinkable to the inputs of the operations that made it."""
        return self._new(self.public_key.rerandomize(self.ciphertexts), self.frac_bits, self.bound)

    def decrypt(self, private_key: HEPrivateKey) -> np.ndarray:
        """Float64 array of the same shape."""
        if not _same_key(private_key.public_key, self.public_key):
            raise ValueError("this private key does not belong to the array's public key")
        return FixedPoint(self.frac_bits).decode(private_key.decrypt(self.ciphertexts))

    def to_wire(self) -> dict[str, Any]:
        """A dict `sharedml.net.serialization` can encode: ciphertexts as one fixed-width bytes blob."""
        return {
            "scheme": self.public_key.scheme,
            "shape": list(self.shape),
            "frac_bits": self.frac_bits,
            "bound": self.bound,
            "ciphertexts": self.public_key.ciphertexts_to_bytes(self.ciphertexts),
        }

    @classmethod
    def from_wire(cls, data: Any, public_key: HEPublicKey) -> EncryptedArray:
        """Inverse of `to_wire`; raises ValueError on anything malformed."""
        shape, blob = _wire_fields(data, public_key, ("frac_bits", "bound"))
        return cls(public_key, public_key.ciphertexts_from_bytes(blob, shape), data["frac_bits"], data["bound"])


def _wire_fields(data: Any, public_key: HEPublicKey, ints: tuple[str, ...]) -> tuple[tuple[int, ...], bytes]:
    if not isinstance(data, dict) or data.get("scheme") != public_key.scheme:
        raise ValueError(f"not an array encrypted with {public_key.scheme}")
    shape, blob = data.get("shape"), data.get("ciphertexts")
    if not isinstance(shape, list | tuple) or any(type(d) is not int or d < 0 for d in shape):
        raise ValueError("malformed shape")
    if not isinstance(blob, bytes | bytearray | memoryview) or any(type(data.get(name)) is not int for name in ints):
        raise ValueError(f"encrypted array needs bytes ciphertexts and ints {', '.join(ints)}")
    return tuple(shape), blob


def encrypt(
    key: HEPublicKey | HEPrivateKey, values: Any, frac_bits: int = DEFAULT_FRAC_BITS, max_abs: float | None = None
) -> EncryptedArray:
    """Encrypt floats as fixed-point numbers, with a private key (faster, CRT) or a public key.

    `max_abs` declares a public bound on |value|, which becomes the array's `bound`; without it the
    bound is the largest encoded magnitude rounded up to 2^b - 1 (revealing b to whoever sees it).
    """
    public_key: HEPublicKey = getattr(key, "public_key", key)
    fixed = FixedPoint(frac_bits)
    ints = fixed.encode(values)
    largest = _max_abs(ints)
    if max_abs is None:
        bound = (1 << largest.bit_length()) - 1
    else:
        bound = _max_abs(fixed.encode(max_abs))
        if largest > bound:
            raise ValueError(f"values exceed the declared max_abs {max_abs}")
    if bound > public_key.max_plaintext:
        raise OverflowError(
            f"encrypting values up to {_magnitude(bound)} (with {frac_bits} fractional bits) exceeds the "
            f"{public_key.scheme} max_plaintext {_magnitude(public_key.max_plaintext)}"
        )
    return EncryptedArray(public_key, key.encrypt(ints), frac_bits, bound)


@dataclass(frozen=True)
class Packer:
    """`slots` signed integers |v| ≤ `value_bound` per plaintext, `slot_bits` each, with headroom for
    sums of up to `max_terms` packed plaintexts (layout in the module docstring)."""

    slot_bits: int
    slots: int
    value_bound: int
    max_terms: int

    def __post_init__(self) -> None:
        if min(self.slot_bits, self.slots, self.max_terms) < 1 or self.value_bound < 0:
            raise ValueError("slot_bits, slots and max_terms must be positive, value_bound non-negative")
        needed = (self.max_terms * self.value_bound).bit_length() + 1
        if self.slot_bits < needed:
            raise ValueError(f"sums of {self.max_terms} values up to {self.value_bound} need {needed}-bit slots")

    @classmethod
    def for_key(cls, public_key: HEPublicKey, value_bound: int, max_terms: int) -> Packer:
        """As many slots as fit in the key's plaintexts; ValueError if not even one does."""
        slot_bits = (max_terms * value_bound).bit_length() + 1
        slots = public_key.max_plaintext.bit_length() // slot_bits
        if slots < 1:
            raise ValueError(
                f"a {slot_bits}-bit slot (sums of {max_terms} values up to {_magnitude(value_bound)}) does not fit "
                f"in {public_key.scheme} plaintexts of {public_key.max_plaintext.bit_length()} bits"
            )
        return cls(slot_bits, slots, value_bound, max_terms)

    def fits(self, public_key: HEPublicKey) -> bool:
        return self.slot_bits * self.slots <= public_key.max_plaintext.bit_length()

    def pack(self, values: Any) -> np.ndarray:
        """Integers of shape (..., j), j ≤ slots, to packed integers of shape (...)."""
        ints = _int_array(values)
        if ints.ndim == 0 or ints.shape[-1] > self.slots:
            raise ValueError(f"pack takes arrays of shape (..., j) with j <= {self.slots}, not {ints.shape}")
        if _max_abs(ints) > self.value_bound:
            raise OverflowError(f"a value exceeds the packer's value_bound {self.value_bound}")
        packed = np.zeros(ints.shape[:-1], dtype=object)
        for i in range(ints.shape[-1]):
            packed = packed + ints[..., i] * (1 << (i * self.slot_bits))
        return np.asarray(packed, dtype=object)

    def unpack(self, packed: Any, terms: int) -> np.ndarray:
        """Packed integers (each a sum of at most `terms` packed plaintexts) of shape (...) to (..., slots)."""
        if terms > self.max_terms:
            raise OverflowError(
                f"these plaintexts sum {terms} packed values but the layout has headroom for {self.max_terms}"
            )
        packed = _int_array(packed)
        rest = packed.reshape(-1)
        full, half = 1 << self.slot_bits, 1 << (self.slot_bits - 1)
        out = []
        for _ in range(self.slots):
            low = rest & (full - 1)
            low = np.where(low >= half, low - full, low)
            out.append(low)
            rest = (rest - low) >> self.slot_bits
        if any(v != 0 for v in rest):
            raise OverflowError("packed plaintext exceeds the packing layout (overflow)")
        return np.stack(out, axis=-1).reshape(packed.shape + (self.slots,))

    def encrypt(self, key: HEPublicKey | HEPrivateKey, values: Any) -> PackedArray:
        """Pack integers of shape (..., j) and encrypt them (key owner's CRT path with a private key)."""
        public_key: HEPublicKey = getattr(key, "public_key", key)
        if not self.fits(public_key):
            raise ValueError(f"{self.slots} slots of {self.slot_bits} bits do not fit in this key's plaintexts")
        return PackedArray(self, public_key, key.encrypt(self.pack(values)), 1)


class PackedArray:
    """Encrypted packed plaintexts; `terms` is the public bound on packed vectors summed into each element."""

    def __init__(self, packer: Packer, public_key: HEPublicKey, ciphertexts: np.ndarray, terms: int) -> None:
        if type(terms) is not int or not 1 <= terms <= packer.max_terms:
            raise OverflowError(f"{terms} summed terms is outside the packing headroom 1..{packer.max_terms}")
        self.packer = packer
        self.public_key = public_key
        self.ciphertexts = np.asarray(ciphertexts, dtype=object)
        self.terms = terms

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ciphertexts.shape

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __getitem__(self, index: Any) -> PackedArray:
        return PackedArray(self.packer, self.public_key, np.asarray(self.ciphertexts[index], dtype=object), self.terms)

    def _check_terms(self, terms: int, op: str) -> int:
        if terms > self.packer.max_terms:
            raise OverflowError(
                f"{op} would sum {terms} packed values per slot; the packing has headroom for {self.packer.max_terms}"
            )
        return terms

    def __add__(self, other: PackedArray) -> PackedArray:
        if not isinstance(other, PackedArray):
            return NotImplemented
        if other.packer != self.packer or not _same_key(self.public_key, other.public_key):
            raise ValueError("cannot add packed arrays with different layouts or keys")
        terms = self._check_terms(self.terms + other.terms, "addition")
        ciphertexts = self.public_key.add(self.ciphertexts, other.ciphertexts)
        return PackedArray(self.packer, self.public_key, ciphertexts, terms)

    def sum(self, axis: int | None = None) -> PackedArray:
        count = self.ciphertexts.size if axis is None else self.shape[axis]
        terms = self._check_terms(self.terms * max(count, 1), f"a sum of {count} elements")
        return PackedArray(self.packer, self.public_key, self.public_key.sum(self.ciphertexts, axis), terms)

    def rerandomize(self) -> PackedArray:
        return PackedArray(self.packer, self.public_key, self.public_key.rerandomize(self.ciphertexts), self.terms)

    def decrypt(self, private_key: HEPrivateKey) -> np.ndarray:
        """Slot sums as Python ints, shape (..., slots)."""
        if not _same_key(private_key.public_key, self.public_key):
            raise ValueError("this private key does not belong to the array's public key")
        return self.packer.unpack(private_key.decrypt(self.ciphertexts), self.terms)

    def to_wire(self) -> dict[str, Any]:
        return {
            "scheme": self.public_key.scheme,
            "shape": list(self.shape),
            "terms": self.terms,
            "ciphertexts": self.public_key.ciphertexts_to_bytes(self.ciphertexts),
        }

    @classmethod
    def from_wire(cls, data: Any, public_key: HEPublicKey, packer: Packer) -> PackedArray:
        """Inverse of `to_wire` for an agreed `packer`; raises ValueError (OverflowError for too many terms)."""
        shape, blob = _wire_fields(data, public_key, ("terms",))
        return cls(packer, public_key, public_key.ciphertexts_from_bytes(blob, shape), data["terms"])
