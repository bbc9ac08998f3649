"""HTTPS with mutual TLS: the one HTTP layer of every service (deploy's coordinator and nodes, serving's
replicas and registry, the TEE route's replicas and cluster manager) and of their clients.

Why one module: a TLS setting, a body bound or a peer check is a security fix that must be made once. Both
ends present a certificate signed by the federation CA (``sharedml certs init``). A client checks that the
server's certificate names the party it meant to reach (the TLS server name is set to that name, which
only that party's certificate carries as a DNS name); a server reads the client's common name from its
certificate and lets a route accept only the names it expects. The TEE route may also run without client
certificates, or over plain HTTP on loopback (every payload that matters there is already encrypted end to
end to an attested enclave), so `server` takes TLS as an option; the federation services always pass it.

The guest's calls to its hosts, on every prediction's path, use the faster asyncio client in `https_pool`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import HTTPException, Request
from pydantic import StringConstraints
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .certs import PARTY_NAME

PEER_KEY = "sharedml_peer"
GRACEFUL_SHUTDOWN_S = 3.0  # then open requests (e.g. a long poll from a stopped peer) are cut
KEEP_ALIVE_S = 30
MAX_BODY_BYTES = 4 << 20  # a request body any of our APIs accepts by default; control messages are a few KB
MAX_CONNECTIONS = 256  # open connections per server; uvicorn answers 503 beyond it
MAX_BROWSER_REQUESTS = 32  # requests without a client certificate (the board's pages) answered at once
OCTETS = "application/octet-stream"
_DETAIL_CHARS = 500

# Config fields of every service: a federation member's name (its certificate's), and where a server listens.
PartyName = Annotated[str, StringConstraints(pattern=PARTY_NAME.pattern)]
ListenAddress = Annotated[str, StringConstraints(pattern=r"^[^:\s]+:\d{1,5}$")]


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and the CA that verifies the other side, as files (what ssl and uvicorn read).

    Federation members always have all three (`in_dir`). `ca` is None only for a TEE server that asks no
    client certificate and was given no CA."""

    cert: Path
    key: Path
    ca: Path | None

    @classmethod
    def in_dir(cls, cert_dir: Path, name: str) -> TlsFiles:
        """The layout ``sharedml certs init`` writes: ``<name>.crt``, ``<name>.key``, ``ca.crt``."""
        files = cls(cert_dir / f"{name}.crt", cert_dir / f"{name}.key", cert_dir / "ca.crt")
        missing = [str(p) for p in (files.cert, files.key, files.ca) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"certificates for {name!r} not found: missing {', '.join(missing)}; create "
                                    f"them with `sharedml certs init --parties {name} --out {cert_dir}`")
        return files

    def client_context(self) -> ssl.SSLContext:
        return client_context(self.ca, self.cert, self.key)


# ---- server ---------------------------------------------------------------------------------------------


# uvloop has no Windows wheels; asyncio serves the same, at about twice the CPU per request.
EVENT_LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


class _PeerCertProtocol(HttpToolsProtocol):
    """uvicorn puts no TLS details into the ASGI scope; this hands each connection's client certificate
    common name to the app through the per-request state (``request.state.sharedml_peer``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        names = [value for rdn in (cert or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
        self.app_state = {**self.app_state, PEER_KEY: names[0] if names else None}


async def peer_name(request: Request) -> str:
    """The client's certificate common name; uvicorn already refused clients without a CA-signed one.
    (A coroutine, so FastAPI calls it on the event loop instead of handing it to a worker thread.)"""
    name = getattr(request.state, PEER_KEY, None)
    if name is None:
        raise HTTPException(401, "no client certificate: connect with mutual TLS")
    return name


async def require_peer(request: Request, allowed: set[str]) -> str:
    """The client's name if it is one of `allowed`, else 403 naming who may call."""
    name = await peer_name(request)
    if name not in allowed:
        raise HTTPException(403, f"certificate {name!r} may not call this API; allowed: {', '.join(sorted(allowed))}")
    return name


class BoundedBody:
    """ASGI middleware that keeps a caller from making the server read or hold more than it should.

    A caller whose certificate is not in `callers` (when given) is answered 403 before a byte of its body
    is read, and one with no certificate at all, allowed only on a server that lets browsers in, is answered
    401 outside `open_prefix` (the web pages, which log people in themselves); a body over `max_bytes` is
    answered 413 by its Content-Length before it is read, or, sent without one (chunked), as soon as the
    bytes read pass the bound. Only then does the app parse it."""

    def __init__(self, app: Any, max_bytes: int, callers: set[str] | None = None,
                 open_prefix: str | None = None) -> None:
        self.app, self.max_bytes, self.callers, self.open_prefix = app, max_bytes, callers, open_prefix
        self.browsers_in_flight = 0  # requests without a certificate being answered now (one event loop: no lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        peer = scope.get("state", {}).get(PEER_KEY)
        browser = peer is None and self.open_prefix is not None
        if browser and not _under(scope["path"], self.open_prefix):
            return await _answer(send, 401, "no client certificate: connect with mutual TLS "
                                            f"(only {self.open_prefix} is open to browsers)")
        if browser:  # people's pages get a share of the server, the federation's calls keep the rest
            if self.browsers_in_flight >= MAX_BROWSER_REQUESTS:
                return await _answer(send, 503, "the board is busy: try again in a moment")
            self.browsers_in_flight += 1
            try:
                return await self._bounded(scope, receive, send)
            finally:
                self.browsers_in_flight -= 1
        return await self._bounded(scope, receive, send)

    async def _bounded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        peer = scope.get("state", {}).get(PEER_KEY)
        browser = peer is None and self.open_prefix is not None
        if self.callers is not None and peer not in self.callers and not browser:
            return await _answer(send, 403, f"certificate {peer!r} may not call this API; allowed: "
                                            f"{', '.join(sorted(self.callers))}")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                return await _answer(send, 413, f"request body over {self.max_bytes} bytes")
            return await self.app(scope, receive, send)  # the HTTP parser stops at Content-Length
        if dict(scope["headers"]).get(b"transfer-encoding") is None:
            return await self.app(scope, receive, send)  # no body at all
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await _answer(send, 413, f"request body over {self.max_bytes} bytes")
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()
        return await self.app(scope, replay, send)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


