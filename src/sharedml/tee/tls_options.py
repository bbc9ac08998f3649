"""TLS settings of a TEE process (replica, cluster manager, client SDK), as its config file's `tls` section
or the `sharedml tee cluster` flags give them, and `net.https`'s server and client under them.

Why options, when the federation services always use mutual TLS: every payload that matters here is
already encrypted end to end to an attested enclave key (key rings, prediction requests and responses), so
TLS only hides metadata and keeps strangers off the API, and plain HTTP is acceptable on loopback (tests).
TLS is one set of options for every process: a certificate served (and presented to servers that ask),
the CA that verifies the other side, and optionally a client certificate required by servers.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel, ConfigDict, model_validator

from ..net.https import MAX_BODY_BYTES, TlsFiles, client_context, http_client, server
from .errors import ClusterError


class TlsOptions(BaseModel):
    """TLS for a process that is both a server and a client (replica), or one of them (manager, SDK)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert: Path | None = None  # this process's certificate (served; presented to servers that ask)
    key: Path | None = None  # its private key
    ca: Path | None = None  # CA file that verifies the other side (servers; and clients if required)
    require_client_cert: bool = False  # servers only: refuse clients without a certificate signed by `ca`

    @model_validator(mode="after")
    def _complete(self) -> TlsOptions:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS needs both a certificate (cert) and its private key (key), or neither")
        if self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs ca, the CA file that signs client certificates")
        return self

    def check_files(self, source: str) -> None:
        """Raise ClusterError naming every configured file that does not exist (before any server starts)."""
        missing = [f"{name} {path}" for name in ("cert", "key", "ca")
                   if (path := getattr(self, name)) is not None and not path.is_file()]
        if missing:
            raise ClusterError(f"{source}: TLS file(s) not found: {', '.join(missing)}; create them with "
                               "`sharedml certs init` or fix the paths")

    def server_files(self) -> TlsFiles | None:
        """What `net.https.server` serves with (None: plain HTTP)."""
        if self.cert is None or self.key is None:
            return None
        return TlsFiles(self.cert, self.key, self.ca)

    def client_context(self) -> ssl.SSLContext:
        """Verify servers against `ca` (system CAs if unset) and present `cert` if given."""
        return client_context(self.ca, self.cert, self.key)


def server_for(app: Any, listen: str, tls: TlsOptions | None, max_body: int = MAX_BODY_BYTES) -> uvicorn.Server:
    """`net.https.server` under `tls` (None: plain HTTP); a bad listen address is a ClusterError."""
    try:
        return server(app, listen, None if tls is None else tls.server_files(),
                      verify_clients=tls is not None and tls.require_client_cert, max_body=max_body)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None


def http_client_for(tls: TlsOptions | None, timeout: float) -> httpx.Client:
    """`net.https.http_client` under `tls` (None: https URLs are verified against the system's CAs)."""
    return http_client(None if tls is None else tls.client_context(), timeout)
