"""The one route on every prediction's path, served as raw ASGI in front of the party's FastAPI app.

Why: the guest's `POST /v1/predict` and the host's `POST /v1/partial` run hundreds of times a second, and
Starlette's request object, middleware stack and router cost more CPU per call than the prediction. Here
such a route reads the body, checks the caller's certificate name and calls its handler; every other path
(health, loading versions, traffic) goes to the FastAPI app unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..net.https import PEER_KEY
from .errors import Forbidden, ServingError

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[tuple[str, bytes]]]  # request body -> (content type, answer body)


class HotRoute:
    """`POST path` answered by `handler` for callers whose certificate name is in `allowed` ('*': any);
    a ServingError answers with its status and message as JSON `{"detail": ...}`."""

    def __init__(self, app: Any, path: str, handler: Handler, allowed: set[str]) -> None:
        self.app, self.path, self.handler, self.allowed = app, path, handler, allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = await _read_body(receive)
        if request is None:
            return  # the caller went away before sending its request
        try:
            self._check_caller(scope.get("state", {}).get(PEER_KEY))
            content_type, body = await self.handler(request)
            status = 200
        except ServingError as exc:
            status, content_type, body = exc.status, "application/json", _detail(str(exc))
        except Exception:  # noqa: BLE001 - the caller gets a 500, the log gets the traceback
            log.exception("%s failed", self.path)
            status, content_type, body = 500, "application/json", _detail("internal error; see the replica's log")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    def _check_caller(self, caller: str | None) -> None:
        if "*" in self.allowed:
            return
        if caller not in self.allowed:
            raise Forbidden(f"certificate {caller!r} may not call {self.path}; "
                            f"allowed: {', '.join(sorted(self.allowed))}")


async def _read_body(receive: Callable) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _detail(message: str) -> bytes:
    return json.dumps({"detail": message}).encode()
