"""Online prediction inside the enclave, with encrypted requests and responses.

Why: feature rows sent for scoring are as sensitive as training data, and scores are model outputs that
owners restricted to their allowed recipients. A client seals each request to the replica's attested
key (auth mode with the client's own X25519 key, so the enclave knows who asks and serves only the
model's recipients); the request carries a fresh response key, so only that client reads the scores.

Request (msgpack map): client public key, model id, envelope of {request_id, response_key, rows}.
Response: AES-256-GCM under the response key, aad binding the request id.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import aead, kex
from ..net.serialization import SerializationError, dumps_bytes, loads
from .attestation import verify_quote
from .enclave import Enclave
from .envelope import bind, wrap
from .errors import EnvelopeError, RequestRejected
from .models import TrainedModel, model_name
from .quotes import Quote, TrustSettings


def _request_context(measurement: bytes, model_id: str, client: bytes) -> bytes:
    return bind("sharedml-tee-predict-request-v1", measurement, model_id, client)


def _response_aad(request_id: bytes) -> bytes:
    return bind("sharedml-tee-predict-response-v1", request_id)


class PredictionService:
    """Serves one sealed model from inside an enclave; any replica holding the model key can run it."""

    def __init__(self, enclave: Enclave, model_location: str) -> None:
        self.enclave = enclave
        with enclave.open_sealed(model_location) as (entry, chunks):
            self.model = TrainedModel.from_bytes(b"".join(chunks))
        self.model_id = entry.dataset_id
        self._clients = {bytes.fromhex(key) for key in entry.terms["allowed_recipients"].values()}

    def handle(self, request: bytes) -> bytes:
        """Decrypt a request, score its rows, return the encrypted scores."""
        try:
            message = loads(request)
            client, model_id, envelope = bytes(message["client"]), message["model"], bytes(message["envelope"])
        except (SerializationError, KeyError, TypeError) as exc:
            raise RequestRejected(f"malformed prediction request: {exc}") from None
        if model_id != self.model_id:
            raise RequestRejected(f"this service serves {self.model_id}, not {model_id!r}")
        if client not in self._clients:
            raise RequestRejected("the client key is not a recipient of this model under the owners' policies")
        try:
            body = loads(self.enclave.open_envelope(envelope, _request_context(self.enclave.measurement, model_id,
                                                                                client), client))
            scores = self.model.predict_scores(body["rows"])
            return aead.seal(bytes(body["response_key"]), dumps_bytes({"scores": np.asarray(scores)}),
                             _response_aad(bytes(body["request_id"])))
        except (EnvelopeError, SerializationError, KeyError, TypeError, ValueError) as exc:
            raise RequestRejected(f"prediction request refused: {exc}") from None


class PredictionClient:
    """A model recipient asking attested replicas for scores."""

    def __init__(self, key: X25519PrivateKey, trust: TrustSettings, model_id: bytes) -> None:
        self._key = key
        self._public = kex.public_key_bytes(key)
        self._trust = trust
        self.model_id = model_name(model_id)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def _check(self, quote: Quote) -> None:
        with self._lock:
            known = quote.public_key in self._verified
        if not known:
            verify_quote(quote, self._trust)
            with self._lock:
                self._verified.add(quote.public_key)

    def ask(self, replica, rows: np.ndarray) -> np.ndarray:
        """One round trip to `replica` (anything with `.quote` and `.handle(bytes) -> bytes`)."""
        quote = replica.quote
        self._check(quote)
        request_id, response_key = os.urandom(16), aead.generate_key()
        body = dumps_bytes({"request_id": request_id, "response_key": response_key,
                            "rows": np.ascontiguousarray(rows, dtype=np.float64)})
        envelope = wrap(quote.public_key, body, _request_context(quote.measurement, self.model_id, self._public),
                        sender=self._key)
        response = replica.handle(dumps_bytes({"client": self._public, "model": self.model_id, "envelope": envelope}))
        return loads(aead.open_(response_key, response, _response_aad(request_id)))["scores"]
