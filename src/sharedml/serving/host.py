"""The host's service: for a batch of sample ids, its partial result for the guest, and nothing else.

Why a separate app: a host's answer is the only thing that leaves it at prediction time, so the whole
surface is one route that only the guest's certificate may call. It reads its own features by id from
its feature source and answers with what the batch protocol would send for those rows (see `parts`).

    POST /v1/partial   msgpack {model, version, ids} -> msgpack answer (guest's certificate only)
    GET  /v1/health    {party, name, role, versions}
    POST /v1/models    {name, version, part}: load a version (admins); DELETE /v1/models/{name}/{version}
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from ..net.https import require_peer
from .errors import ServingError
from .features import FeatureSource
from .hot_routes import HotRoute
from .model_admin import LoadRequest, add_unload_route, error_handler, health
from .parts import HostPart, load_model
from .versions import ModelBook
from .wire import CONTENT_TYPE, decode_request, encode_answer


class HostService:
    """A host replica's state: its feature source and the model versions it has loaded."""

    def __init__(self, party: str, name: str, guest: str, source: FeatureSource, admins: set[str],
                 base_dir: Path = Path(".")) -> None:
        self.party, self.name, self.guest, self.source = party, name, guest, source
        self.admins, self.base_dir = admins, base_dir
        self.book: ModelBook[HostPart] = ModelBook(party)

    def load(self, name: str, version: int, model: dict, where: str) -> None:
        self.book.add(name, version, HostPart(model, self.party, where))

    async def partial(self, body: bytes) -> tuple[str, bytes]:
        """`POST /v1/partial`: the msgpack answer (a blocking feature source is read in a thread)."""
        if self.source.blocking:
            return CONTENT_TYPE, await asyncio.to_thread(self.answer, body)
        return CONTENT_TYPE, self.answer(body)

    def answer(self, body: bytes) -> bytes:
        """The partial result for the ids in a guest's request (rows it lacks are listed, not computed)."""
        name, version, ids = decode_request(body, self.guest)
        part = self.book.get(name, version)
        X, unknown = self.source.rows(ids, part.features)
        return encode_answer({"unknown": unknown, **part.answer(X)})


def host_app(service: HostService) -> HotRoute:
    app = FastAPI(title=f"sharedml serving host {service.party}", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(ServingError, error_handler)

    @app.get("/v1/health")
    async def get_health() -> dict:
        return health(service.party, service.name, "host", service.book)

    @app.post("/v1/models")
    async def load(request: Request, body: LoadRequest) -> dict:
        await require_peer(request, service.admins)
        model = await run_in_threadpool(load_model, body.part.location(), service.party, service.base_dir)
        service.load(body.name, body.version, model, f"model {body.key}")
        return {"versions": service.book.keys()}

    add_unload_route(app, service.book, service.admins)
    return HotRoute(app, "/v1/partial", service.partial, {service.guest})