async def _answer(send: Any, status: int, detail: str) -> None:
    """A JSON error answer that also closes the connection, so an unread body is dropped, not drained."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit`, for a route that takes less than
    the server's bound (never buffered beyond it)."""
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def server(app: Any, listen: str, tls: TlsFiles | None, *, verify_clients: bool = True,
           max_body: int = MAX_BODY_BYTES, callers: set[str] | None = None,
           browsers_under: str | None = None) -> uvicorn.Server:
    """A uvicorn server on `listen` (``host:port``; port 0 picks a free one) that bounds request bodies to
    `max_body` and, if `callers` is given, refuses other certificates before reading a body.

    With `tls`, it serves HTTPS and, with `verify_clients` (always, for the federation services), requires a
    client certificate signed by `tls.ca`; `tls=None` is plain HTTP (the TEE route on loopback only).
    `browsers_under` (a path prefix such as ``/ui``) lets clients without a certificate in, to that prefix
    only: the TLS handshake then asks for a certificate without requiring one, a certificate that is sent
    is still verified, and every other path answers 401 to a certificate-less client before the app runs.
    uvloop (where installed) and httptools (C) instead of asyncio and h11 (pure Python): on this machine they cut
    the CPU of a kept-alive HTTPS request to about half, which online serving needs at 500 requests/s."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"listen address {listen!r} must be host:port, e.g. 127.0.0.1:8700")
    options: dict[str, Any] = {}
    if tls is not None:
        if verify_clients and tls.ca is None:
            raise ValueError("verifying client certificates needs a CA file (ca)")
        options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key),
                   "ssl_ca_certs": None if tls.ca is None else str(tls.ca),
                   "ssl_cert_reqs": ssl.CERT_NONE if not verify_clients
                   else ssl.CERT_OPTIONAL if browsers_under else ssl.CERT_REQUIRED}
    config = uvicorn.Config(BoundedBody(app, max_body, callers, browsers_under), host=host or "127.0.0.1",
                            port=int(port), http=_PeerCertProtocol, loop=EVENT_LOOP, limit_concurrency=MAX_CONNECTIONS,
                            log_level="warning", lifespan="off", timeout_keep_alive=KEEP_ALIVE_S,
                            proxy_headers=False, access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                            **options)
    return uvicorn.Server(config)


def serve_in_thread(srv: uvicorn.Server, timeout: float = 10.0) -> threading.Thread:
    """Start `srv` in a daemon thread and return once it listens (tests and benchmarks)."""
    thread = threading.Thread(target=srv.run, daemon=True, name="https")
    thread.start()
    _wait_started(srv, timeout, thread.is_alive)
    return thread


def bound_url(srv: uvicorn.Server, timeout: float = 30.0) -> str:
    """Once `srv` (started elsewhere) listens, its base URL with the port actually bound (for port 0)."""
    _wait_started(srv, timeout)
    port = srv.servers[0].sockets[0].getsockname()[1]
    return f"{'https' if srv.config.is_ssl else 'http'}://{srv.config.host}:{port}"


def _wait_started(srv: uvicorn.Server, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not srv.started:
        if time.monotonic() > deadline or not alive():
            raise TimeoutError(f"HTTPS server on {srv.config.host}:{srv.config.port} did not start within {timeout} s")
        time.sleep(0.02)


# ---- client ---------------------------------------------------------------------------------------------


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Verify servers against `ca` (the system's CAs if None) and present `cert` (with `key`) if given."""
    context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def http_client(context: ssl.SSLContext | None, timeout: float, base_url: str = "") -> httpx.Client:
    """A client whose every request gives up after `timeout` seconds (connect, read, write, pool) and that
    verifies servers with `context` (the system's CAs if None); it never follows redirects."""
    return httpx.Client(base_url=base_url, verify=True if context is None else context,
                        timeout=httpx.Timeout(timeout), follow_redirects=False)


def expect_server(name: str) -> dict[str, Any]:
    """Request extensions that make TLS accept only a server certificate naming `name` (the TLS server name
    is set to it), whatever address the URL has: how a client makes sure it reached that party."""
    return {"sni_hostname": name}


def error_detail(body: bytes) -> str:
    """The message of an error answer: FastAPI's ``detail``, else the text (its start), for error messages."""
    text = body.decode(errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:_DETAIL_CHARS]
    return str(parsed.get("detail", text)) if isinstance(parsed, dict) else text[:_DETAIL_CHARS]


class MtlsClient:
    """An HTTPS client that proves its identity and accepts only the server certificate named `server_name`."""

    def __init__(self, base_url: str, tls: TlsFiles, server_name: str, timeout: float = 10.0) -> None:
        self.server_name = server_name
        self.base_url = base_url.rstrip("/")
        self._client = http_client(tls.client_context(), timeout, self.base_url)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._client.request(method, path, extensions=expect_server(self.server_name), **kwargs)

    def close(self) -> None:
        self._client.close()
