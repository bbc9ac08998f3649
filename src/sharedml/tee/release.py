"""Model release: who may receive a model, the release file, and the recipient's side of it.

Why: each owner's policy lists who may receive outputs computed from its data, so a model trained on
several owners' data may go only to recipients that *every* owner allows, with the same public key.
The release is an envelope to the recipient's X25519 key, sender-authenticated by the enclave's attested
key and shipped with the enclave's quote, so the recipient can check which code produced the model.

Release file (msgpack map): format "sharedml-tee-release-v1", recipient, model_id, datasets, quote (JSON
text), envelope (`envelope.wrap`, context = `release_context`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import kex
from ..net.serialization import SerializationError, dumps_bytes, loads
from .attestation import verify_quote
from .envelope import bind, unwrap
from .errors import EnvelopeError, ReleaseError
from .models import TrainedModel
from .quotes import Quote, TrustSettings, VerificationResult

FORMAT = "sharedml-tee-release-v1"


def allowed_recipients(terms: Sequence[dict[str, Any]], requested: Sequence[str]) -> dict[str, bytes]:
    """The requested recipients' public keys, if every dataset's terms allow each with the same key."""
    if not requested:
        raise ReleaseError("name at least one model recipient")
    common = {name: key for name, key in terms[0]["allowed_recipients"].items()
              if all(t["allowed_recipients"].get(name) == key for t in terms[1:])}
    if not common:
        raise ReleaseError("no recipient is allowed (with the same public key) by every owner's policy "
                           f"({', '.join(t['dataset_id'] for t in terms)}); the model cannot be released")
    for name in requested:
        if name not in common:
            missing = [t["dataset_id"] for t in terms if name not in t["allowed_recipients"]]
            why = (f"is not allowed by the policy of dataset(s) {', '.join(missing)}" if missing
                   else "has a different public key in different owners' policies")
            raise ReleaseError(f"recipient {name!r} {why}; recipients allowed by every owner: "
                               f"{', '.join(sorted(common))}")
    return {name: bytes.fromhex(common[name]) for name in requested}


def release_context(measurement: bytes, recipient: str, public_key: bytes, model_id: bytes,
                    datasets: Sequence[str]) -> bytes:
    return bind("sharedml-tee-model-v1", measurement, recipient, public_key, model_id, "\n".join(datasets))


def release_file(quote: Quote, recipient: str, model_id: bytes, datasets: Sequence[str], envelope: bytes) -> bytes:
    return dumps_bytes({"format": FORMAT, "recipient": recipient, "model_id": model_id,
                        "datasets": list(datasets), "quote": quote.to_json(), "envelope": envelope})


@dataclass(frozen=True)
class OpenedRelease:
    """A decrypted model with where it came from."""

    model: TrainedModel
    model_id: bytes
    datasets: list[str]
    verification: VerificationResult


def decrypt_model(raw: bytes, private_key: X25519PrivateKey, trust: TrustSettings,
                  source: str = "release") -> OpenedRelease:
    """Check the producing enclave's quote, then open the model; raises on any mismatch."""
    try:
        fields = loads(raw)
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            raise EnvelopeError(f"{source}: not a {FORMAT} file")
        recipient, model_id, datasets = fields["recipient"], bytes(fields["model_id"]), list(fields["datasets"])
        quote, envelope = Quote.from_json(fields["quote"], f"{source} quote"), bytes(fields["envelope"])
    except (SerializationError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"{source}: malformed release file: {exc}") from None
    verification = verify_quote(quote, trust)
    context = release_context(quote.measurement, recipient, kex.public_key_bytes(private_key), model_id, datasets)
    try:
        payload = unwrap(private_key, envelope, context, sender_public=quote.public_key)
    except EnvelopeError:
        raise EnvelopeError(f"{source}: the model was not released to this key (recipient {recipient!r}) or the "
                            "file was altered") from None
    return OpenedRelease(TrainedModel.from_bytes(payload), model_id, datasets, verification)
