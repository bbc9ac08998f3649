"""What an enclave claims and what a verifier accepts: quotes, trust settings, verification results.

Why its own module: these are the types every quote provider (`attestation`'s simulated one, `gramine`'s
hardware one) and every verifier share. Keeping them below both lets `attestation` use `gramine` without
`gramine` importing `attestation` back.

A quote binds `report_data = sha256(enclave public key) || 32 zero bytes` to the enclave's measurement
under a signature from an attestation root (Intel's, for SGX DCAP); `attestation.verify_quote` checks it
against a verifier's `TrustSettings`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import AttestationError

REPORT_DATA_SIZE = 64
MEASUREMENT_SIZE = 32


def report_data_for(public_key: bytes) -> bytes:
    """The 64 bytes of report data that bind an enclave public key into its quote."""
    return hashlib.sha256(public_key).digest() + bytes(REPORT_DATA_SIZE - 32)


@dataclass(frozen=True)
class Quote:
    """An enclave's claim: this public key belongs to code with this measurement, signed by a root."""

    provider: str
    measurement: bytes
    public_key: bytes
    report_data: bytes
    evidence: bytes
    signer: bytes = b""  # the simulated quoting public key; empty for hardware quotes

    def to_json(self) -> str:
        return json.dumps({"provider": self.provider, "measurement": self.measurement.hex(),
                           "public_key": self.public_key.hex(), "report_data": self.report_data.hex(),
                           "evidence": self.evidence.hex(), "signer": self.signer.hex()}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "quote") -> Quote:
        """Parse `to_json` output; errors name `source` and the bad field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AttestationError(f"{source}: not a JSON quote ({exc})") from None
        if not isinstance(data, dict):
            raise AttestationError(f"{source}: a quote is a JSON object, got {type(data).__name__}")
        return cls(provider=_field(data, "provider", source), **{
            name: _hex_field(data, name, source)
            for name in ("measurement", "public_key", "report_data", "evidence", "signer")})


def _field(data: Mapping[str, Any], name: str, source: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise AttestationError(f"{source}: field '{name}' is missing or not a string")
    return value


def _hex_field(data: Mapping[str, Any], name: str, source: str) -> bytes:
    text = "" if name == "signer" and name not in data else _field(data, name, source)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise AttestationError(f"{source}: field '{name}' is not hexadecimal") from None


@dataclass(frozen=True)
class TrustSettings:
    """What a verifier accepts: approved measurements, the simulated root (opt-in), DCAP checking."""

    allowed_measurements: frozenset[bytes]
    allow_simulated: bool = False
    simulated_root: bytes | None = None  # pin one simulated quoting key; None accepts any (still insecure)
    dcap_verify_command: tuple[str, ...] = ()
    pccs_url: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    """A quote that passed `verify_quote`; `insecure` is True for simulated quotes."""

    provider: str
    measurement: bytes
    public_key: bytes
    insecure: bool
    warnings: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        notes = "".join(f"\n  warning: {note}" for note in self.warnings)
        return (f"quote verified: provider={self.provider} measurement={self.measurement.hex()} "
                f"public_key={self.public_key.hex()} insecure={self.insecure}{notes}")


class QuoteProvider(Protocol):
    """Produces a quote for an enclave public key; the provider knows (or reads) the measurement."""

    name: str

    def quote(self, public_key: bytes, config: Mapping[str, Any]) -> Quote: ...
