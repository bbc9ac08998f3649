"""The cluster manager service: replicas register and heartbeat; peers and clients ask who is up.

Why: replicas on different machines need to find each other and clients need a list of healthy
replicas. The manager is untrusted: it stores and relays public facts only (names, URLs, quotes, key
ring digests) and never sees a key. It groups replicas by the measurement their quote claims, which it
cannot verify, so the grouping is only a hint: a replica gives its key ring only to a requester whose
quote its own enclave verifies as the same measurement, and clients verify quotes themselves. A lying
manager can deny service or hide replicas; it cannot route a key to other code.

    POST /v1/replicas                   {name, url, quote, digest} -> {peers, heartbeat_timeout}
    POST /v1/replicas/{name}/heartbeat  {digest} -> {peers}; 404 if unknown (register again)
    GET  /v1/replicas[?measurement=hex] {replicas}: the healthy ones
    GET  /v1/health

`peers` are the healthy replicas that claim the caller's measurement, other than the caller.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..net.replicas import HealthTable
from .attestation import Quote
from .errors import AttestationError, ClusterError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Member(BaseModel):
    """A registered replica as the manager relays it (public facts only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^https?://", max_length=2048)
    quote: str = Field(max_length=1 << 16)
    digest: str = Field("", max_length=64)

    def measurement(self) -> str:
        return Quote.from_json(self.quote, f"replica {self.name}").measurement.hex()


class Beat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digest: str = Field("", max_length=64)


class Directory:
    """The manager's state: a health table of members, grouped by the measurement their quote claims."""

    def __init__(self, heartbeat_timeout: float) -> None:
        self.table: HealthTable[tuple[Member, str]] = HealthTable(heartbeat_timeout, error=ClusterError)

    def register(self, member: Member) -> list[Member]:
        try:
            measurement = member.measurement()
        except AttestationError as exc:
            raise HTTPException(422, f"registration of {member.name!r}: {exc}") from None
        self.table.put(member.name, (member, measurement))
        return self.peers(member.name, measurement)

    def heartbeat(self, name: str, beat: Beat) -> list[Member]:
        try:
            member, measurement = self.table.beat(name)
        except ClusterError as exc:
            raise HTTPException(404, str(exc)) from None
        member.digest = beat.digest
        return self.peers(name, measurement)

    def peers(self, name: str, measurement: str) -> list[Member]:
        return [m for m, claimed in self.table.healthy() if claimed == measurement and m.name != name]

    def healthy(self, measurement: str | None) -> list[Member]:
        return [m for m, claimed in self.table.healthy() if measurement in (None, claimed)]


def manager_app(heartbeat_timeout: float) -> FastAPI:
    """The manager's FastAPI app; replicas missing heartbeats for `heartbeat_timeout` s are not listed."""
    directory = Directory(heartbeat_timeout)
    app = FastAPI(title="sharedml enclave cluster manager", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/replicas")
    def register(member: Member) -> dict:
        return {"peers": directory.register(member), "heartbeat_timeout": heartbeat_timeout}

    @app.post("/v1/replicas/{name}/heartbeat")
    def heartbeat(name: str, beat: Beat) -> dict:
        return {"peers": directory.heartbeat(name, beat)}

    @app.get("/v1/replicas")
    def replicas(measurement: str | None = None) -> dict:
        return {"replicas": directory.healthy(measurement)}

    @app.get("/v1/health")
    def health() -> dict:
        return {"healthy": len(directory.healthy(None))}

    return app
