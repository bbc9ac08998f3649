"""Ed25519 signatures (RFC 8032).

Why: parties sign what they publish outside the TLS channel — public keys for key agreement,
commitments, attestation-bound keys, results — so others can check who produced it and that it
was not changed, also later and by third parties.

Security caveats:
- A signature proves who signed, not when or in which context: sign a message that includes the
  purpose, the job id and a sequence number, or a signature can be replayed elsewhere.
- Verification follows OpenSSL's RFC 8032 checks; Ed25519 validity rules differ slightly between
  libraries for crafted edge cases, so do not use signature bytes as unique identifiers or rely on
  two implementations agreeing on adversarial signatures.
- The private key is the 32-byte seed of RFC 8032: keep it secret (owner-readable files only).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_SIZE = 32
SIGNATURE_SIZE = 64


class SignatureError(InvalidSignature):
    """The signature does not verify for this public key and message."""


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key from the OS CSPRNG."""
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key (of a private key, or of a public key object)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes_raw()


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Parse a raw 32-byte Ed25519 public key."""
    if len(raw) != KEY_SIZE:
        raise ValueError(f"Ed25519 public key must be {KEY_SIZE} bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(bytes(raw))


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte private key (RFC 8032 seed; secret)."""
    return key.private_bytes_raw()


def load_private_key(raw: bytes) -> Ed25519PrivateKey:
    """Parse a raw 32-byte Ed25519 private key (RFC 8032 seed)."""
    if len(raw) != KEY_SIZE:
        raise ValueError(f"Ed25519 private key must be {KEY_SIZE} bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


def sign(private: Ed25519PrivateKey, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `message` (deterministic)."""
    return private.sign(message)


def verify(public: Ed25519PublicKey | bytes, message: bytes, signature: bytes) -> None:
    """Return if `signature` is valid for `message` under `public`; raise SignatureError otherwise."""
    key = load_public_key(public) if isinstance(public, bytes | bytearray) else public
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"Ed25519 signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        key.verify(bytes(signature), message)
    except InvalidSignature:
        raise SignatureError("signature does not verify for this public key and message") from None
