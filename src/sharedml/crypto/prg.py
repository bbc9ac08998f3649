"""Seeded cryptographic pseudo-random stream: expand a 32-byte seed into ring elements, fast.

Why: two parties holding the same seed (e.g. from `kex.shared_key`) must expand it into identical
masks or pseudo-random shares without sending them, and the expansion must be indistinguishable
from random to anyone without the seed. `os.urandom` cannot be replayed and numpy's generators are
predictable from their output, so neither will do.

Construction: the stream is the ChaCha20 keystream (RFC 8439, via `cryptography`/OpenSSL) with the
whole 32-byte seed as the key, block counter starting at 0, and a 96-bit nonce naming the domain:
all zero for the empty domain (so `SeededStream(bytes(32))` is exactly RFC 8439's test vector) and
otherwise the first 12 bytes of SHA-256("sharedml.prg.domain\\0" || domain). The full seed is the
key, never folded to a shorter integer.

Reads consume the one byte stream in order: `bytes(n)` takes n bytes, `uint64` 8 bytes per element
(little-endian, so results do not depend on the platform), and rejection sampling discards what it
rejects. Two parties get the same values by making the same calls in the same order.

Security caveats:
- The seed is the key: it must be uniformly random, secret, and used only as a seed here (derive it
  with its own HKDF `info`; do not reuse an AES or MAC key as a seed).
- Streams of one seed are independent only across different domains; the same seed and domain give
  the same stream by design, so never use one (seed, domain) pair for two purposes.
- One stream yields at most 2^38 bytes (256 GiB, the 32-bit block counter of RFC 8439); reading
  beyond raises instead of wrapping the counter.
- Nothing here is constant-time in the values drawn (rejection sampling loops a data-dependent
  number of times); this leaks only how many candidates were rejected, which is independent of the
  accepted values.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

SEED_SIZE = 32
MAX_STREAM_BYTES = 1 << 38  # 2^32 ChaCha20 blocks of 64 bytes
_CHUNK = 1 << 22
_ZEROS = memoryview(bytes(_CHUNK))


def _nonce(domain: bytes) -> bytes:
    if not domain:
        return bytes(12)
    return hashlib.sha256(b"sharedml.prg.domain\0" + domain).digest()[:12]


class SeededStream:
    """Deterministic CSPRNG stream from a 32-byte seed and a domain label (see module docstring)."""

    def __init__(self, seed: bytes, *, domain: bytes = b"") -> None:
        if not isinstance(seed, bytes | bytearray | memoryview):
            raise TypeError(f"seed must be bytes, not {type(seed).__name__}")
        if not isinstance(domain, bytes | bytearray | memoryview):
            raise TypeError(f"domain must be bytes, not {type(domain).__name__}")
        seed = bytes(seed)
        if len(seed) != SEED_SIZE:
            raise ValueError(f"seed must be exactly {SEED_SIZE} bytes, got {len(seed)}")
        counter = bytes(4)  # RFC 8439: 32-bit little-endian block counter, then the 96-bit nonce
        cipher = Cipher(algorithms.ChaCha20(seed, counter + _nonce(bytes(domain))), mode=None)
        self._encryptor = cipher.encryptor()
        self._position = 0

    @property
    def position(self) -> int:
        """Bytes consumed so far."""
        return self._position

    def _fill(self, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError("cannot read a negative number of bytes")
        if self._position + n > MAX_STREAM_BYTES:
            raise OverflowError("stream exhausted: at most 2^38 bytes per (seed, domain); use another domain")
        out = np.empty(n, dtype=np.uint8)
        view = memoryview(out)
        for start in range(0, n, _CHUNK):
            size = min(_CHUNK, n - start)
            self._encryptor.update_into(_ZEROS[:size], view[start : start + size])
        self._position += n
        return out

    def bytes(self, n: int) -> builtins.bytes:
        """The next n bytes of the keystream."""
        return self._fill(n).tobytes()

    def uint64(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform over Z_2^64 (the MPC engine's ring), as a uint64 array of the given shape."""
        count = int(np.prod(shape, dtype=np.int64))
        words = self._fill(8 * count).view("<u8")
        return words.astype(np.uint64, copy=False).reshape(shape)

    def ring(self, shape: int | tuple[int, ...], bits: int) -> np.ndarray:
        """Uniform over Z_2^bits.

        bits=32 gives uint32, bits=64 uint64; a larger multiple of 64 (128, 256, ...) gives a numpy
        object array of Python ints in [0, 2^bits), the representation of `sharedml.crypto.sharing`.
        Each element takes bits/8 bytes of the stream.
        """
        if bits == 32:
            count = int(np.prod(shape, dtype=np.int64))
            return self._fill(4 * count).view("<u4").astype(np.uint32, copy=False).reshape(shape)
        if bits == 64:
            return self.uint64(shape)
        if bits <= 0 or bits % 64:
            raise ValueError(f"ring bits must be 32, 64 or a multiple of 64, got {bits}")
        return self._big(shape, bits // 8, (1 << bits) - 1)

    def _big(self, shape: int | tuple[int, ...], width: int, mask: int) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        raw = self._fill(width * count).tobytes()
        out = np.empty(count, dtype=object)
        out[:] = [int.from_bytes(raw[i : i + width], "little") & mask for i in range(0, len(raw), width)]
        return out.reshape(shape)

    def integers_below(self, shape: int | tuple[int, ...], bound: int) -> np.ndarray:
        """Uniform in [0, bound) for any int bound >= 1, by rejection sampling (no modulo bias).

        Candidates take the bit length of bound-1 bits and are rejected when >= bound (under half of
        them). Returns uint64 when bound <= 2^64, else an object array of Python ints.
        """
        bound = int(bound)
        if bound < 1:
            raise ValueError("bound must be at least 1")
        count = int(np.prod(shape, dtype=np.int64))
        bits = (bound - 1).bit_length()
        if bits <= 64:
            return self._below_u64(count, bound, bits).reshape(shape)
        out = np.empty(count, dtype=object)
        filled = 0
        while filled < count:
            need = count - filled
            candidates = self._big(((need << bits) // bound) + 8, -(-bits // 8), (1 << bits) - 1)
            accepted = candidates[candidates < bound][:need]
            out[filled : filled + len(accepted)] = accepted
            filled += len(accepted)
        return out.reshape(shape)

    def _below_u64(self, count: int, bound: int, bits: int) -> np.ndarray:
        out = np.empty(count, dtype=np.uint64)
        mask = np.uint64((1 << bits) - 1)
        filled = 0
        while filled < count:
            need = count - filled
            # ~5% more candidates than the expected need, so one pass almost always suffices.
            candidates = self.uint64(((need << bits) // bound) * 21 // 20 + 16) & mask
            if bound < 1 << 64:
                candidates = candidates[candidates < np.uint64(bound)]
            accepted = candidates[:need]
            out[filled : filled + len(accepted)] = accepted
            filled += len(accepted)
        return out


def secret_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from the OS CSPRNG (through a fresh ChaCha20 stream);
    ties among the 64-bit sort keys have negligible probability."""
    return np.argsort(SeededStream(secrets.token_bytes(32), domain=b"permutation").uint64(n), kind="stable")
