"""The guest's service: `POST /v1/predict` for applications, and the admin routes for versions.

    POST /v1/predict   JSON {id | ids, features?, model?, version?} -> {model, version, predictions, fallback}
    GET  /v1/health    {party, name, role, versions, traffic, hosts}
    POST /v1/models    {name, version, part, fallback?}: load a version beside the others (admins)
    PUT  /v1/models/{name}/traffic  {version: percent}: gray release and rollback (admins)
    DELETE /v1/models/{name}/{version} (admins; only without traffic)

`features` (one mapping per id, column -> number or null) are the guest's own columns; without it the
guest reads them from its feature source. Hosts always read theirs from their own sources.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from ..net.https import require_peer
from .errors import BadRequest, ServingError
from .hot_routes import HotRoute
from .model_admin import LoadRequest, add_unload_route, error_handler, health
from .parts import GuestPart, load_model
from .predictor import GuestModel, GuestPredictor, Outcome
from .replicas import ReplicaSet

MAX_IDS = 10_000
SampleId = int | str


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: SampleId | None = None
    ids: list[SampleId] | None = Field(None, min_length=1, max_length=MAX_IDS)
    features: dict[str, float | None] | list[dict[str, float | None]] | None = None
    model: str | None = None
    version: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> PredictRequest:
        if (self.id is None) == (self.ids is None):
            raise ValueError("give exactly one of `id` (one sample) or `ids` (a batch)")
        if self.ids is not None and self.features is not None and (
                not isinstance(self.features, list) or len(self.features) != len(self.ids)):
            raise ValueError("with `ids`, `features` must be a list with one mapping per id")
        if self.id is not None and isinstance(self.features, list):
            raise ValueError("with `id`, `features` must be one mapping of column -> value")
        return self

    def sample_ids(self) -> list[SampleId]:
        return self.ids if self.ids is not None else [self.id]  # type: ignore[list-item]

    def given(self) -> list[dict[str, float | None]] | None:
        if self.features is None:
            return None
        return self.features if isinstance(self.features, list) else [self.features]


def _number(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if not isinstance(value, float) or math.isfinite(value) else None


def answer(outcome: Outcome) -> dict[str, Any]:
    """The JSON answer; a score that is not a finite number (a missing value a linear model cannot use) is null."""
    predictions = []
    for row, sample_id in enumerate(outcome.ids):
        score = outcome.score[row]
        predictions.append({"id": sample_id, "label": _number(outcome.label[row]),
                            "score": [_number(s) for s in score] if score.ndim else _number(score)})
    return {"model": outcome.name, "version": outcome.version, "predictions": predictions,
            "fallback": outcome.fallback}


class GuestService:
    """A guest replica: its model versions, its predictor and the host replicas it fans out to."""

    def __init__(self, party: str, name: str, predictor: GuestPredictor, hosts: ReplicaSet, host_names: list[str],
                 clients: set[str], admins: set[str], base_dir: Path = Path(".")) -> None:
        self.party, self.name, self.predictor, self.hosts = party, name, predictor, hosts
        self.host_names, self.clients, self.admins, self.base_dir = host_names, clients, admins, base_dir
        self.book = predictor.book

    def load(self, name: str, version: int, model: dict, fallback: dict | None) -> None:
        where = f"model {name}:{version}"
        if self.hosts.registry is not None:  # host replicas come from the registry: take the model's hosts
            self.host_names = sorted(set(self.host_names) | set(model.get("hosts", [])))
        part = GuestPart(model, self.party, self.host_names, where)
        backup = None
        if fallback is not None:
            backup = GuestPart(fallback, self.party, self.host_names, f"fallback of {where}")
            if not backup.host_free():
                raise BadRequest(f"fallback of {where}: its trees have host nodes; a fallback must score without "
                                 "hosts (a hetero_lr part, or trees trained with guest_only_rounds = n_estimators)")
        self.book.add(name, version, GuestModel(part, backup))

    def set_traffic(self, name: str, split: dict[int, float]) -> None:
        """Shift traffic, once every host has a healthy replica holding each version that gets some."""
        for version, percent in split.items():
            if percent > 0:
                for host in self.book.get(name, version).part.hosts:
                    if not self.hosts.candidates(host, f"{name}:{version}"):
                        raise BadRequest(f"host {host!r} has no healthy replica with model {name}:{version} loaded; "
                                         "load it at every host first")
        self.book.set_traffic(name, split)

    async def predict(self, body: bytes) -> tuple[str, bytes]:
        """`POST /v1/predict`: the JSON request's answer as JSON."""
        try:
            request = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequest("; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}"
                                       for e in exc.errors(include_url=False))) from None
        ids = request.sample_ids()
        name, version = self.book.choose(request.model, request.version, ids[0])
        outcome = await self.predictor.predict(name, version, ids, request.given())
        return "application/json", json.dumps(answer(outcome)).encode()


def guest_app(service: GuestService) -> HotRoute:
    app = FastAPI(title=f"sharedml serving guest {service.party}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_exception_handler(ServingError, error_handler)

    @app.get("/v1/health")
    async def get_health() -> dict:
        hosts = {h: [r.name for r in service.hosts.candidates(h)] for h in service.host_names}
        return {**health(service.party, service.name, "guest", service.book), "hosts": hosts,
                "registry": service.hosts.status}

    @app.post("/v1/models")
    async def load(request: Request, body: LoadRequest) -> dict:
        await require_peer(request, service.admins)
        model = await run_in_threadpool(load_model, body.part.location(), service.party, service.base_dir)
        fallback = None if body.fallback is None else await run_in_threadpool(
            load_model, body.fallback.location(), service.party, service.base_dir)
        service.load(body.name, body.version, model, fallback)
        return {"versions": service.book.keys()}

    @app.put("/v1/models/{name}/traffic")
    async def traffic(request: Request, name: str, split: dict[int, float]) -> dict:
        await require_peer(request, service.admins)
        service.set_traffic(name, split)
        return {"traffic": service.book.traffic()}

    add_unload_route(app, service.book, service.admins)
    return HotRoute(app, "/v1/predict", service.predict, service.clients)
