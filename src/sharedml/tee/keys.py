"""Recipient key files: an X25519 key pair as two hex text files, the private one owner-readable only.

Why: model recipients and prediction clients need a long-lived key that owners can list in their
policies (`allowed_recipients: {name: <public key hex>}`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..crypto import kex
from .errors import TeeError


def write_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write `<name>.key` (0600) and `<name>.pub` into `folder`; refuses to overwrite a key."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    private = kex.generate_private_key()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TeeError(f"{private_path} exists; remove it first or choose another name") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(kex.private_key_bytes(private).hex() + "\n")
    public_path.write_text(kex.public_key_bytes(private).hex() + "\n")
    return private_path, public_path


def read_private_key(path: str | Path) -> X25519PrivateKey:
    """Load a `.key` file written by `write_keypair`."""
    try:
        return kex.load_private_key(bytes.fromhex(Path(path).read_text().strip()))
    except FileNotFoundError:
        raise TeeError(f"{path}: key file not found; create one with `sharedml tee keygen`") from None
    except ValueError:
        raise TeeError(f"{path}: not an X25519 private key (64 hex characters)") from None
