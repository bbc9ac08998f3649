"""The encrypted-file format: an authenticated header, then AES-256-GCM chunks, streamed.

Why: enclave memory is small and datasets are not, so a file is encrypted and decrypted one chunk at a
time (default 1 MiB): working memory is one chunk plus its ciphertext, whatever the file size. Each
chunk is authenticated with its position and whether it is the last one, so flipping a byte, dropping,
duplicating or reordering chunks, cutting the file short, or appending to it are all detected.

Byte layout (integers big-endian)::

    b"SMLE" | version u8 = 1 | header length u32 | header (canonical JSON, utf-8)
    chunk 0 | chunk 1 | ... | chunk n-1            (exactly one final chunk, the last; it may be empty)
    chunk    = ciphertext length u32 | AES-256-GCM(data key, nonce, plaintext, aad) incl. 16-byte tag
    nonce    = 4 zero bytes | chunk index u64      (the data key is fresh per file, so nonces never repeat)
    aad      = "sharedml-tee-chunk-v1" 0x00 | sha256(header) | u32 len(dataset id) | dataset id |
               chunk index u64 | final flag u8

Header fields: `format`, `chunk_size`, `dataset_id`, `id_column`, `allowed_recipients` (the owner's
terms), `measurement` (the enclave code the key was wrapped for), `key_id` (16 random bytes, hex) and
`wrapped_key` (hex: the data key in an `envelope.wrap` to the enclave key, context = `key_context`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .envelope import bind
from .errors import EnvelopeError

MAGIC = b"SMLE"
VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
MAX_HEADER_SIZE = 1 << 20
TAG_SIZE = 16
_PREFIX = struct.Struct(">4sBI")
_LENGTH = struct.Struct(">I")
_CHUNK_DOMAIN = b"sharedml-tee-chunk-v1\0"
_HEADER_FIELDS = {"format", "chunk_size", "dataset_id", "id_column", "allowed_recipients", "measurement",
                  "key_id", "wrapped_key"}


@dataclass(frozen=True)
class SealedHeader:
    """The parsed header of an encrypted file, with the raw bytes that chunks are bound to."""

    fields: dict[str, Any]
    raw: bytes

    @property
    def dataset_id(self) -> str:
        return self.fields["dataset_id"]

    @property
    def key_id(self) -> bytes:
        return bytes.fromhex(self.fields["key_id"])

    @property
    def chunk_size(self) -> int:
        return self.fields["chunk_size"]

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def terms(self) -> dict[str, Any]:
        return {name: self.fields[name] for name in ("dataset_id", "id_column", "allowed_recipients")}


def key_context(measurement: bytes, dataset_id: str, key_id: bytes, terms: dict[str, Any]) -> bytes:
    """What a wrapped data key is bound to: the enclave code, the dataset, the key id and the owner's terms."""
    terms_digest = hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()).digest()
    return bind("sharedml-tee-data-key-v1", measurement, dataset_id, key_id, terms_digest)


def make_header(terms: dict[str, Any], measurement: bytes, key_id: bytes, wrapped_key: bytes,
                chunk_size: int) -> bytes:
    """The canonical header bytes."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes, got {chunk_size}")
    fields = {**terms, "format": "sharedml-tee-sealed-v1", "chunk_size": chunk_size,
              "measurement": measurement.hex(), "key_id": key_id.hex(), "wrapped_key": wrapped_key.hex()}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at end of stream (short reads of pipes and sockets are retried)."""
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _nonce(index: int) -> bytes:
    return bytes(4) + struct.pack(">Q", index)


def _aad(header: SealedHeader, index: int, final: bool) -> bytes:
    dataset = header.dataset_id.encode()
    return (_CHUNK_DOMAIN + header.digest + _LENGTH.pack(len(dataset)) + dataset
            + struct.pack(">QB", index, int(final)))


def write_sealed(src: BinaryIO, dst: BinaryIO, header_raw: bytes, data_key: bytes) -> int:
    """Encrypt `src` into `dst` chunk by chunk; returns the number of plaintext bytes."""
    header = SealedHeader(json.loads(header_raw), header_raw)
    cipher = AESGCM(data_key)
    dst.write(_PREFIX.pack(MAGIC, VERSION, len(header_raw)) + header_raw)
    index, total = 0, 0
    current = _read_full(src, header.chunk_size)
    while True:
        following = _read_full(src, header.chunk_size)
        final = not following
        sealed = cipher.encrypt(_nonce(index), current, _aad(header, index, final))
        dst.write(_LENGTH.pack(len(sealed)) + sealed)
        total += len(current)
        if final:
            return total
        index, current = index + 1, following


