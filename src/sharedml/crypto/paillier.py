"""Paillier encryption on gmpy2, fast enough for vertical federated learning on whole columns.

Why: SecureBoost and vertical logistic regression send gradients encrypted under the label holder's
key to the other parties, who add them up and multiply them by their features without seeing them.
That needs an additively homomorphic scheme applied to vectors of 10^4–10^6 values, so this module
works on numpy object arrays and spends its time in GMP, not in the interpreter. It implements the
`HEPublicKey` / `HEPrivateKey` protocol of `sharedml.crypto.he_scheme`; fixed-point numbers,
overflow tracking and packing are layered on top in `sharedml.crypto.he`.

Scheme (Paillier with g = n + 1, Damgård–Jurik–Nielsen randomness)::

    n = p·q            p, q random primes of n's half length, p ≡ q ≡ 3 (mod 4), gcd(p-1, q-1) = 2
    h = -x² mod n      x uniform in Z*_n, so h has Jacobi symbol 1 and is not a square
    h_s = h^n mod n²   public, with n
    E(m) = (1 + m·n) · h_s^r mod n²     r uniform in [0, 2^RANDOM_BITS)

A plaintext is an element of Z_n read as a signed integer: m and m - n are the same plaintext, and
decryption returns the representative in [-(n-1)/2, (n-1)/2], so `max_plaintext = (n - 1) // 2` (no
margin is needed: that range is exactly Z_n). Results outside it wrap; `sharedml.crypto.he` tracks
bounds so that never happens silently.

Speed:

* Public-key encryption computes h_s^r with a fixed-base table: h_s^(j·2^(w·i)) mod n² for every
  w-bit window i of r and digit j (w = WINDOW_BITS), so one encryption is ceil(RANDOM_BITS / w)
  multiplications mod n² instead of a 2048-bit exponentiation (phe computes r^n mod n²). w = 10 was
  the best measured trade-off: 45 multiplications against 56 for w = 8 (measured 20–30% faster),
  for a table of about 25 MB per 2048-bit key (the key owner's two half-size tables together: the
  same), built in about half a second on first use; w = 11 saves another 9% of the multiplications
  for twice the memory.
* The key owner computes the same h_s^r modulo p² and q² with one table per prime (numbers half
  as long, so multiplications about 3 times cheaper) and combines them with the CRT: the result is
  exactly the value the public path computes for the same r, so both kinds of ciphertext have the
  same distribution and decrypt the same way.
* Decryption uses the CRT (Paillier, section 7): m_p = L_p(c^(p-1) mod p²)·h_p mod p, the same
  modulo q, combined; the exponentiations run in `gmpy2.powmod_base_list`.
* `precompute(count)` fills a pool of h_s^r values ahead of time (optionally in a background
  thread); encryption and re-randomisation use pooled values first, each exactly once.
* Above a size threshold the expensive vector operations run in worker processes
  (`sharedml.crypto.parallel`).

There is no cheaper legitimate decryption. c^(p-1) is needed because the randomness factor h_s^r
lies in the subgroup of Z*_{p²} of order dividing p - 1, and for random primes the order of h there
is about as large as p. A much shorter decryption exponent requires keys built so that h has small
secret order (as in Ma et al., ACSAC 2021), which rests on a different, less studied assumption; we
do not do that. Nor do we decrypt modulo p alone when plaintexts are known to be small (half the
work): a party that gets back the decryption of a ciphertext it built of some m ≥ p would learn
m mod p, and gcd(m - (m mod p), n) = p.

Security notes (threat model: semi-honest parties; the key owner is trusted with its own key):

* Semantic security rests on the decisional composite residuosity assumption and, because r is
  short, on DJN's assumption that h_s^r for a RANDOM_BITS-bit r is indistinguishable from a
  uniformly random power of h_s. The best known attacks on a short exponent in a group of unknown
  order (Pollard's lambda / kangaroo) take about 2^(t/2) steps for t-bit exponents, hence DJN's rule
  t ≥ 2k for k-bit security. RANDOM_BITS = 448 gives 2^224, far beyond the ~112-bit (2048-bit n)
  and ~128-bit (3072-bit n) cost of factoring n, so the randomness is never the weakest link, and
  leaves room for losses in security reductions. All randomness (primes, x, r) comes from the OS
  CSPRNG through `secrets`.
* Results of homomorphic operations are deterministic functions of their inputs (E(a)·E(b),
  E(a)^k, and E(a)^0 = 1, which shows that the plaintext is 0). `rerandomize` before sending a result
  to anyone who has seen the inputs.
* Decryption returns m mod n (signed) for any ciphertext coprime to n, i.e. nothing about p, q;
  malformed ciphertexts that are not coprime to n can only be built by someone who knows a factor.
* A received public key is checked for shape (sizes, ranges, gcd), not for honesty: a malicious key
  owner could publish an h_s of small order. Protecting against that needs a proof of correct key
  generation, outside the semi-honest model.
* gmpy2/GMP arithmetic is not constant-time: the key owner's process must not share hardware with
  an adversary who can measure its timing or cache behaviour.
* Keys pickle only for local worker processes (`sharedml.crypto.parallel`); use `to_dict` /
  `from_dict` for the wire. Pickles carry neither the tables nor the randomness pool, so a pooled
  value can never be used twice.
"""

