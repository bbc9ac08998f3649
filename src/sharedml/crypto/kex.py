"""X25519 key agreement with HKDF-SHA256 key derivation.

Why: pairwise masks in secure aggregation and data keys for TEEs (HPKE-style) need two parties to
agree on a secret over an untrusted channel from each other's public keys alone. X25519 (RFC 7748)
gives a 32-byte shared secret; it is never used as a key directly but run through HKDF-SHA256
(RFC 5869) with a caller-chosen `info`, so each purpose gets its own independent key.

Security caveats:
- The raw Diffie-Hellman output binds neither identities nor purpose. Put a purpose label and both
  parties' public keys (in a fixed order) and any session/job id into `info`, otherwise a key may be
  reused across contexts or a party may be confused about whom it shares the key with.
- Public keys are not authenticated here: the caller must get them over an authenticated channel
  (mutual TLS) or signed (`sharedml.crypto.signing`), or an active attacker can sit in the middle.
- Low-order peer points (e.g. all-zero bytes), which would make the shared secret all zero and
  known to anyone, are rejected with `ValueError`.
- Static keys give no forward secrecy; generate a fresh key pair per job where that matters.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SIZE = 32


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key from the OS CSPRNG."""
    return X25519PrivateKey.generate()


def public_key_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key (of a private key, or of a public key object)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes_raw()


def load_public_key(raw: bytes) -> X25519PublicKey:
    """Parse a raw 32-byte X25519 public key."""
    if len(raw) != KEY_SIZE:
        raise ValueError(f"X25519 public key must be {KEY_SIZE} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(bytes(raw))


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte private key (secret: store owner-readable only)."""
    return key.private_bytes_raw()


def load_private_key(raw: bytes) -> X25519PrivateKey:
    """Parse a raw 32-byte X25519 private key."""
    if len(raw) != KEY_SIZE:
        raise ValueError(f"X25519 private key must be {KEY_SIZE} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(bytes(raw))


def hkdf_sha256(ikm: bytes, *, info: bytes, salt: bytes | None = None, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256 (RFC 5869) extract-and-expand of `ikm` into `length` bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def shared_key(
    private: X25519PrivateKey,
    peer_public: X25519PublicKey | bytes,
    *,
    info: bytes,
    salt: bytes | None = None,
    length: int = KEY_SIZE,
) -> bytes:
    """HKDF-SHA256 of the X25519 shared secret between `private` and `peer_public`.

    Both sides get the same key: shared_key(a, B, info=i) == shared_key(b, A, info=i). `info` must be
    non-empty (name the purpose, see the module docstring); a peer key giving the all-zero shared
    secret raises ValueError.
    """
    if not info:
        raise ValueError("info must name the key's purpose (domain separation); it may not be empty")
    peer = load_public_key(peer_public) if isinstance(peer_public, bytes | bytearray) else peer_public
    try:
        secret = private.exchange(peer)
    except ValueError as exc:  # OpenSSL refuses the all-zero output of a low-order point
        raise ValueError("peer public key is a low-order point (all-zero shared secret); refusing it") from exc
    return hkdf_sha256(secret, info=info, salt=salt, length=length)
