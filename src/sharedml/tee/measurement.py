"""The enclave worker's measurement: SHA-256 over its code files and its configuration.

Why: an owner approves *code*, not a machine. Under the `simulated` provider this value stands in for
SGX's MRENCLAVE; any change to one of the files below, or to the configuration, changes it, so an owner's
`allowed_measurements` stops matching and the changed worker receives no key.

Measured files (paths relative to the `sharedml` package, sorted, `/` separators):

- every `*.py` file directly in `tee/` (the enclave runtime, formats, training, prediction, CLI);
- `crypto/aead.py`, `crypto/kex.py`, `crypto/signing.py` (the primitives the worker uses);
- `net/serialization.py` (the only decoder applied to bytes that come from outside).

Third-party libraries (numpy, pandas, xgboost, scikit-learn, cryptography) and the Python interpreter are
NOT measured here; under Gramine the manifest's `sgx.trusted_files` cover them and MRENCLAVE is the
measurement (see examples/tee/sharedml-enclave.manifest.template).

Byte layout hashed::

    b"sharedml-tee-measurement-v1\\0"
    for each file, in sorted order: u32 len(path) | path (utf-8) | u64 len(content) | content
    u64 len(config) | config (canonical JSON: sorted keys, no spaces, utf-8)

All integers big-endian.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DOMAIN = b"sharedml-tee-measurement-v1\0"
_SHARED_FILES = ("crypto/aead.py", "crypto/kex.py", "crypto/signing.py", "net/serialization.py")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def measured_files(root: Path = PACKAGE_ROOT) -> list[str]:
    """The measured paths under `root` (the `sharedml` package directory), sorted."""
    tee = sorted(f"tee/{path.name}" for path in (root / "tee").glob("*.py"))
    return sorted([*tee, *_SHARED_FILES])


def canonical_config(config: Mapping[str, Any]) -> bytes:
    """The configuration as canonical JSON, so equal configurations hash equally on every machine."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def code_measurement(config: Mapping[str, Any], root: Path = PACKAGE_ROOT) -> bytes:
    """The 32-byte measurement of the worker code under `root` together with `config`."""
    digest = hashlib.sha256(_DOMAIN)
    for relative in measured_files(root):
        content = (root / relative).read_bytes()
        name = relative.encode()
        digest.update(struct.pack(">I", len(name)) + name + struct.pack(">Q", len(content)))
        digest.update(content)
    config_bytes = canonical_config(config)
    digest.update(struct.pack(">Q", len(config_bytes)) + config_bytes)
    return digest.digest()