from __future__ import annotations

import collections
import functools
import math
import secrets
import threading
import warnings
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from sharedml.crypto import parallel

__all__ = [
    "KEY_SIZES",
    "RANDOM_BITS",
    "WINDOW_BITS",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "RandomnessPool",
    "generate_keypair",
]

KEY_SIZES = (2048, 3072)
MIN_TEST_BITS = 1024
RANDOM_BITS = 448  # length of the DJN exponent r; see the security notes above
WINDOW_BITS = 10  # fixed-base table window, measured (see above)

_WINDOWS = -(-RANDOM_BITS // WINDOW_BITS)
_POOL_BATCH = 1024  # values a background fill adds to the pool at a time
_MPZ = type(mpz(0))
_INTEGER_TYPES = (int, np.integer, _MPZ)


def _check_bits(bits: int) -> None:
    if bits in KEY_SIZES:
        return
    if bits % 2 or not MIN_TEST_BITS <= bits < KEY_SIZES[0]:
        raise ValueError(f"Paillier keys are 2048 or 3072 bits (even sizes from {MIN_TEST_BITS} for tests), not {bits}")
    warnings.warn(f"{bits}-bit Paillier keys are for tests only; use 2048 or 3072 bits", UserWarning, stacklevel=3)


def _random_prime(bits: int) -> mpz:
    """A random prime ≡ 3 (mod 4) of exactly `bits` bits with the top two set: the first such prime from a
    CSPRNG starting point (probabilistic test: trial division, BPSW and Miller–Rabin rounds)."""
    while True:
        candidate = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 3
        while not gmpy2.is_prime(candidate, 50):
            candidate += 4
        if candidate.bit_length() == bits:
            return candidate


def generate_keypair(bits: int = 2048) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A fresh key pair with an n of exactly `bits` bits (2048 or 3072; 1024–2046 for tests, with a warning)."""
    _check_bits(bits)
    half = bits // 2
    while True:
        p, q = _random_prime(half), _random_prime(half)
        n = p * q
        if (
            n.bit_length() == bits
            and (p - q).bit_length() > half - 64  # far apart, against Fermat factoring
            and gmpy2.gcd(p - 1, q - 1) == 2
            and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1
        ):
            break
    while True:
        x = mpz(secrets.randbelow(n - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            break
    h_s = gmpy2.powmod(n - x * x % n, n, n * n)
    public_key = PaillierPublicKey(n, h_s)
    return public_key, PaillierPrivateKey(public_key, p, q)


def _object_array(items: list[Any]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _ciphertexts(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=object)


def _plaintexts(values: Any, max_abs: int) -> np.ndarray:
    """Signed integers as an object array of mpz; refuses floats and values beyond ±max_abs."""
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        if not all(isinstance(v, _INTEGER_TYPES) for v in arr.flat):
            raise TypeError("plaintexts must be integers; encode floats with sharedml.crypto.fixed_point.FixedPoint")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"plaintexts must be integers, not {arr.dtype}; encode floats with sharedml.crypto.he")
    flat = _object_array([mpz(int(v)) for v in arr.flat])
    if flat.size and max(abs(v) for v in flat) > max_abs:
        raise OverflowError(f"plaintext exceeds the scheme's range ±max_plaintext (about 2^{max_abs.bit_length()})")
    return flat.reshape(arr.shape)


def _random_digits(count: int) -> np.ndarray:
    """`count` CSPRNG exponents r < 2^RANDOM_BITS as rows of WINDOW_BITS-bit digits, least significant first."""
    raw = np.frombuffer(secrets.token_bytes(count * RANDOM_BITS // 8), dtype=np.uint8).reshape(count, RANDOM_BITS // 8)
    bits = np.unpackbits(raw, axis=1, bitorder="little")
    bits = np.pad(bits, ((0, 0), (0, _WINDOWS * WINDOW_BITS - RANDOM_BITS)))
    return bits.reshape(count, _WINDOWS, WINDOW_BITS).astype(np.intp) @ (1 << np.arange(WINDOW_BITS))


class _FixedBaseTable:
    """base^(j·2^(w·i)) mod modulus for every window i < _WINDOWS and digit j, w = WINDOW_BITS."""

    def __init__(self, base: mpz, modulus: mpz) -> None:
        self.modulus = modulus
        self.rows: list[np.ndarray] = []
        base = base % modulus
        for i in range(_WINDOWS):
            row = [mpz(1), base]
            for _ in range((1 << min(WINDOW_BITS, RANDOM_BITS - i * WINDOW_BITS)) - 2):
                row.append(row[-1] * base % modulus)
            self.rows.append(_object_array(row))
            base = row[-1] * base % modulus

    def power(self, digits: np.ndarray) -> np.ndarray:
        """base^r mod modulus for each exponent r given as a row of digits (see `_random_digits`)."""
        acc = self.rows[0][digits[:, 0]]
        for row, column in zip(self.rows[1:], digits.T[1:], strict=True):
            acc = acc * row[column] % self.modulus
        return acc


class RandomnessPool:
    """Precomputed randomness factors h_s^r mod n², each handed out once (removed when taken)."""

    def __init__(self) -> None:
        self._values: collections.deque[mpz] = collections.deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def put(self, values: np.ndarray) -> None:
        with self._lock:
            self._values.extend(values)

    def take(self, count: int) -> np.ndarray:
        """Up to `count` values, fewer if the pool holds fewer."""
        with self._lock:
            return _object_array([self._values.popleft() for _ in range(min(count, len(self._values)))])


def _fresh_randomness_chunk(source: PaillierPublicKey | PaillierPrivateKey, count: int) -> np.ndarray:
    return source._fresh_randomness_serial(count)


def _fresh_randomness(source: PaillierPublicKey | PaillierPrivateKey, count: int) -> np.ndarray:
    """`count` new h_s^r values, computed by `source` (table mod n², or CRT tables for the key owner)."""
    if parallel.enabled(count):
        tasks = [(source, s.stop - s.start) for s in parallel.split(count)]
        return np.concatenate(parallel.run(_fresh_randomness_chunk, tasks))
    return source._fresh_randomness_serial(count)


def _randomness(source: PaillierPublicKey | PaillierPrivateKey, pool: RandomnessPool, count: int) -> np.ndarray:
    pooled = pool.take(count)
    if len(pooled) == count:
        return pooled
    return np.concatenate([pooled, _fresh_randomness(source, count - len(pooled))])


def _fill_pool(
    source: PaillierPublicKey | PaillierPrivateKey, pool: RandomnessPool, count: int, background: bool
) -> threading.Thread | None:
    if not background:
        pool.put(_fresh_randomness(source, count))
        return None

    def fill() -> None:
        for start in range(0, count, _POOL_BATCH):
            pool.put(_fresh_randomness(source, min(_POOL_BATCH, count - start)))

    thread = threading.Thread(target=fill, name="paillier-precompute", daemon=True)
    thread.start()
    return thread


def _powmods(bases: np.ndarray, exponents: np.ndarray, modulus: mpz) -> np.ndarray:
    return _object_array([gmpy2.powmod(b, e, modulus) for b, e in zip(bases, exponents, strict=True)])


def _dot_serial(a: np.ndarray, matrix: np.ndarray, modulus: mpz) -> np.ndarray:
    """prod_k a[r, k]^matrix[k, j] mod modulus for 2-D object arrays; zero weights cost nothing."""
    out = np.full((a.shape[0], matrix.shape[1]), mpz(1), dtype=object)
    for k in range(a.shape[1]):
        columns = np.flatnonzero(matrix[k] != 0)
        if not columns.size:
            continue
        exponents = matrix[k, columns].tolist()
        for r in range(a.shape[0]):
            powers = _object_array(gmpy2.powmod_exp_list(a[r, k], exponents, modulus))
            out[r, columns] = out[r, columns] * powers % modulus
    return out


def _multiply_chunks(parts: list[np.ndarray], modulus: mpz) -> np.ndarray:
    out = parts[0]
    for part in parts[1:]:
        out = out * part % modulus
    return out


class PaillierPublicKey:
    """Public key (n, h_s); implements `HEPublicKey`. Arrays are numpy object arrays of ints / mpz."""

    scheme = "paillier"

    def __init__(self, n: int, h_s: int) -> None:
        self.n = mpz(n)
        self.nsquare = self.n * self.n
        self.h_s = mpz(h_s)
        self.bits = self.n.bit_length()
        self.max_plaintext = int((self.n - 1) // 2)
        self.pool = RandomnessPool()
        self._ciphertext_bytes = (self.nsquare.bit_length() + 7) // 8
        self._table: _FixedBaseTable | None = None
        self._table_lock = threading.Lock()

    @property
    def ciphertext_modulus(self) -> mpz:
        """Ciphertexts live in Z*_M for this M: homomorphic addition is multiplication mod M."""
        return self.nsquare

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and (self.n, self.h_s) == (other.n, other.h_s)

    def __hash__(self) -> int:
        return hash((self.scheme, self.n, self.h_s))

    def __repr__(self) -> str:
        return f"PaillierPublicKey(bits={self.bits}, n=0x{int(self.n):x})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore_public_key, (int(self.n), int(self.h_s))

    @property
    def table(self) -> _FixedBaseTable:
        """The fixed-base table of h_s mod n², built on first use."""
        with self._table_lock:
            if self._table is None:
                self._table = _FixedBaseTable(self.h_s, self.nsquare)
            return self._table

    def _fresh_randomness_serial(self, count: int) -> np.ndarray:
        return self.table.power(_random_digits(count))

    def _encode(self, m: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(1 + m·n)·x mod n², computed as x + n·(m·x mod n) mod n² (1-D arrays)."""
        return (x + m * x % self.n * self.n) % self.nsquare

    def precompute(self, count: int, background: bool = False) -> threading.Thread | None:
        """Add `count` randomness factors to `pool` now, or in a daemon thread (returned) if `background`."""
        return _fill_pool(self, self.pool, count, background)

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        m = _plaintexts(plaintexts, self.max_plaintext)
        return self._encode(m.ravel(), _randomness(self, self.pool, m.size)).reshape(m.shape)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.broadcast_arrays(_ciphertexts(a), _ciphertexts(b))
        return (a.ravel() * b.ravel() % self.nsquare).reshape(a.shape)

    def add_plain(self, a: np.ndarray, plaintexts: np.ndarray) -> np.ndarray:
        a, m = np.broadcast_arrays(_ciphertexts(a), _plaintexts(plaintexts, self.max_plaintext))
        return self._encode(m.ravel(), a.ravel()).reshape(a.shape)

    def mul_plain(self, a: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        a, k = np.broadcast_arrays(_ciphertexts(a), _plaintexts(scalars, self.max_plaintext))
        flat_a, flat_k = a.ravel(), k.ravel()
        if parallel.enabled(flat_a.size):
            out = parallel.map_chunks(_powmods, [flat_a, flat_k], self.nsquare)
        else:
            out = _powmods(flat_a, flat_k, self.nsquare)
        return out.reshape(a.shape)

    def sum(self, a: np.ndarray, axis: int | None = None) -> np.ndarray:
        a = _ciphertexts(a)
        if axis is None:
            a, axis = a.reshape(-1), 0
        a = np.moveaxis(a, axis, 0)
        if a.shape[0] == 0:
            return np.full(a.shape[1:], mpz(1), dtype=object)  # the trivial encryption of 0
        while a.shape[0] > 1:  # pairwise: log2(len) vectorised steps
            half = a.shape[0] // 2
            product = a[:half] * a[half : 2 * half] % self.nsquare
            a = np.concatenate([product, a[2 * half :]])
        return a.reshape(a.shape[1:])

    def dot(self, a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        a = _ciphertexts(a)
        w = _plaintexts(matrix, self.max_plaintext)
        if a.ndim not in (1, 2) or w.ndim not in (1, 2) or a.shape[-1] != w.shape[0]:
            raise ValueError(f"cannot multiply ciphertexts of shape {a.shape} by a matrix of shape {w.shape}")
        a2, w2 = a.reshape(-1, a.shape[-1]), w.reshape(w.shape[0], -1)
        if parallel.enabled(a2.size * w2.shape[1]) and a2.shape[1] > 1:
            parts = parallel.run(_dot_serial, [(a2[:, s], w2[s], self.nsquare) for s in parallel.split(a2.shape[1])])
            out = _multiply_chunks(parts, self.nsquare)
        else:
            out = _dot_serial(a2, w2, self.nsquare)
        return out.reshape(a.shape[:-1] + w.shape[1:])

    def rerandomize(self, a: np.ndarray) -> np.ndarray:
        a = _ciphertexts(a)
        return (a.ravel() * _randomness(self, self.pool, a.size) % self.nsquare).reshape(a.shape)

    def ciphertexts_to_bytes(self, a: np.ndarray) -> bytes:
        width = self._ciphertext_bytes
        return b"".join([mpz(c).to_bytes(width, "big") for c in _ciphertexts(a).flat])

    def ciphertexts_from_bytes(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(shape, tuple | list) or any(type(d) is not int or d < 0 for d in shape):
            raise ValueError(f"invalid ciphertext array shape {shape!r}"[:200])
        width, view = self._ciphertext_bytes, memoryview(data).cast("B")
        if len(view) != math.prod(shape) * width:
            raise ValueError(f"{len(view)} bytes do not hold {math.prod(shape)} ciphertexts of {width} bytes")
        values = _object_array([mpz.from_bytes(view[i : i + width], "big") for i in range(0, len(view), width)])
        if values.size and (min(values) < 1 or max(values) >= self.nsquare):
            raise ValueError("ciphertext out of range [1, n²)")
        return values.reshape(tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "n": int(self.n), "h_s": int(self.h_s)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaillierPublicKey:
        """Inverse of `to_dict`; checks sizes and ranges, raises ValueError on anything malformed."""
        if not isinstance(data, dict) or data.get("scheme") != cls.scheme:
            raise ValueError("not a Paillier public key")
        n, h_s = data.get("n"), data.get("h_s")
        if type(n) is not int or type(h_s) is not int:
            raise ValueError("Paillier public key needs integers n and h_s")
        _check_bits(n.bit_length())
        if n % 2 == 0 or gmpy2.is_square(n) or not 1 < h_s < n * n or gmpy2.gcd(h_s, n) != 1:
            raise ValueError("malformed Paillier public key")
        return cls(n, h_s)


class PaillierPrivateKey:
    """The factors of n; implements `HEPrivateKey` (CRT encryption and decryption)."""

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        p, q = mpz(p), mpz(q)
        if p * q != public_key.n or p == q:
            raise ValueError("p and q must be the distinct prime factors of the public key's n")
        self.public_key = public_key
        self.p, self.q = p, q
        self._psquare, self._qsquare = p * p, q * q
        # h_p = L_p(g^(p-1) mod p²)^-1 mod p; with g = n + 1, L_p(...) = (p-1)·q ≡ -q (mod p)
        self._hp = gmpy2.invert(-q % p, p)
        self._hq = gmpy2.invert(-p % q, q)
        self._q_inverse = gmpy2.invert(q, p)
        self._qsquare_inverse = gmpy2.invert(self._qsquare, self._psquare)
        self._tables: tuple[_FixedBaseTable, _FixedBaseTable] | None = None
        self._table_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(for {self.public_key!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        public_key = self.public_key
        return _restore_private_key, (int(public_key.n), int(public_key.h_s), int(self.p), int(self.q))

    @property
    def tables(self) -> tuple[_FixedBaseTable, _FixedBaseTable]:
        """Fixed-base tables of h_s mod p² and mod q², built on first use."""
        with self._table_lock:
            if self._tables is None:
                h_s = self.public_key.h_s
                self._tables = (_FixedBaseTable(h_s, self._psquare), _FixedBaseTable(h_s, self._qsquare))
            return self._tables

    def _fresh_randomness_serial(self, count: int) -> np.ndarray:
        digits = _random_digits(count)
        table_p, table_q = self.tables
        xp, xq = table_p.power(digits), table_q.power(digits)
        return (xp - xq) * self._qsquare_inverse % self._psquare * self._qsquare + xq

    def precompute(self, count: int, background: bool = False) -> threading.Thread | None:
        """Fill the public key's randomness pool using the (faster) CRT path; see `PaillierPublicKey.precompute`."""
        return _fill_pool(self, self.public_key.pool, count, background)

    def encrypt(self, plaintexts: np.ndarray) -> np.ndarray:
        public_key = self.public_key
        m = _plaintexts(plaintexts, public_key.max_plaintext)
        return public_key._encode(m.ravel(), _randomness(self, public_key.pool, m.size)).reshape(m.shape)

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        c = _ciphertexts(ciphertexts)
        flat = c.ravel()
        if parallel.enabled(flat.size):
            out = parallel.map_chunks(_decrypt_chunk, [flat], self)
        else:
            out = self._decrypt_serial(flat)
        return out.reshape(c.shape)

    def _decrypt_serial(self, c: np.ndarray) -> np.ndarray:
        p, q, n = self.p, self.q, self.public_key.n
        values = c.tolist()
        mp = [(u - 1) // p * self._hp % p for u in gmpy2.powmod_base_list(values, p - 1, self._psquare)]
        mq = [(u - 1) // q * self._hq % q for u in gmpy2.powmod_base_list(values, q - 1, self._qsquare)]
        half, q_inverse = n // 2, self._q_inverse
        out = []
        for a, b in zip(mp, mq, strict=True):
            m = b + (a - b) * q_inverse % p * q
            out.append(int(m - n) if m > half else int(m))
        return _object_array(out)


def _decrypt_chunk(c: np.ndarray, private_key: PaillierPrivateKey) -> np.ndarray:
    return private_key._decrypt_serial(c)


@functools.lru_cache(maxsize=8)
def _restore_public_key(n: int, h_s: int) -> PaillierPublicKey:
    """Unpickle (worker processes): one key object per key and process, so its table is built once."""
    return PaillierPublicKey(n, h_s)


@functools.lru_cache(maxsize=8)
def _restore_private_key(n: int, h_s: int, p: int, q: int) -> PaillierPrivateKey:
    return PaillierPrivateKey(_restore_public_key(n, h_s), p, q)
