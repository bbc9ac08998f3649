"""HPKE-style envelopes: encrypt a small secret to an X25519 public key, optionally authenticating the sender.

Why: data keys go from owners to an attested enclave key, key rings from enclave to enclave, models from
the enclave to recipients, requests from clients to the enclave. One construction serves all of them,
in the shape of RFC 9180's base and auth modes: a fresh ephemeral X25519 key per envelope, HKDF-SHA256
over the Diffie-Hellman output(s) with an `info` that binds both public keys and a caller `context`
(purpose, measurement, dataset id, ...), AES-256-GCM with the context as AAD. In auth mode a second
Diffie-Hellman between the sender's static key and the recipient proves that the holder of the sender's
(attested) private key produced it.

Byte layout::

    b"SMLW" | version u8 = 1 | mode u8 (0 base, 1 auth) | ephemeral public key (32) |
    nonce (12) | AES-256-GCM ciphertext | tag (16)

    key = HKDF-SHA256(ikm = DH(eph, R) [|| DH(S, R)], salt = none,
                      info = "sharedml-tee-wrap-v1" 0x00 | mode | eph | R | [S] | context)
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import aead, kex
from .errors import EnvelopeError

MAGIC = b"SMLW"
VERSION = 1
BASE, AUTH = 0, 1
_HEADER = struct.Struct(">4sBB32s")
_INFO = b"sharedml-tee-wrap-v1\0"


def bind(label: str, *parts: bytes | str) -> bytes:
    """An unambiguous context string: the label, then each part length-prefixed."""
    out = [label.encode(), b"\0"]
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out.append(struct.pack(">I", len(raw)) + raw)
    return b"".join(out)


def _key(secrets: list[bytes], mode: int, eph: bytes, recipient: bytes, sender: bytes, context: bytes) -> bytes:
    info = _INFO + bytes([mode]) + eph + recipient + sender + context
    return kex.hkdf_sha256(b"".join(secrets), info=info)


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(kex.load_public_key(public))
    except ValueError as exc:
        raise EnvelopeError(f"refusing a low-order or malformed X25519 public key: {exc}") from None


def wrap(recipient_public: bytes, plaintext: bytes, context: bytes, sender: X25519PrivateKey | None = None) -> bytes:
    """Encrypt `plaintext` to `recipient_public`, bound to `context`; auth mode when `sender` is given."""
    ephemeral = kex.generate_private_key()
    eph = kex.public_key_bytes(ephemeral)
    secrets = [_exchange(ephemeral, recipient_public)]
    mode, sender_public = BASE, b""
    if sender is not None:
        mode, sender_public = AUTH, kex.public_key_bytes(sender)
        secrets.append(_exchange(sender, recipient_public))
    key = _key(secrets, mode, eph, recipient_public, sender_public, context)
    return _HEADER.pack(MAGIC, VERSION, mode, eph) + aead.seal(key, plaintext, context)


def unwrap(recipient: X25519PrivateKey, blob: bytes, context: bytes, sender_public: bytes | None = None) -> bytes:
    """Open a `wrap` envelope; with `sender_public`, require auth mode from exactly that sender."""
    if len(blob) < _HEADER.size:
        raise EnvelopeError(f"envelope too short ({len(blob)} bytes)")
    magic, version, mode, eph = _HEADER.unpack_from(blob)
    if magic != MAGIC or version != VERSION:
        raise EnvelopeError("not a sharedml envelope (bad magic or version)")
    if mode not in (BASE, AUTH):
        raise EnvelopeError(f"unknown envelope mode {mode}")
    if sender_public is not None and mode != AUTH:
        raise EnvelopeError("envelope is not sender-authenticated, but an authenticated sender is required")
    recipient_public = kex.public_key_bytes(recipient)
    secrets = [_exchange(recipient, eph)]
    if mode == AUTH:
        if sender_public is None:
            raise EnvelopeError("sender-authenticated envelope: pass the sender's public key to check it")
        secrets.append(_exchange(recipient, sender_public))
    key = _key(secrets, mode, eph, recipient_public, sender_public or b"", context)
    try:
        return aead.open_(key, blob[_HEADER.size:], context)
    except aead.DecryptionError:
        raise EnvelopeError("envelope does not open: it was tampered with, is for another key or context, "
                            "or comes from another sender") from None
