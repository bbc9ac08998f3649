"""Okamoto–Uchiyama (OU) additively homomorphic encryption, implementing `sharedml.crypto.he_scheme`.

Scheme (Okamoto and Uchiyama, EUROCRYPT 1998). The secret key is two primes p, q with |p| = ceil(bits / 3)
and n = p²q of exactly `bits` bits; the public key is n and a random g in Z_n* whose image
g^(p-1) mod p² has order p; h = g^n mod n is derived from them. A plaintext m in Z_p encrypts to
c = g^m · h^r mod n and decrypts as m = L(c^(p-1) mod p²) / L(g^(p-1) mod p²) mod p with L(x) = (x - 1) / p:
raising to p - 1 modulo p² removes h, whose order there divides p - 1. Multiplying ciphertexts adds their
plaintexts; raising a ciphertext to k multiplies its plaintext by k. A 2048-bit OU ciphertext is 256
bytes, half a 2048-bit Paillier ciphertext (which lives modulo n²).

Security
  * OU is a *semi-honest*, additively homomorphic scheme. It hides plaintexts (IND-CPA under the
    p-subgroup assumption of the OU paper; recovering m is as hard as factoring n), but ciphertexts are
    malleable by design and carry no integrity: parties must follow the protocol.
  * OU is not IND-CCA: a decryption oracle reveals the factorisation. The decryption of g^x for any
    x > p (a ciphertext anybody can build from the public key) is x mod p, which gives p away; even a
    one-bit "was it in range" answer lets an attacker binary-search p. The key owner must never return,
    log or otherwise expose raw decryptions of ciphertexts that it did not receive through the protocol
    with known plaintext bounds; it reveals only what the protocol says to reveal (masked where it says so).
  * Plaintext-size guard. The plaintext space is Z_p with p secret, so nobody but the key owner knows
    where values wrap, and a value outside (-p/2, p/2) decrypts to garbage. `max_plaintext` is therefore
    computed from the public bit length alone: keys have |p| = ceil(bits / 3) exactly (enforced by
    `OUPrivateKey`), so p > 2^(|p|-1) and max_plaintext = 2^(|p|-2) < p/2 (2^681 for 2048-bit keys, as
    in SecretFlow HEU). `encrypt`, `add_plain`, `mul_plain` and `dot` reject plaintexts and scalars
    beyond it with ValueError. Sums and products of ciphertexts can still exceed it; the layer above
    (`sharedml.crypto.he`) prevents that by tracking bounds. Decryption maps residues above p/2 to
    negatives, so every m with |m| <= max_plaintext round-trips exactly.
  * Negative plaintexts use the public inverse g^-1 mod n: g^m = g^(m+K) · (g^-1)^K, with K a power of two
    above |m| at a table-window boundary, so m + K is a non-negative table exponent and (g^-1)^K one
    cached constant (one extra multiplication). Nothing is reduced modulo the order of g, which is secret.
  * Short randomness. r is uniform in [0, 2^264) (22 windows of 12 bits) from the OS CSPRNG, not in Z_n.
    To test whether c encrypts m0, an attacker can check whether c · g^-m0 equals h^r for some r < 2^L;
    Pollard's kangaroo (lambda) method does that in about 2^(L/2) multiplications, so L >= 2κ is needed
    for κ-bit security, and L >= 256 gives 128 bits, above the ~112 bits of factoring a 2048-bit n
    (NIST SP 800-57). Beyond that generic attack, security rests on the usual short-exponent assumption
    (h^r with short r looks like h^r with r uniform), as in the accelerated OU of Coron, Naccache and
    Paillier (1999) and in HEU. SecretFlow HEU's OU draws 110-bit r for 2048-bit keys
    (`kRandomBits2048`), which the kangaroo test above breaks in about 2^55 steps; we do not follow it.
  * Homomorphic results are deterministic functions of their inputs (E(a)·E(b), E(a)^k, and E(a)^0 = 1,
    which shows the plaintext is 0; an empty `sum` is 1 too): `rerandomize` before sending a result to
    anyone who has seen the inputs.
  * A received public key is checked for shape (size, ranges, gcd), not for honest generation; proving
    that needs a zero-knowledge proof, outside the semi-honest model. All randomness (p, q, g, r) comes
    from the OS CSPRNG via `secrets`. gmpy2/GMP is not constant-time: the key owner's process must not
    share hardware with an adversary who can time it.

Speed. g^m and h^r use fixed-base windowed tables (row i holds base^(d·2^(w·i)) for every w-bit digit d),
so an exponentiation costs one modular multiplication per window and no squarings, and each window is
one in-place, vectorised multiply-and-reduce over the whole numpy object array: 22 multiplications for
h^r plus one per 11 bits of |m|. The windows were tuned by measurement: 12 bits for r (a 28 MB table for
a 2048-bit key; 13 or 14 bits were no faster), 11 bits for m (0.6 MB per row, 39 MB once full-size
plaintexts, e.g. packed ones, are encrypted). Tables are built on first use, row by row. The key owner
encrypts with the same tables: with r this short there is no exponent to reduce modulo φ(n), and working
modulo p² and q separately (CRT) measured only ~4% faster, not worth a second set of tables. `dot` is a
Straus multi-exponentiation (small powers of each ciphertext shared by all columns, one squaring chain per
output). Above `parallel`'s size threshold the work is split: decryption runs `gmpy2.powmod_base_list`, which
releases the GIL, in `parallel.workers()` threads, so the private key never leaves the process;
encryption, re-randomisation, `mul_plain` and `dot` go to its worker processes, to which the public key
pickles as (n, g) only. `precompute(count, background=True)` makes h^r values ahead (two thirds of
an encryption's work) in those workers while the caller waits for peers; `encrypt` uses each pooled
value once, then fresh ones.
"""