def read_header(stream: BinaryIO, source: str = "input") -> SealedHeader:
    """Parse and sanity-check the header; the data key is needed only for the chunks."""
    prefix = _read_full(stream, _PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise EnvelopeError(f"{source}: too short to be a sharedml encrypted file")
    magic, version, length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise EnvelopeError(f"{source}: not a sharedml encrypted file (bad magic); encrypt it with "
                            "`sharedml tee encrypt`")
    if version != VERSION:
        raise EnvelopeError(f"{source}: format version {version}, this sharedml reads version {VERSION}")
    if length > MAX_HEADER_SIZE:
        raise EnvelopeError(f"{source}: header of {length} bytes exceeds {MAX_HEADER_SIZE}; file is corrupt")
    raw = _read_full(stream, length)
    try:
        fields = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EnvelopeError(f"{source}: header is not valid JSON (file corrupt or truncated)") from None
    if not isinstance(fields, dict) or set(fields) != _HEADER_FIELDS:
        raise EnvelopeError(f"{source}: header fields must be exactly {sorted(_HEADER_FIELDS)}")
    texts = [fields[name] for name in _HEADER_FIELDS - {"chunk_size", "allowed_recipients"}]
    recipients = fields["allowed_recipients"]
    if not all(isinstance(text, str) for text in texts) or not isinstance(recipients, dict) or not all(
            isinstance(item, str) for pair in recipients.items() for item in pair):
        raise EnvelopeError(f"{source}: header field of the wrong type; the file is corrupt")
    for name in ("key_id", "wrapped_key", "measurement"):
        try:
            bytes.fromhex(fields[name])
        except ValueError:
            raise EnvelopeError(f"{source}: header field {name} is not hexadecimal; the file is corrupt") from None
    chunk_size = fields["chunk_size"]
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeError(f"{source}: header chunk_size {chunk_size!r} out of range 1..{MAX_CHUNK_SIZE}")
    return SealedHeader(fields, raw)


def header_bytes(header: SealedHeader) -> bytes:
    """The file's bytes up to the end of its header: all a replica needs to take the data key."""
    return _PREFIX.pack(MAGIC, VERSION, len(header.raw)) + header.raw


def iter_plaintext(stream: BinaryIO, header: SealedHeader, data_key: bytes, source: str = "input") -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk, checking each; raise EnvelopeError at the first problem."""
    cipher = AESGCM(data_key)
    limit = header.chunk_size + TAG_SIZE
    index = 0
    while True:
        prefix = _read_full(stream, _LENGTH.size)
        if len(prefix) < _LENGTH.size:
            raise EnvelopeError(f"{source}: truncated: the file ends after {index} chunk(s) without the final "
                                "chunk; upload it again")
        (length,) = _LENGTH.unpack(prefix)
        if not TAG_SIZE <= length <= limit:
            raise EnvelopeError(f"{source}: chunk {index} declares {length} bytes, outside {TAG_SIZE}..{limit}; "
                                "the file is corrupt")
        sealed = _read_full(stream, length)
        if len(sealed) < length:
            raise EnvelopeError(f"{source}: truncated inside chunk {index}")
        plaintext, final = _open_chunk(cipher, header, index, sealed, source)
        yield plaintext
        if final:
            if stream.read(1):
                raise EnvelopeError(f"{source}: bytes follow the final chunk {index}; the file was appended to")
            return
        index += 1


def _open_chunk(cipher: AESGCM, header: SealedHeader, index: int, sealed: bytes, source: str) -> tuple[bytes, bool]:
    for final in (False, True):
        try:
            return cipher.decrypt(_nonce(index), sealed, _aad(header, index, final)), final
        except InvalidTag:
            continue
    raise EnvelopeError(f"{source}: chunk {index} fails authentication: the file was tampered with, its chunks "
                        "reordered, or it belongs to another dataset or key")
