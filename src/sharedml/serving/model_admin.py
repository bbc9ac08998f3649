"""What the guest's and the host's apps share besides their hot route: the model-version admin requests
(load a version, unload one), health, and how a ServingError answers over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..net.https import require_peer
from .config import PartRef
from .errors import ServingError
from .versions import ModelBook


class LoadRequest(BaseModel):
    """`POST /v1/models`: load this party's part of `name:version` from a path on this party's machine."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    part: PartRef
    fallback: PartRef | None = None

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"


async def error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A ServingError answers with its status and its message (which names the id, party or field)."""
    status = exc.status if isinstance(exc, ServingError) else 500
    return JSONResponse({"detail": str(exc)}, status_code=status)


def health(party: str, name: str, role: str, book: ModelBook[Any]) -> dict[str, Any]:
    return {"party": party, "name": name, "role": role, "versions": book.keys(), "traffic": book.traffic()}


def add_unload_route(app: FastAPI, book: ModelBook[Any], admins: set[str]) -> None:
    """`DELETE /v1/models/{name}/{version}` for `admins` (the book refuses a version that has traffic)."""

    @app.delete("/v1/models/{name}/{version}")
    async def unload(request: Request, name: str, version: int) -> dict:
        await require_peer(request, admins)
        book.remove(name, version)
        return {"versions": book.keys()}
