"""Kept-alive HTTPS connections on an event loop: the client of the one call on every online prediction's
path (the serving guest asking its hosts), the fast path of `https`.

Why not a thread per call (http.client) or httpx: handing each call to a thread and back cost more CPU than
the prediction, and httpx spent about 1.3 ms of CPU per call on this machine. Here a call is an asyncio
protocol parsing the answer with httptools (the parser uvicorn uses), so a guest doing 500 requests/s
spends its CPU on predictions. The TLS server name is the called party's name, so the answering
certificate must be that party's own; the caller presents its own. Connections are reused (a TLS handshake
costs about 4 ms of CPU here, with OpenSSL 3.0).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

MAX_ANSWER_BYTES = 256 << 20  # a serving host's answer for 100,000 ids is a few MB; beyond this it is garbage


class PeerClosed(ConnectionError):
    """The server closed the connection before answering (a kept-alive connection it timed out, or a crash)."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(PeerClosed("connection closed before the answer"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_ANSWER_BYTES:
            self._fail(ConnectionError(f"answer larger than {MAX_ANSWER_BYTES} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.reusable = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._parser.get_status_code(), b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    async def post(self, host: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        assert self.transport is not None
        self._answer, self._body, self._size = asyncio.get_running_loop().create_future(), [], 0
        self.transport.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                             % (path.encode(), host.encode(), content_type.encode(), len(body), body))
        return await self._answer

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle connections per (url, party), reused last-in first-out; use from one event loop."""

    def __init__(self, context: ssl.SSLContext, keep: int = 16) -> None:
        self.context, self.keep = context, keep
        self._idle: dict[tuple[str, str], list[_Connection]] = {}

    async def _take(self, url: str, party: str) -> tuple[_Connection, bool]:
        idle = self._idle.get((url, party))
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection, True
        parts = urlsplit(url)
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, parts.hostname or "127.0.0.1", parts.port or 443, ssl=self.context, server_hostname=party)
        return connection, False

    async def post(self, url: str, party: str, path: str, body: bytes, content_type: str,
                   timeout: float) -> tuple[int, bytes]:
        """(status, body) within `timeout` s (connecting included). A kept-alive connection the server
        closed meanwhile is replaced once; any other failure (refused, reset, timeout) raises, for the
        caller to fail over."""
        async with asyncio.timeout(timeout):
            for attempt in range(2):
                connection, reused = await self._take(url, party)
                try:
                    answer = await connection.post(party, path, body, content_type)
                except PeerClosed:
                    if reused and attempt == 0:
                        continue
                    raise
                except BaseException:
                    connection.close()  # a timeout or cancellation mid-answer: the connection is out of step
                    raise
                self._give_back(url, party, connection)
                return answer
        raise AssertionError("unreachable")

    def _give_back(self, url: str, party: str, connection: _Connection) -> None:
        idle = self._idle.setdefault((url, party), [])
        if connection.reusable and len(idle) < self.keep:
            idle.append(connection)
        else:
            connection.close()