from __future__ import annotations

import functools
import math
import operator
import secrets
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from sharedml.crypto import parallel
from sharedml.crypto.paillier import RandomnessPool  # the same one-use pool of randomness factors

__all__ = ["MIN_KEY_BITS", "RANDOM_BITS", "OUPrivateKey", "OUPublicKey", "generate_keypair"]

MIN_KEY_BITS = 1024  # smallest modulus that `generate_keypair` and `OUPublicKey.from_dict` accept
_SECURITY_BITS = 128  # r needs at least twice this many bits (see "Short randomness" above)
_H_WINDOW = 12  # bits of r per table row: 4096 entries per row
_H_ROWS = -(-2 * _SECURITY_BITS // _H_WINDOW)  # 22 windows
RANDOM_BITS = _H_ROWS * _H_WINDOW  # r is uniform in [0, 2^264)
_G_WINDOW = 11  # bits of |m| per table row: 2048 entries per row
_PRIME_TEST_REPS = 40
_POOL_BATCH = 8192  # h^r values a background fill adds at a time (split across the worker processes)

_powmod = np.frompyfunc(gmpy2.powmod, 3, 1)


def _prime_bits(modulus_bits: int) -> int:
    """Bit length of p in an n = p²q of `modulus_bits` bits: ceil(bits / 3), public by construction."""
    return -(-modulus_bits // 3)


def _plaintexts(values: Any, bound: int, what: str = "plaintext") -> np.ndarray:
    """Object array of Python ints of magnitude at most `bound`; TypeError or ValueError otherwise."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        ints = array.astype(object)
    elif array.dtype.kind == "O":
        ints = np.array([operator.index(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    else:
        raise TypeError(f"{what}s must be integers, got an array of dtype {array.dtype}")
    largest = np.max(np.abs(ints), initial=0)
    if largest > bound:
        raise ValueError(
            f"{what} of magnitude {largest} exceeds max_plaintext = 2^{bound.bit_length() - 1} of this OU key: "
            "the plaintext space Z_p has a secret p, and a larger value would wrap and decrypt to garbage"
        )
    return ints


def _ciphertexts(values: Any) -> np.ndarray:
    """An object array (numpy returns bare scalars from 0-d arithmetic; this wraps them back)."""
    return np.asarray(values, dtype=object)


def _split_windows(raw: bytes, count: int, rows: int, window: int) -> np.ndarray:
    """Base-2^window digits, shape (rows, count), of `count` equal-width little-endian integers in `raw`."""
    octets = np.frombuffer(raw, dtype=np.uint8).reshape(count, len(raw) // count if count else 0)
    bits = np.unpackbits(octets, axis=1, count=rows * window, bitorder="little")
    return (bits.reshape(count, rows, window) @ (1 << np.arange(window))).T


def _digits(values: Iterable[int], count: int, rows: int, window: int) -> np.ndarray:
    """Base-2^window digits, shape (rows, count), of non-negative ints below 2^(rows·window)."""
    width = -(-rows * window // 8)
    return _split_windows(b"".join(int(v).to_bytes(width, "little") for v in values), count, rows, window)


def _random_digits(count: int) -> np.ndarray:
    """Digits of `count` fresh r, uniform in [0, 2^RANDOM_BITS), from the OS CSPRNG."""
    return _split_windows(secrets.token_bytes(count * -(-RANDOM_BITS // 8)), count, _H_ROWS, _H_WINDOW)


def _powmod_many(bases: list[mpz], exponent: mpz, modulus: mpz) -> list[mpz]:
    """[b^exponent mod modulus for b in bases]; where `parallel` says to split the work, in `parallel.workers()`
    threads: powmod_base_list releases the GIL, so threads suffice (and no key material leaves the process)."""
    if not parallel.enabled(len(bases)):
        return gmpy2.powmod_base_list(bases, exponent, modulus)
    size = -(-len(bases) // parallel.workers())
    chunks = [bases[i : i + size] for i in range(0, len(bases), size)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = pool.map(lambda chunk: gmpy2.powmod_base_list(chunk, exponent, modulus), chunks)
        return [x for part in parts for x in part]


class _FixedBase:
    """base^e mod m for many e: row i of the table holds base^(d·2^(w·i)) for every w-bit digit d, so base^e
    costs one multiplication per window of e. Rows are built on first use."""

    def __init__(self, base: mpz, modulus: mpz, window: int) -> None:
        self._modulus = modulus
        self._window = window
        self._rows: list[np.ndarray] = []
        self._next_base = base % modulus  # base^(2^(w·len(rows)))
        self._lock = threading.Lock()

    def _row(self, index: int) -> np.ndarray:
        with self._lock:
            while len(self._rows) <= index:
                row = np.empty(1 << self._window, dtype=object)
                power = mpz(1)
                for digit in range(len(row)):
                    row[digit] = power
                    power = power * self._next_base % self._modulus
                self._rows.append(row)
                self._next_base = power
        return self._rows[index]

    def multiply(self, acc: np.ndarray, digits: np.ndarray) -> None:
        """acc[k] *= base^e_k mod m in place, e_k given by digits[:, k], least significant window first."""
        for index, row_digits in enumerate(digits):
            np.multiply(acc, self._row(index)[row_digits], out=acc)
            np.remainder(acc, self._modulus, out=acc)


class OUPublicKey:
    """OU public key (n, g); h = g^n mod n is derived. Implements `sharedml.crypto.he_scheme.HEPublicKey`."""

    scheme = "ou"

    def __init__(self, n: int, g: int) -> None:
        self.n = mpz(n)
        self.g = mpz(g)
        if not 1 < self.g < self.n or gmpy2.gcd(self.g, self.n) != 1:
            raise ValueError("an OU public key needs 1 < g < n with gcd(g, n) = 1")
        self.h = gmpy2.powmod(self.g, self.n, self.n)
        self.bits = self.n.bit_length()
        self.max_plaintext = 1 << (_prime_bits(self.bits) - 2)
        self._width = (self.bits + 7) // 8
        self._negative_offsets: dict[int, mpz] = {}
        self.pool = RandomnessPool()  # h^r values made ahead (`precompute`), each used once

    @property
    def ciphertext_modulus(self) -> mpz:
        """Ciphertexts live in Z*_M for this M: homomorphic addition is multiplication mod M."""
        return self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OUPublicKey) and (self.n, self.g) == (other.n, other.g)

    def __hash__(self) -> int:
        return hash((self.scheme, self.n, self.g))

    def __repr__(self) -> str:
        return f"OUPublicKey(bits={self.bits}, n={hex(self.n)[:18]}...)"

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore_public_key, (int(self.n), int(self.g))  # for worker processes: no tables, no caches

    @functools.cached_property
    def _g_table(self) -> _FixedBase:
        return _FixedBase(self.g, self.n, _G_WINDOW)

    @functools.cached_property
    def _h_table(self) -> _FixedBase:
        return _FixedBase(self.h, self.n, _H_WINDOW)

    def _negative_offset(self, rows: int) -> mpz:
        """(g^-1)^K for K = 2^(w·rows), so that g^m = g^(m+K) · (g^-1)^K for -K < m < 0."""
        if rows not in self._negative_offsets:
            self._negative_offsets[rows] = gmpy2.powmod(self.g, -(1 << (_G_WINDOW * rows)), self.n)
        return self._negative_offsets[rows]

    def _times_g_power(self, acc: np.ndarray, plaintexts: np.ndarray) -> None:
        """acc *= g^m mod n in place, elementwise, for flat checked plaintexts m."""
        rows = -(-int(np.max(np.abs(plaintexts), initial=0)).bit_length() // _G_WINDOW)
        negative = np.flatnonzero(plaintexts < 0)
        exponents = plaintexts.copy()
        exponents[negative] += 1 << (_G_WINDOW * rows)
        self._g_table.multiply(acc, _digits(exponents, len(exponents), rows, _G_WINDOW))
        if negative.size:
            acc[negative] = acc[negative] * self._negative_offset(rows) % self.n

    def _h_powers(self, r_digits: np.ndarray) -> np.ndarray:
        """h^r mod n for each r given by its column of digits (shape (_H_ROWS, count))."""
        acc = np.full(r_digits.shape[1], mpz(1), dtype=object)
        self._h_table.multiply(acc, r_digits)
        return acc

    def _encrypt(self, plaintexts: np.ndarray, r_digits: np.ndarray) -> np.ndarray:
        """g^m · h^r mod n for checked plaintexts and the digits of one r per plaintext (C order)."""
        acc = self._h_powers(r_digits)
        self._times_g_power(acc, plaintexts.ravel())
        return acc.reshape(plaintexts.shape)

    def _encrypt_fresh(self, plaintexts: np.ndarray) -> np.ndarray:
        return self._encrypt(plaintexts, _random_digits(plaintexts.size))

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        m = _plaintexts(plaintexts, self.max_plaintext)
        flat, pooled = m.ravel(), self.pool.take(m.size)
        head, rest = flat[:len(pooled)], flat[len(pooled):]
        parts = [np.empty(0, dtype=object)]
        if head.size:  # pooled h^r: only g^m is left to do
            parts.append(parallel.map_chunks(_times_g_power_chunk, [pooled, head], self) if parallel.enabled(head.size)
                         else _times_g_power_chunk(pooled, head, self))
        if rest.size:
            parts.append(parallel.map_chunks(_encrypt_chunk, [rest], self) if parallel.enabled(rest.size)
                         else self._encrypt_fresh(rest))
        return np.concatenate(parts).reshape(m.shape)

    def precompute(self, count: int, background: bool = False) -> threading.Thread | None:
        """Add `count` fresh h^r values to `pool` now, or from a daemon thread (returned) if `background`:
        the work runs in the worker processes, so a caller waiting for peers gets it for free."""
        def fill() -> None:
            for start in range(0, count, _POOL_BATCH):
                size = min(_POOL_BATCH, count - start)
                if parallel.enabled(size):
                    tasks = [(self, s.stop - s.start) for s in parallel.split(size)]
                    self.pool.put(np.concatenate(parallel.run(_h_powers_chunk, tasks)))
                else:
                    self.pool.put(self._h_powers(_random_digits(size)))

        if not background:
            fill()
            return None
        thread = threading.Thread(target=fill, name="ou-precompute", daemon=True)
        thread.start()
        return thread

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _ciphertexts(_ciphertexts(a) * _ciphertexts(b) % self.n)

    def add_plain(self, a: np.ndarray, plaintexts: np.ndarray) -> np.ndarray:
        m = _plaintexts(plaintexts, self.max_plaintext)
        g_powers = np.full(m.size, mpz(1), dtype=object)
        self._times_g_power(g_powers, m.ravel())
        return _ciphertexts(_ciphertexts(a) * g_powers.reshape(m.shape) % self.n)

    def mul_plain(self, a: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        a, k = np.broadcast_arrays(_ciphertexts(a), _plaintexts(scalars, self.max_plaintext, "scalar"))
        if parallel.enabled(a.size):
            return parallel.map_chunks(_powmod_chunk, [a.ravel(), k.ravel()], self.n).reshape(a.shape)
        return _ciphertexts(_powmod(a, k, self.n))

    def sum(self, a: np.ndarray, axis: int | None = None) -> np.ndarray:
        """Product of ciphertexts along `axis`; an empty axis gives 1, the unrandomised encryption of 0."""
        a = _ciphertexts(a)
        return self._product(a.ravel(), 0) if axis is None else self._product(a, axis)

    def _product(self, a: np.ndarray, axis: int) -> np.ndarray:
        """Modular product along one axis by pairwise halving: one vectorised multiplication per level."""
        a = np.moveaxis(a, axis, 0)
        if a.shape[0] == 0:
            return np.full(a.shape[1:], mpz(1), dtype=object)
        while a.shape[0] > 1:
            half = a.shape[0] // 2
            a = np.concatenate([a[:half] * a[half : 2 * half] % self.n, a[2 * half :]])
        return a[0, ...]

    def dot(self, a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Ciphertexts (k,) or (rows, k) @ plaintext ints (k,) or (k, cols), shaped as numpy.matmul would."""
        a, k = _ciphertexts(a), _plaintexts(matrix, self.max_plaintext, "scalar")
        if a.ndim not in (1, 2) or k.ndim not in (1, 2) or a.shape[-1] != k.shape[0]:
            raise ValueError(f"cannot multiply ciphertexts of shape {a.shape} by a matrix of shape {k.shape}")
        rows, columns = a if a.ndim == 2 else a[None, :], k if k.ndim == 2 else k[:, None]
        if parallel.enabled(rows.size * columns.shape[1]) and len(columns) > 1:
            tasks = [(self, rows[:, s], columns[s]) for s in parallel.split(len(columns))]
            out = self._product(np.stack(parallel.run(_dot_chunk, tasks)), 0)  # partial products over slices of k
        else:
            out = self._dot(rows, columns)
        return out.reshape(a.shape[:-1] + k.shape[1:])

    def _dot(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        out = np.empty((rows.shape[0], columns.shape[1]), dtype=object)
        for i, row in enumerate(rows):
            out[i] = self._multi_power(row, columns)
        return out

    def _multi_power(self, bases: np.ndarray, exponents: np.ndarray) -> np.ndarray:
        """prod_i bases[i]^exponents[i, j] mod n for each column j (Straus: each base's small powers are
        shared by all columns, and each column needs one squaring chain instead of one per term). Terms
        with negative exponents are multiplied up separately and inverted once per column at the end."""
        count, columns = exponents.shape
        magnitudes = np.abs(exponents)
        bits = int(np.max(magnitudes, initial=0)).bit_length()
        window = min(range(1, 9), key=lambda w: (1 << w) + -(-bits // w) * columns)  # fewest multiplications
        powers = np.empty((1 << window, count), dtype=object)  # powers[d, i] = bases[i]^d
        powers[0], powers[1] = mpz(1), bases % self.n
        for digit in range(2, 1 << window):
            powers[digit] = powers[digit - 1] * powers[1] % self.n
        negative = exponents < 0
        signs = [~negative, negative] if negative.any() else [np.ones_like(negative)]
        windows = -(-bits // window)
        digits = _digits(magnitudes.ravel(), count * columns, windows, window).reshape(windows, count, columns)
        acc = np.full((len(signs), columns), mpz(1), dtype=object)  # products of the terms of each sign
        for window_digits in digits[::-1]:
            for _ in range(window):
                acc = acc * acc % self.n
            terms = powers[window_digits, np.arange(count)[:, None]]
            acc = acc * self._product(np.stack([np.where(sign, terms, 1) for sign in signs]), 1) % self.n
        return acc[0] if len(signs) == 1 else acc[0] * _powmod(acc[1], -1, self.n) % self.n

    def _rerandomize_serial(self, a: np.ndarray) -> np.ndarray:
        return _ciphertexts(a * self._h_powers(_random_digits(a.size)).reshape(a.shape) % self.n)

    def rerandomize(self, a: np.ndarray) -> np.ndarray:
        a = _ciphertexts(a)
        if parallel.enabled(a.size):
            return parallel.map_chunks(_rerandomize_chunk, [a.ravel()], self).reshape(a.shape)
        return self._rerandomize_serial(a)

    def ciphertexts_to_bytes(self, a: np.ndarray) -> bytes:
        """Each ciphertext as ceil(bits / 8) little-endian bytes, in C order."""
        flat = self._check_range(_ciphertexts(a).ravel())
        return b"".join(mpz(c).to_bytes(self._width, "little") for c in flat)

    def ciphertexts_from_bytes(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        shape = tuple(shape)
        if any(type(d) is not int or d < 0 for d in shape):
            raise ValueError(f"invalid ciphertext array shape {shape!r}")
        count = math.prod(shape)
        if len(data) != count * self._width:
            raise ValueError(f"{len(data)} bytes cannot hold {count} OU ciphertexts of {self._width} bytes")
        view = memoryview(data)
        flat = np.empty(count, dtype=object)
        flat[:] = [mpz.from_bytes(view[i : i + self._width], "little") for i in range(0, len(data), self._width)]
        return self._check_range(flat).reshape(shape)

    def _check_range(self, flat: np.ndarray) -> np.ndarray:
        if flat.size and not ((flat > 0) & (flat < self.n)).all():
            raise ValueError("OU ciphertexts must be integers in (0, n)")
        return flat

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "n": int(self.n), "g": int(self.g)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OUPublicKey:
        """Rebuild a key from `to_dict` output, e.g. received from a peer: checks fields, types and size."""
        if not isinstance(data, dict) or set(data) != {"scheme", "n", "g"} or data["scheme"] != cls.scheme:
            raise ValueError("not an OU public key: expected exactly the keys 'scheme' ('ou'), 'n' and 'g'")
        n, g = data["n"], data["g"]
        if type(n) is not int or type(g) is not int:
            raise ValueError("OU public key fields n and g must be ints")
        if n.bit_length() < MIN_KEY_BITS or n % 2 == 0:
            raise ValueError(f"an OU modulus must be odd and have at least {MIN_KEY_BITS} bits")
        return cls(n, g)


@functools.lru_cache(maxsize=8)
def _restore_public_key(n: int, g: int) -> OUPublicKey:
    """Unpickle (in worker processes): one key object per key and process, so its tables are built once."""
    return OUPublicKey(n, g)


def _encrypt_chunk(plaintexts: np.ndarray, key: OUPublicKey) -> np.ndarray:
    return key._encrypt_fresh(plaintexts)


def _times_g_power_chunk(h_powers: np.ndarray, plaintexts: np.ndarray, key: OUPublicKey) -> np.ndarray:
    acc = h_powers.copy()
    key._times_g_power(acc, plaintexts)
    return acc


def _h_powers_chunk(key: OUPublicKey, count: int) -> np.ndarray:
    return key._h_powers(_random_digits(count))


def _rerandomize_chunk(a: np.ndarray, key: OUPublicKey) -> np.ndarray:
    return key._rerandomize_serial(a)


def _powmod_chunk(a: np.ndarray, k: np.ndarray, n: mpz) -> np.ndarray:
    return _powmod(a, k, n)


def _dot_chunk(key: OUPublicKey, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return key._dot(rows, columns)


class OUPrivateKey:
    """OU secret key (p, q) with its public key. Implements `sharedml.crypto.he_scheme.HEPrivateKey`.

    Read the module docstring before exposing any decryption: a decryption oracle reveals p.
    """

    def __init__(self, p: int, q: int, g: int) -> None:
        p, q, g = mpz(p), mpz(q), mpz(g)
        n = p * p * q
        if p == q or not (gmpy2.is_prime(p, _PRIME_TEST_REPS) and gmpy2.is_prime(q, _PRIME_TEST_REPS)):
            raise ValueError("OU needs two distinct primes p and q")
        if (q - 1) % p == 0 or (p - 1) % q == 0:
            raise ValueError("OU needs p not dividing q - 1 and q not dividing p - 1")
        if p.bit_length() != _prime_bits(n.bit_length()):
            raise ValueError("p must have ceil(bits(n) / 3) bits, or the public plaintext bound would be unsound")
        self.public_key = OUPublicKey(n, g)
        self._p = p
        self._p_squared = p * p
        g_p = gmpy2.powmod(g, p - 1, self._p_squared)
        if g_p == 1:
            raise ValueError("g^(p-1) mod p² must have order p")
        self._decryption_factor = gmpy2.invert((g_p - 1) // p, p)  # 1 / L(g^(p-1) mod p²) mod p

    def __repr__(self) -> str:
        return f"OUPrivateKey(bits={self.public_key.bits})"  # never the factors

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        """Same as the public key's encryption (see the module docstring for why CRT does not pay here)."""
        return self.public_key.encrypt(plaintexts)

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        c = _ciphertexts(ciphertexts)
        p = self._p
        powered = _powmod_many([mpz(x) % self._p_squared for x in c.ravel()], p - 1, self._p_squared)
        residues = [(x - 1) // p * self._decryption_factor % p for x in powered]
        plain = np.empty(c.size, dtype=object)
        plain[:] = [int(v - p) if 2 * v > p else int(v) for v in residues]
        return plain.reshape(c.shape)


def _random_prime(low: int, high: int) -> mpz:
    """A random prime in [low, high), from the OS CSPRNG."""
    while True:
        candidate = mpz(low + secrets.randbelow(high - low)) | 1
        if candidate < high and gmpy2.is_prime(candidate, _PRIME_TEST_REPS):
            return candidate


def _random_g(p: mpz, q: mpz) -> mpz:
    """Random g in Z_n* with g^(p-1) mod p² of order p, i.e. L(g^(p-1) mod p²) != 0 mod p."""
    n, p_squared = p * p * q, p * p
    while True:
        g = mpz(2 + secrets.randbelow(n - 2))
        if gmpy2.gcd(g, n) == 1 and gmpy2.powmod(g, p - 1, p_squared) != 1:
            return g


def generate_keypair(bits: int = 2048) -> tuple[OUPublicKey, OUPrivateKey]:
    """Fresh OU keys: p a random prime of exactly ceil(bits / 3) bits, q a random prime that makes n = p²q
    exactly `bits` bits long (so q is within two bits of p's size), and g random with the order-p condition."""
    if bits < MIN_KEY_BITS:
        raise ValueError(f"OU keys need at least {MIN_KEY_BITS} bits")
    p_bits = _prime_bits(bits)
    while True:
        p = _random_prime(1 << (p_bits - 1), 1 << p_bits)
        p_squared = p * p
        q = _random_prime(-(-(1 << (bits - 1)) // p_squared), ((1 << bits) - 1) // p_squared + 1)
        if q != p and (q - 1) % p and (p - 1) % q:
            break
    private = OUPrivateKey(p, q, _random_g(p, q))
    return private.public_key, private
