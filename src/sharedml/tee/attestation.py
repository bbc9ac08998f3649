"""Quotes, their verification, and the `simulated` quote provider.

Why: an owner releases a data key only to a public key that provably belongs to an enclave running
approved code. A quote binds `report_data = sha256(enclave public key) || 32 zero bytes` to the
enclave's measurement under a signature from an attestation root (Intel's, for SGX DCAP). Every provider
sits behind `QuoteProvider`; every verification goes through `verify_quote`, which applies the
verifier's `TrustSettings` (allowed measurements, whether the simulated root is trusted, how to check
DCAP quotes).

The `simulated` provider signs quotes with a software Ed25519 quoting key. It is INSECURE: whoever holds
that key (the enclave operator) can sign any measurement for any key, so it proves nothing. It exists for
tests and demos; verification accepts it only under `allow_simulated: true`, warns, and marks the result
`insecure=True`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto import signing
from .errors import AttestationError
from .measurement import code_measurement

REPORT_DATA_SIZE = 64
MEASUREMENT_SIZE = 32
_SIMULATED_DOMAIN = b"sharedml-tee-simulated-quote-v1\0"


class InsecureAttestationWarning(UserWarning):
    """A simulated quote was produced or accepted: it proves nothing about the code that runs."""


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


class SimulatedProvider:
    """Software quotes signed by an Ed25519 quoting key: INSECURE, for tests and demos only."""

    name = "simulated"

    def __init__(self, quoting_key: Ed25519PrivateKey | None = None) -> None:
        warnings.warn("simulated attestation: quotes are signed by a software key and prove nothing about "
                      "the code that runs; never use it for real data", InsecureAttestationWarning, stacklevel=2)
        self._key = quoting_key or signing.generate_private_key()

    @property
    def root(self) -> bytes:
        """The quoting public key (what a policy's `simulated_root` pins)."""
        return signing.public_key_bytes(self._key)

    def quote(self, public_key: bytes, config: Mapping[str, Any]) -> Quote:
        measurement = code_measurement(config)
        report_data = report_data_for(public_key)
        signature = signing.sign(self._key, _simulated_body(measurement, report_data))
        return Quote(self.name, measurement, public_key, report_data, signature, self.root)


def _simulated_body(measurement: bytes, report_data: bytes) -> bytes:
    return _SIMULATED_DOMAIN + measurement + report_data


def verify_quote(quote: Quote, trust: TrustSettings) -> VerificationResult:
    """Check a quote's signature chain, its key binding and its measurement; raise AttestationError if any fails."""
    if len(quote.measurement) != MEASUREMENT_SIZE:
        raise AttestationError(f"quote measurement must be {MEASUREMENT_SIZE} bytes, got {len(quote.measurement)}")
    if quote.report_data != report_data_for(quote.public_key):
        raise AttestationError("quote report_data does not equal sha256(public_key): the key is not bound "
                               "to this quote; refusing it")
    if quote.provider == SimulatedProvider.name:
        notes = _verify_simulated(quote, trust)
    elif quote.provider == "gramine":
        from .gramine import verify_sgx_quote

        notes = verify_sgx_quote(quote, trust)
    else:
        raise AttestationError(f"unknown quote provider {quote.provider!r}; known: simulated, gramine")
    if quote.measurement not in trust.allowed_measurements:
        allowed = ", ".join(sorted(m.hex() for m in trust.allowed_measurements)) or "none"
        raise AttestationError(f"enclave measurement {quote.measurement.hex()} is not an allowed measurement "
                               f"(allowed: {allowed}); add it to allowed_measurements only if you approve "
                               "that code")
    return VerificationResult(quote.provider, quote.measurement, quote.public_key,
                              insecure=quote.provider == SimulatedProvider.name, warnings=notes)


def _verify_simulated(quote: Quote, trust: TrustSettings) -> tuple[str, ...]:
    if not trust.allow_simulated:
        raise AttestationError("quote from the 'simulated' provider refused: the policy does not set "
                               "allow_simulated: true (simulated quotes prove nothing; tests only)")
    if trust.simulated_root is not None and quote.signer != trust.simulated_root:
        raise AttestationError(f"simulated quote signed by {quote.signer.hex()}, not by the pinned "
                               f"simulated_root {trust.simulated_root.hex()}")
    try:
        signing.verify(quote.signer, _simulated_body(quote.measurement, quote.report_data), quote.evidence)
    except (signing.SignatureError, ValueError) as exc:
        raise AttestationError(f"simulated quote signature does not verify: {exc}") from None
    note = "simulated attestation is INSECURE: the quoting key is software, the enclave operator can forge quotes"
    warnings.warn(note, InsecureAttestationWarning, stacklevel=3)
    return (note,)


def provider_named(name: str) -> QuoteProvider:
    """The provider for a CLI/config name: 'simulated' or 'gramine'."""
    if name == SimulatedProvider.name:
        return SimulatedProvider()
    if name == "gramine":
        from .gramine import GramineProvider

        return GramineProvider()
    raise AttestationError(f"unknown attestation provider {name!r}; choose 'simulated' (insecure) or 'gramine'")
