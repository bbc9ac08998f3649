"""HTTP(S) plumbing of the network cluster: TLS settings, clients with timeouts, servers, bounded bodies.

Why: every payload that matters is already encrypted end to end to an attested enclave key (key rings,
prediction requests and responses), so TLS here only hides metadata and keeps strangers off the API;
plain HTTP is acceptable on loopback (tests). TLS is one set of options for every process: a server
certificate, the CA that verifies the other side, and optionally a client certificate required by
servers and presented by clients.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, model_validator

from .errors import ClusterError

MAX_BODY = 64 << 20  # bytes; the largest request or key ring a replica accepts
OCTETS = "application/octet-stream"


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

    @property
    def serves_tls(self) -> bool:
        return self.cert is not None

    def client_context(self) -> ssl.SSLContext:
        """Verify servers against `ca` (system CAs if unset) and present `cert` if given."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None and self.key is not None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


def http_client(tls: TlsOptions | None, timeout: float) -> httpx.Client:
    """A client whose every request gives up after `timeout` seconds (connect, read, write, pool)."""
    verify: ssl.SSLContext | bool = tls.client_context() if tls is not None else True
    return httpx.Client(verify=verify, timeout=httpx.Timeout(timeout), follow_redirects=False)


def server(app: object, listen: str, tls: TlsOptions | None) -> uvicorn.Server:
    """A uvicorn server on `listen` (`host:port`, port 0 picks a free one), with TLS if configured."""
    host, _, port = listen.rpartition(":")
    options: dict[str, object] = {}
    if tls is not None and tls.serves_tls:
        options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key),
                   "ssl_ca_certs": str(tls.ca) if tls.ca else None,
                   "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE}
    try:
        port_number = int(port)
    except ValueError:
        raise ClusterError(f"listen address {listen!r} must be host:port, e.g. 127.0.0.1:8700") from None
    config = uvicorn.Config(app, host=host or "127.0.0.1", port=port_number, log_level="warning", lifespan="off",
                            timeout_keep_alive=5, **options)
    return uvicorn.Server(config)


def bound_url(srv: uvicorn.Server, tls: TlsOptions | None, timeout: float = 30.0) -> str:
    """Wait until `srv` listens; its base URL with the port actually bound (for port 0)."""
    deadline = time.monotonic() + timeout
    while not srv.started:
        if time.monotonic() > deadline:
            raise ClusterError(f"server on {srv.config.host}:{srv.config.port} did not start within {timeout} s")
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if tls is not None and tls.serves_tls else "http"
    return f"{scheme}://{srv.config.host}:{port}"


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` (never buffered beyond it)."""
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def detail(response: httpx.Response) -> str:
    """The error text of a failed response (FastAPI's `detail`, else the raw text), for messages."""
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]
