"""The replica registry: replicas register and heartbeat; the guest and clients ask who is up.

Why a registry: replicas join and leave live, and the guest's fan-out and the client SDK need the healthy
replicas of each party, with the model versions each has loaded (a request goes only to replicas that
hold its version). Health uses `net.replicas.HealthTable`, as the TEE cluster does. A replica may
register only under its own certificate's party name, so no member can slip a replica into another
party's list; the registry sees party names, URLs and version lists only.

    POST /v1/replicas                  {party, role, name, url, versions} -> {heartbeat_timeout}
    POST /v1/replicas/{name}/heartbeat {versions}; 404 if unknown (register again)
    GET  /v1/replicas[?party=&role=]   {replicas}: the healthy ones
    GET  /v1/health
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from ..net.https import MtlsClient, TlsFiles, peer_name
from ..net.replicas import HealthTable, ReplicaUnavailable


class Member(BaseModel):
    """A registered replica, as the registry relays it."""

    model_config = ConfigDict(extra="forbid")
    party: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    role: str = Field(pattern=r"^(guest|host)$")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$")
    url: str = Field(pattern=r"^https://", max_length=2048)
    versions: list[str] = Field(default_factory=list, max_length=1000)


class Beat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    versions: list[str] = Field(default_factory=list, max_length=1000)


def registry_app(heartbeat_timeout: float) -> FastAPI:
    """The registry; a replica that misses heartbeats for `heartbeat_timeout` s is no longer listed."""
    table: HealthTable[Member] = HealthTable(heartbeat_timeout)
    app = FastAPI(title="sharedml serving registry", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/replicas")
    async def register(request: Request, member: Member) -> dict:
        caller = await peer_name(request)
        if caller != member.party:
            raise HTTPException(403, f"certificate {caller!r} may register replicas of party {caller!r} only, "
                                     f"not of {member.party!r}")
        table.put(f"{member.party}/{member.name}", member)
        return {"heartbeat_timeout": heartbeat_timeout}

    @app.post("/v1/replicas/{name}/heartbeat")
    async def heartbeat(request: Request, name: str, beat: Beat) -> dict:
        caller = await peer_name(request)
        try:
            member = table.beat(f"{caller}/{name}")
        except ReplicaUnavailable as exc:
            raise HTTPException(404, str(exc)) from None
        member.versions = beat.versions
        return {}

    @app.get("/v1/replicas")
    async def replicas(party: str | None = None, role: str | None = None) -> dict:
        listed = table.healthy(lambda m: party in (None, m.party) and role in (None, m.role))
        return {"replicas": [m.model_dump() for m in listed]}

    @app.get("/v1/health")
    async def health() -> dict:
        return {"healthy": len(table.healthy())}

    return app


class RegistryClient:
    """Calls to the registry over mutual TLS, each with the configured timeout."""

    def __init__(self, url: str, tls: TlsFiles, registry_name: str, timeout: float) -> None:
        self.url = url
        self._http = MtlsClient(url, tls, registry_name, timeout=timeout)

    def replicas(self, party: str | None = None, role: str | None = None) -> list[Member]:
        params = {k: v for k, v in (("party", party), ("role", role)) if v is not None}
        response = self._http.request("GET", "/v1/replicas", params=params)
        response.raise_for_status()
        return [Member.model_validate(m) for m in response.json()["replicas"]]

    def register(self, member: Member) -> None:
        self._http.request("POST", "/v1/replicas", json=member.model_dump()).raise_for_status()

    def heartbeat(self, name: str, versions: list[str]) -> bool:
        """False when the registry does not know us (it restarted): register again."""
        response = self._http.request("POST", f"/v1/replicas/{name}/heartbeat", json={"versions": versions})
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def close(self) -> None:
        self._http.close()


class Heartbeat:
    """A replica's loop: register, then heartbeat every `interval` s with its loaded versions; a registry
    that is down is retried on the next tick (the outcome is in `status`)."""

    def __init__(self, client: RegistryClient, member: Member, versions: Callable[[], list[str]],
                 interval: float) -> None:
        self.client, self.member, self.versions, self.interval = client, member, versions, interval
        self.status = "not registered yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        registered = False
        while not self._stop.is_set():
            try:
                if registered:
                    registered = self.client.heartbeat(self.member.name, self.versions())
                if not registered:
                    self.client.register(self.member.model_copy(update={"versions": self.versions()}))
                    registered = True
                self.status = "ok"
            except httpx.HTTPError as exc:
                self.status = f"registry at {self.client.url} unreachable: {exc!r}"
            self._stop.wait(self.interval)
