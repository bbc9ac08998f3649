"""Quote verification, the `simulated` quote provider, and the choice of provider.

Why: an owner releases a data key only to a public key that provably belongs to an enclave running
approved code. A quote (`quotes.Quote`) binds sha256(enclave public key) to the enclave's measurement
under a signature from an attestation root (Intel's, for SGX DCAP). Every provider sits behind
`quotes.QuoteProvider`; every verification goes through `verify_quote`, which applies the verifier's
`TrustSettings` (allowed measurements, whether the simulated root is trusted, how to check DCAP quotes).

The `simulated` provider signs quotes with a software Ed25519 quoting key. It is INSECURE: whoever holds
that key (the enclave operator) can sign any measurement for any key, so it proves nothing. It exists for
tests and demos; verification accepts it only under `allow_simulated: true`, warns, and marks the result
`insecure=True`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto import signing
from .errors import AttestationError
from .gramine import GramineProvider, verify_sgx_quote
from .measurement import code_measurement
from .quotes import MEASUREMENT_SIZE, Quote, QuoteProvider, TrustSettings, VerificationResult, report_data_for

_SIMULATED_DOMAIN = b"sharedml-tee-simulated-quote-v1\0"


class InsecureAttestationWarning(UserWarning):
    """A simulated quote was produced or accepted: it proves nothing about the code that runs."""


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
    elif quote.provider == GramineProvider.name:
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
    if name == GramineProvider.name:
        return GramineProvider()
    raise AttestationError(f"unknown attestation provider {name!r}; choose 'simulated' (insecure) or 'gramine'")
