"""HTTPS with mutual TLS for the control plane (coordinator <-> node, CLI -> coordinator).

Both ends present a certificate signed by the federation CA (``sharedml certs init``). A client
checks the server's certificate names the party it meant to reach (the TLS server name is set to
that name, which only that party's certificate carries as a DNS name); a server reads the client's
common name from its certificate and lets a route accept only the names it expects.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import HTTPException, Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PEER_KEY = "sharedml_peer"
GRACEFUL_SHUTDOWN_S = 3.0  # then open requests (e.g. a long poll from a stopped peer) are cut
MAX_BODY_BYTES = 4 << 20  # a request body any of our APIs accepts; control messages are a few KB
MAX_CONNECTIONS = 256  # open connections per server; uvicorn answers 503 beyond it


@dataclass(frozen=True)
class TlsFiles:
    """A party's certificate, its key and the federation CA, as files (what ssl and uvicorn read)."""

    cert: Path
    key: Path
    ca: Path

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
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


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
    is read; a body over `max_bytes` is answered 413 by its Content-Length before it is read, or, sent
    without one (chunked), as soon as the bytes read pass the bound. Only then does the app parse it."""

    def __init__(self, app: Any, max_bytes: int, callers: set[str] | None = None) -> None:
        self.app, self.max_bytes, self.callers = app, max_bytes, callers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        peer = scope.get("state", {}).get(PEER_KEY)
        if self.callers is not None and peer not in self.callers:
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


async def _answer(send: Any, status: int, detail: str) -> None:
    """A JSON error answer that also closes the connection, so an unread body is dropped, not drained."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def server(app: Any, listen: str, tls: TlsFiles, max_body: int = MAX_BODY_BYTES,
           callers: set[str] | None = None) -> uvicorn.Server:
    """A uvicorn server that requires a CA-signed client certificate on every connection, bounds request
    bodies to `max_body` and, if `callers` is given, refuses other certificates before reading a body.

    uvloop and httptools (C) instead of asyncio and h11 (pure Python): on this machine they cut the CPU
    of a kept-alive HTTPS request to about half, which online serving needs at 500 requests/s."""
    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(BoundedBody(app, max_body, callers), host=host or "127.0.0.1", port=int(port),
                            http=_PeerCertProtocol, loop="uvloop", limit_concurrency=MAX_CONNECTIONS,
                            ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), ssl_ca_certs=str(tls.ca),
                            ssl_cert_reqs=ssl.CERT_REQUIRED, log_level="warning", lifespan="off",
                            timeout_keep_alive=30, proxy_headers=False, access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    return uvicorn.Server(config)


def serve_in_thread(srv: uvicorn.Server, timeout: float = 10.0) -> threading.Thread:
    """Start `srv` in a daemon thread and return once it listens (tests and benchmarks)."""
    thread = threading.Thread(target=srv.run, daemon=True, name="https")
    thread.start()
    deadline = time.monotonic() + timeout
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise TimeoutError(f"HTTPS server on {srv.config.host}:{srv.config.port} did not start within {timeout} s")
        time.sleep(0.05)
    return thread


class MtlsClient:
    """An HTTPS client that proves its identity and accepts only the server certificate named `server_name`."""

    def __init__(self, base_url: str, tls: TlsFiles, server_name: str, timeout: float = 10.0) -> None:
        self.server_name = server_name
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, verify=tls.client_context(), timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._client.request(method, path, extensions={"sni_hostname": self.server_name}, **kwargs)

    def close(self) -> None:
        self._client.close()
