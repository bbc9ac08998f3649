"""The replica's HTTP API: quote, attested key-ring export, dataset keys, models, encrypted prediction, health.

Why: peers, owners, the operator and prediction clients reach a replica over the network, and every
byte they exchange is public (quotes, headers, health) or ciphertext to an attested key (key rings,
requests, responses), so the API needs no secrets of its own. Errors map to status codes that callers
act on: 403 = refused for what it is (do not retry elsewhere), 404 = not here (try another replica),
409 = key not in the ring yet (wait for the sync), 422 = malformed or not for this enclave.

    GET  /v1/health                 public facts (see EnclaveHost.health)
    GET  /v1/quote                  the enclave's quote (JSON)
    POST /v1/keys/export            body: the requesting replica's quote JSON -> export response (msgpack)
    POST /v1/datasets               body: an encrypted file's first bytes (its header) -> take its key
    POST /v1/models                 {"location": sealed model path or URL} -> serve it
    POST /v1/predict/{model}        body: prediction request (predict.py) -> encrypted response
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..net.https import OCTETS, read_body
from .enclave_host import EnclaveHost
from .errors import (
    AttestationError,
    ClusterError,
    EnclaveNotReady,
    EnvelopeError,
    RequestRejected,
    StorageError,
    TeeError,
)
from .quotes import Quote
from .sealed import MAX_HEADER_SIZE

MAX_BODY = 64 << 20  # bytes; the largest request (a prediction batch) a replica accepts
MAX_QUOTE = 1 << 20

_STATUS: tuple[tuple[type[TeeError], int], ...] = (
    (AttestationError, 403), (RequestRejected, 403), (ClusterError, 404), (StorageError, 404),
    (EnclaveNotReady, 503), (EnvelopeError, 422))


def status_of(exc: TeeError) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)


class ModelLocation(BaseModel):
    location: str


def replica_app(host: EnclaveHost) -> FastAPI:
    """The FastAPI app serving `host` (start it with `max_body=MAX_BODY`)."""
    app = FastAPI(title=f"sharedml enclave replica {host.enclave.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(TeeError)
    async def tee_error(_: Request, exc: TeeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    @app.get("/v1/health")
    def health() -> dict:
        return host.health()

    @app.get("/v1/quote")
    def quote() -> Response:
        return Response(host.enclave.quote.to_json(), media_type="application/json")

    @app.post("/v1/keys/export")
    async def export_keys(request: Request) -> Response:
        requester = Quote.from_json((await read_body(request, MAX_QUOTE)).decode(errors="replace"), "requesting peer")
        return Response(await run_in_threadpool(host.export_keys, requester), media_type=OCTETS)

    @app.post("/v1/datasets")
    async def add_dataset(request: Request) -> dict:
        return await run_in_threadpool(host.add_dataset, await read_body(request, MAX_HEADER_SIZE + 16))

    @app.post("/v1/models")
    def load_model(body: ModelLocation) -> dict:
        try:
            return {"model": host.load_model(body.location)}
        except EnvelopeError as exc:
            raise HTTPException(409, f"{exc} (if the key comes from a peer, retry after the next sync)") from None

    @app.post("/v1/predict/{model}")
    async def predict(model: str, request: Request) -> Response:
        response = await run_in_threadpool(host.predict, model, await request.body())  # bounded by the server
        return Response(response, media_type=OCTETS)

    return app
