"""The enclave's key ring: data keys (and model keys) with the owner terms they were released under.

Why: replicas with the same measurement must be able to serve each other's datasets and models, so keys
are held per key id (not per enclave key pair) and travel between attested replicas as one serialized
ring, encrypted to the receiving enclave. Terms travel with each key so a replica that never saw the
original envelope still enforces the owner's recipients.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from ..net.serialization import SerializationError, dumps_bytes, loads
from .errors import EnvelopeError


@dataclass(frozen=True)
class KeyEntry:
    """One data or model key and the terms (dataset id, id column, allowed recipients) it came with."""

    key_id: bytes
    key: bytes
    terms: dict[str, Any]

    @property
    def dataset_id(self) -> str:
        return self.terms["dataset_id"]


class KeyRing:
    """Thread-safe key id -> KeyEntry map; lives only in enclave memory."""

    def __init__(self) -> None:
        self._entries: dict[bytes, KeyEntry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key_id: bytes) -> KeyEntry | None:
        with self._lock:
            return self._entries.get(key_id)

    def add(self, entry: KeyEntry) -> None:
        with self._lock:
            self._entries[entry.key_id] = entry

    def digest(self) -> str:
        """SHA-256 (hex) of the sorted key ids: equal digests mean equal rings. Key ids are public (they are
        in every file header), so replicas publish the digest to tell peers when a sync is needed."""
        with self._lock:
            ids = sorted(self._entries)
        return hashlib.sha256(b"".join(ids)).hexdigest()

    def to_bytes(self) -> bytes:
        with self._lock:
            entries = [[e.key_id, e.key, json.dumps(e.terms, sort_keys=True)] for e in self._entries.values()]
        return dumps_bytes(entries)

    def merge_bytes(self, raw: bytes) -> int:
        """Add every entry of a serialized ring; returns how many were new."""
        try:
            entries = loads(raw)
            parsed = [KeyEntry(bytes(key_id), bytes(key), json.loads(terms)) for key_id, key, terms in entries]
        except (SerializationError, ValueError, TypeError) as exc:
            raise EnvelopeError(f"malformed key ring from peer: {exc}") from None
        new = 0
        with self._lock:
            for entry in parsed:
                new += entry.key_id not in self._entries
                self._entries[entry.key_id] = entry
        return new
