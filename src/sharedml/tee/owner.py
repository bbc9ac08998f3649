"""The data owner's tool: check the enclave's quote against the policy, then encrypt a file to it.

Why: this is the single point where an owner's data key leaves the owner, so every check happens before
a key exists: the quote must verify under the policy's trust settings (measurement approved, simulated
quotes only if allowed). Only then is a fresh 256-bit data key generated, wrapped to the attested
enclave key (bound to the measurement, dataset id, key id and the owner's terms) and used to encrypt the
file in authenticated chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..crypto import aead
from .attestation import verify_quote
from .envelope import wrap
from .owner_policy import OwnerPolicy
from .quotes import Quote, VerificationResult
from .sealed import DEFAULT_CHUNK_SIZE, key_context, make_header, write_sealed
from .storage import open_input, open_output

KEY_ID_SIZE = 16


@dataclass(frozen=True)
class EncryptionReport:
    """What `encrypt_file` did: the verified quote, the key id and the plaintext size."""

    verification: VerificationResult
    key_id: bytes
    plaintext_bytes: int


def encrypt_file(policy: OwnerPolicy, quote: Quote, src: str | Path, dst: str | Path,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> EncryptionReport:
    """Encrypt `src` (local path or storage URL) to the enclave behind `quote`, writing `dst`."""
    verification = verify_quote(quote, policy.trust())
    data_key = aead.generate_key()
    key_id = os.urandom(KEY_ID_SIZE)
    terms = policy.terms()
    wrapped = wrap(quote.public_key, data_key, key_context(quote.measurement, policy.dataset_id, key_id, terms))
    header = make_header(terms, quote.measurement, key_id, wrapped, chunk_size)
    with open_input(src) as source, open_output(dst) as target:
        size = write_sealed(source, target, header, data_key)
    return EncryptionReport(verification, key_id, size)
