"""The host of a replica's enclave: the enclave, the models it serves, and an audit of the key rings it gave
or refused.

Why: this is what the replica's HTTP API (`enclave_api`) calls. Every decision about keys stays in the
enclave (`Enclave.export_keys` verifies the requester's quote, `import_keys` the sender's), so this
layer only frames messages and records what happened. Key-ring messages are msgpack maps decoded by
`net.serialization` (never pickle):

    export response: {quote: sender quote JSON, envelope: key ring envelope (`Enclave.export_keys`)}
"""

from __future__ import annotations

import io
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from ..net.serialization import SerializationError, dumps_bytes, loads
from .enclave import Enclave
from .errors import AttestationError, ClusterError, EnvelopeError
from .predict import PredictionService
from .quotes import Quote
from .sealed import read_header

AUDIT_LENGTH = 100  # most recent exports and refusals kept for `health()`


@dataclass(frozen=True)
class KeyEvent:
    """A key ring released to (or refused to) the holder of `public_key`, a replica of `measurement`."""

    measurement: str
    public_key: str
    detail: str


class EnclaveHost:
    """The enclave of one replica process and what it serves."""

    def __init__(self, enclave: Enclave) -> None:
        self.enclave = enclave
        self._services: dict[str, PredictionService] = {}
        self._exports: deque[KeyEvent] = deque(maxlen=AUDIT_LENGTH)
        self._refusals: deque[KeyEvent] = deque(maxlen=AUDIT_LENGTH)
        self._sync: dict[str, str] = {}
        self._served = 0
        self._lock = threading.Lock()

    # -- key sync ---------------------------------------------------------------------------------

    def export_keys(self, requester: Quote) -> bytes:
        """The key ring for `requester`, if the enclave accepts its quote; every answer is audited."""
        event = KeyEvent(requester.measurement.hex(), requester.public_key.hex(), "")
        try:
            envelope = self.enclave.export_keys(requester)
        except AttestationError as exc:
            with self._lock:
                self._refusals.append(KeyEvent(event.measurement, event.public_key, str(exc)))
            raise
        with self._lock:
            self._exports.append(KeyEvent(event.measurement, event.public_key, f"{len(envelope)} bytes"))
        return dumps_bytes({"quote": self.enclave.quote.to_json(), "envelope": envelope})

    def import_keys(self, response: bytes, peer: str) -> int:
        """Merge a peer's export response (its quote and envelope are checked by the enclave)."""
        try:
            message = loads(response)
            quote, envelope = Quote.from_json(message["quote"], f"peer {peer}"), bytes(message["envelope"])
        except (SerializationError, KeyError, TypeError) as exc:
            raise EnvelopeError(f"peer {peer}: malformed key ring response: {exc}") from None
        return self.enclave.import_keys(quote, envelope)

    def record_sync(self, peer: str, outcome: str) -> None:
        with self._lock:
            self._sync[peer] = outcome

    # -- data and models --------------------------------------------------------------------------

    def add_dataset(self, header: bytes) -> dict[str, Any]:
        """Take a dataset's key into the ring from its encrypted file's header (the start of the file)."""
        parsed = read_header(io.BytesIO(header), "uploaded header")
        known = self.enclave.keyring.get(parsed.key_id) is not None
        self.enclave.data_key(parsed, f"dataset {parsed.dataset_id!r}")
        return {"dataset_id": parsed.dataset_id, "key_id": parsed.key_id.hex(), "new": not known}

    def load_model(self, location: str) -> str:
        """Serve the sealed model at `location` (its key must be in the ring: trained here or synced)."""
        service = PredictionService(self.enclave, location)
        with self._lock:
            self._services[service.model_id] = service
        return service.model_id

    def predict(self, model: str, request: bytes) -> bytes:
        with self._lock:
            service = self._services.get(model)
        if service is None:
            raise ClusterError(f"replica {self.enclave.name} does not serve model {model!r}; load it first "
                               "(POST /v1/models)")
        response = service.handle(request)
        with self._lock:
            self._served += 1
        return response

    def health(self) -> dict[str, Any]:
        """Public facts only: identity, key count and digest (key ids are public), models, requests served,
        key rings exported and refused (to which measurement and key), and the last sync outcome per peer."""
        with self._lock:
            return {"name": self.enclave.name, "measurement": self.enclave.measurement.hex(),
                    "public_key": self.enclave.quote.public_key.hex(), "keys": len(self.enclave.keyring),
                    "digest": self.enclave.keyring.digest(), "models": sorted(self._services), "served": self._served,
                    "exports": [asdict(e) for e in self._exports], "refusals": [asdict(e) for e in self._refusals],
                    "sync": dict(self._sync)}
