"""The enclave worker runtime: key pair, quote, key ring, and attested key sync with peers.

Why: everything secret lives here. At `start()` the worker generates an X25519 key pair in enclave memory
and obtains a quote binding sha256(public key) to its measurement; before that every operation raises
`EnclaveNotReady`, so no data is decrypted by an unattested worker. Data keys come from owners' envelopes
(only if wrapped for this measurement) or from a peer replica whose quote shows the *same* measurement,
over a mutually attested channel: the sender checks the receiver's quote before encrypting the ring to
the receiver's attested key, the receiver checks the sender's quote and that the envelope is
sender-authenticated by the sender's attested key.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import aead, kex
from .attestation import verify_quote
from .envelope import bind, unwrap, wrap
from .errors import AttestationError, EnclaveNotReady, EnvelopeError
from .keyring import KeyEntry, KeyRing
from .owner import KEY_ID_SIZE
from .quotes import Quote, QuoteProvider, TrustSettings
from .sealed import (
    DEFAULT_CHUNK_SIZE,
    SealedHeader,
    iter_plaintext,
    key_context,
    make_header,
    read_header,
    write_sealed,
)
from .storage import open_input, open_output


@dataclass(frozen=True)
class EnclaveConfig:
    """Settings that change what the worker does; part of the measurement."""

    allow_simulated_peers: bool = False  # accept simulated quotes from peer replicas (tests only)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # chunk size of files the enclave writes (models)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Enclave:
    """One enclave worker. Call `start()` first; its quote is what owners and peers verify."""

    def __init__(self, provider: QuoteProvider, config: EnclaveConfig | None = None, name: str = "enclave") -> None:
        self.name = name
        self.config = config or EnclaveConfig()
        self.keyring = KeyRing()
        self._provider = provider
        self._private: X25519PrivateKey | None = None
        self._quote: Quote | None = None

    def start(self) -> Quote:
        """Generate the key pair and obtain the quote; only then does the worker accept work."""
        private = kex.generate_private_key()
        quote = self._provider.quote(kex.public_key_bytes(private), self.config.as_dict())
        if quote.public_key != kex.public_key_bytes(private):
            raise AttestationError(f"{self.name}: the quote provider bound another public key")
        self._private, self._quote = private, quote
        return quote

    @property
    def quote(self) -> Quote:
        if self._quote is None:
            raise EnclaveNotReady(f"{self.name}: not attested yet; call start() before any work")
        return self._quote

    @property
    def measurement(self) -> bytes:
        return self.quote.measurement

    def _key(self) -> X25519PrivateKey:
        if self._private is None:
            raise EnclaveNotReady(f"{self.name}: not attested yet; call start() before any work")
        return self._private

    def peer_trust(self) -> TrustSettings:
        """Peers must run exactly this measurement."""
        return TrustSettings(frozenset({self.measurement}), allow_simulated=self.config.allow_simulated_peers)

    # -- data ---------------------------------------------------------------------------------------

    def data_key(self, header: SealedHeader, source: str = "input") -> KeyEntry:
        """The key of an encrypted file: from the key ring, else unwrapped from the owner's envelope."""
        entry = self.keyring.get(header.key_id)
        if entry is not None:
            return entry
        wrapped_for = header.fields["measurement"]
        if wrapped_for != self.measurement.hex():
            raise EnvelopeError(f"{source}: encrypted for measurement {wrapped_for}, this enclave runs "
                                f"{self.measurement.hex()}; the owner must encrypt to an approved enclave")
        context = key_context(self.measurement, header.dataset_id, header.key_id, header.terms())
        try:
            key = unwrap(self._key(), bytes.fromhex(header.fields["wrapped_key"]), context)
        except (EnvelopeError, ValueError):
            raise EnvelopeError(f"{source}: dataset {header.dataset_id!r}: the data key does not unwrap in replica "
                                f"{self.name}: it was wrapped to another replica (sync keys from that one) or the "
                                "header was altered") from None
        entry = KeyEntry(header.key_id, key, header.terms())
        self.keyring.add(entry)
        return entry

    @contextlib.contextmanager
    def open_sealed(self, location: str) -> Iterator[tuple[KeyEntry, Iterator[bytes]]]:
        """Open an encrypted file: its key entry and an iterator over its checked plaintext chunks."""
        self._key()
        with open_input(location) as stream:
            header = read_header(stream, str(location))
            entry = self.data_key(header, str(location))
            yield entry, iter_plaintext(stream, header, entry.key, str(location))

    def seal(self, plaintext: bytes, location: str, terms: dict[str, Any]) -> bytes:
        """Encrypt enclave output (a model) to storage under a new key kept in the key ring; returns the key id."""
        key, key_id = aead.generate_key(), os.urandom(KEY_ID_SIZE)
        wrapped = wrap(self.quote.public_key, key, key_context(self.measurement, terms["dataset_id"], key_id, terms))
        header = make_header(terms, self.measurement, key_id, wrapped, self.config.chunk_size)
        with open_output(location) as target:
            write_sealed(io.BytesIO(plaintext), target, header, key)
        self.keyring.add(KeyEntry(key_id, key, terms))
        return key_id

    # -- envelopes addressed to this enclave ----------------------------------------------------------

    def open_envelope(self, blob: bytes, context: bytes, sender_public: bytes | None = None) -> bytes:
        return unwrap(self._key(), blob, context, sender_public)

    def seal_to(self, recipient_public: bytes, plaintext: bytes, context: bytes) -> bytes:
        """An envelope to `recipient_public`, authenticated by this enclave's attested key."""
        return wrap(recipient_public, plaintext, context, sender=self._key())

    # -- key sync -------------------------------------------------------------------------------------

    def _sync_context(self, sender: Quote, receiver: Quote) -> bytes:
        return bind("sharedml-tee-keyring-v1", sender.measurement, sender.public_key, receiver.public_key)

    def export_keys(self, peer: Quote) -> bytes:
        """The key ring encrypted to `peer`, only if its quote shows this very measurement."""
        try:
            verify_quote(peer, self.peer_trust())
        except AttestationError as exc:
            raise AttestationError(f"{self.name}: refusing to release keys: {exc}") from None
        return self.seal_to(peer.public_key, self.keyring.to_bytes(), self._sync_context(self.quote, peer))

    def import_keys(self, sender: Quote, blob: bytes) -> int:
        """Merge a peer's key ring after checking its quote and that it really sent it; returns new keys."""
        try:
            verify_quote(sender, self.peer_trust())
        except AttestationError as exc:
            raise AttestationError(f"{self.name}: refusing keys from an unattested peer: {exc}") from None
        raw = self.open_envelope(blob, self._sync_context(sender, self.quote), sender.public_key)
        return self.keyring.merge_bytes(raw)
