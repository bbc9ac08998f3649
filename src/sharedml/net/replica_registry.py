"""The replica registry service: replicas register and heartbeat; their peers and clients ask which are up.

Why one service: online serving's registry and the TEE route's cluster manager keep the same list under the
same rules: health is `replicas.HealthTable` (a replica silent for `heartbeat_timeout` seconds is not
listed), a heartbeat from a replica the registry does not know answers 404, and the replica then registers
again (the registry restarted). A heartbeat fix is made here once. What differs is what a replica
registers and who may register it, so each service passes a `Roster`: its member type, its rule for who
may register what, and what its answers add (the TEE manager: the caller's peers).

    POST /v1/replicas                   a member -> {heartbeat_timeout, ...}
    POST /v1/replicas/{name}/heartbeat  a beat (fields that replace the member's) -> {...}; 404 if unknown
    GET  /v1/replicas[?filter=value]    {replicas}: the healthy ones matching every filter given
    GET  /v1/health                     {healthy: count}

`RegistryClient` and `Registration` are the replicas' side of the same routes.

(No ``from __future__ import annotations`` here: the routes' body types are the roster's member and beat
types, which FastAPI must see as classes, not as names to look up in this module.)
"""

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from .https import expect_server, peer_name
from .replicas import HealthTable, ReplicaUnavailable

M = TypeVar("M", bound=BaseModel)


class Roster(Generic[M]):
    """A registry's members and the rules that differ between services. Subclasses set the class attributes
    and override what they need; a member type must have a `name` (unique per key, see `key`)."""

    title: ClassVar[str]
    member: ClassVar[type[BaseModel]]  # the registration body
    beat: ClassVar[type[BaseModel]]  # the heartbeat body: its fields replace the member's fields of the same name
    filters: ClassVar[tuple[str, ...]] = ()  # query parameters of GET /v1/replicas: member attributes to match
    by_certificate: ClassVar[bool] = False  # callers must present a client certificate (mutual TLS)

    def __init__(self, heartbeat_timeout: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.table: HealthTable[M] = HealthTable(heartbeat_timeout)

    def key(self, name: str, caller: str | None) -> str:
        """Where the replica `name` of the certificate `caller` (None without one) is filed."""
        return name

    def admit(self, member: M, caller: str | None) -> str:
        """The key to file a registration under, or an HTTPException refusing it."""
        return self.key(member.name, caller)  # type: ignore[attr-defined]

    def answer(self, member: M) -> dict[str, Any]:
        """What a registration's and a heartbeat's answers carry for `member`, beyond the timeout."""
        return {}


def registry_app(roster: Roster[Any]) -> FastAPI:
    """The registry serving `roster`; a replica missing heartbeats for its timeout is no longer listed."""
    app = FastAPI(title=roster.title, docs_url=None, redoc_url=None, openapi_url=None)

    async def caller(request: Request) -> str | None:
        return await peer_name(request) if roster.by_certificate else None

    @app.post("/v1/replicas")
    async def register(request: Request, member: roster.member) -> dict:  # type: ignore[valid-type]
        roster.table.put(roster.admit(member, await caller(request)), member)
        return {**roster.answer(member), "heartbeat_timeout": roster.heartbeat_timeout}

    @app.post("/v1/replicas/{name}/heartbeat")
    async def heartbeat(request: Request, name: str, beat: roster.beat) -> dict:  # type: ignore[valid-type]
        try:
            member = roster.table.beat(roster.key(name, await caller(request)))
        except ReplicaUnavailable as exc:
            raise HTTPException(404, str(exc)) from None
        for field in type(beat).model_fields:
            setattr(member, field, getattr(beat, field))
        return roster.answer(member)

    @app.get("/v1/replicas")
    async def replicas(request: Request) -> dict:
        wanted = {f: request.query_params[f] for f in roster.filters if f in request.query_params}
        listed = roster.table.healthy(lambda m: all(getattr(m, f) == v for f, v in wanted.items()))
        return {"replicas": [m.model_dump() for m in listed]}

    @app.get("/v1/health")
    async def health() -> dict:
        return {"healthy": len(roster.table.healthy())}

    return app


class RegistryClient:
    """Calls to the registry at `url` over `http` (its TLS settings and timeout, shared with the caller's
    other calls); `server_name`: the certificate name the registry must present (None: the URL's host)."""

    def __init__(self, url: str, http: httpx.Client, server_name: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = http
        self._extensions = {} if server_name is None else expect_server(server_name)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, f"{self.url}{path}", extensions=self._extensions, **kwargs)

    def replicas(self, **filters: str | None) -> list[dict[str, Any]]:
        """The healthy replicas matching `filters` (None: any), as the registry lists them."""
        params = {k: v for k, v in filters.items() if v is not None}
        response = self._call("GET", "/v1/replicas", params=params)
        response.raise_for_status()
        return response.json()["replicas"]

    def register(self, member: BaseModel) -> dict[str, Any]:
        response = self._call("POST", "/v1/replicas", json=member.model_dump(mode="json"))
        response.raise_for_status()
        return response.json()

    def heartbeat(self, name: str, beat: dict[str, Any]) -> dict[str, Any] | None:
        """The registry's answer; None when it does not know `name` (it restarted): register again."""
        response = self._call("POST", f"/v1/replicas/{name}/heartbeat", json=beat)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()


class Registration:
    """One replica's place in a registry: registered once, then kept by heartbeats that carry the member's
    fields a `beat` has; registered again when the registry no longer knows it."""

    def __init__(self, registry: RegistryClient, current: Callable[[], BaseModel], beat: type[BaseModel]) -> None:
        self.registry, self.current, self.beat = registry, current, beat
        self.registered = False

    def renew(self) -> dict[str, Any]:
        """Heartbeat (or register); the registry's answer. Raises httpx.HTTPError when the registry is
        unreachable, httpx.HTTPStatusError when it refused."""
        member = self.current()
        if self.registered:
            beat = member.model_dump(mode="json", include=set(self.beat.model_fields))
            answer = self.registry.heartbeat(member.name, beat)  # type: ignore[attr-defined]
            if answer is not None:
                return answer
            self.registered = False
        answer = self.registry.register(member)
        self.registered = True
        return answer
