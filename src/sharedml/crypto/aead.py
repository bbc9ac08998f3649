"""Authenticated encryption of messages with AES-256-GCM.

Why: data keys (from `kex.shared_key`, or sealed to a TEE) protect model updates and data at rest or
relayed through untrusted nodes; GCM gives confidentiality and integrity in one pass, and `aad`
binds the ciphertext to its context (job id, sender, message kind) without encrypting it.

Format: `seal` returns nonce (12 bytes, from os.urandom) || ciphertext || tag (16 bytes);
`open_` checks the tag before returning anything and raises `DecryptionError` on any change to the
nonce, ciphertext, tag, aad or key.

Security caveats:
- Nonces are random 96-bit values, so encrypt at most 2^32 messages under one key (NIST SP 800-38D
  bound for random nonces; beyond it a nonce repeat, which breaks GCM, becomes too likely). Use a
  fresh key per job or per session, derived with HKDF.
- One message must stay below 64 GiB (the GCM limit; `cryptography` enforces it).
- Ciphertexts reveal the plaintext length; pad first if the length itself is sensitive.
- Replays are not detected here: put a sequence number or message id in `aad` and check it above.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class DecryptionError(Exception):
    """The sealed message was not produced by `seal` with this key and aad (tampered or wrong key)."""


def generate_key() -> bytes:
    """A fresh random AES-256 key from the OS CSPRNG."""
    return os.urandom(KEY_SIZE)


def _cipher(key: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-256-GCM key must be {KEY_SIZE} bytes, got {len(key)}")
    return AESGCM(bytes(key))


def seal(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate `plaintext` (and authenticate `aad`) under a random nonce."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + _cipher(key).encrypt(nonce, plaintext, aad)


def open_(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Check and decrypt the output of `seal`; raises DecryptionError if anything was altered."""
    cipher = _cipher(key)
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError(f"sealed message too short ({len(sealed)} bytes) to hold a nonce and a tag")
    try:
        return cipher.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise DecryptionError("authentication failed: wrong key or aad, or the message was tampered with") from None
