"""A serving replica in the replica registry: what it registers, who may register it, how it stays listed.

Why a registry: replicas join and leave live, and the guest's fan-out and the client SDK need the healthy
replicas of each party, with the model versions each has loaded (a request goes only to replicas that
hold its version). The service itself is `net.replica_registry`, shared with the TEE cluster manager;
here is serving's part of it. A replica may register only under its own certificate's party name, so no
member can slip a replica into another party's list; the registry sees party names, URLs and version
lists only.

    POST /v1/replicas                  {party, role, name, url, versions} -> {heartbeat_timeout}
    POST /v1/replicas/{name}/heartbeat {versions}; 404 if unknown (register again)
    GET  /v1/replicas[?party=&role=]   {replicas}: the healthy ones
    GET  /v1/health
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..net.replica_registry import Registration, RegistryClient, Roster


class ServingMember(BaseModel):
    """A registered replica, as the registry relays it."""

    model_config = ConfigDict(extra="forbid")
    party: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    role: str = Field(pattern=r"^(guest|host)$")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$")
    url: str = Field(pattern=r"^https://", max_length=2048)
    versions: list[str] = Field(default_factory=list, max_length=1000)


class VersionsBeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    versions: list[str] = Field(default_factory=list, max_length=1000)


class ServingRoster(Roster[ServingMember]):
    """Replicas filed by party and name; each party registers its own replicas only."""

    title = "sharedml serving registry"
    member = ServingMember
    beat = VersionsBeat
    filters = ("party", "role")
    by_certificate = True

    def key(self, name: str, caller: str | None) -> str:
        return f"{caller}/{name}"

    def admit(self, member: ServingMember, caller: str | None) -> str:
        if caller != member.party:
            raise HTTPException(403, f"certificate {caller!r} may register replicas of party {caller!r} only, "
                                     f"not of {member.party!r}")
        return self.key(member.name, caller)


class RegistryHeartbeat:
    """A replica's loop: register, then heartbeat every `interval` s with its loaded versions; a registry
    that is down is retried on the next tick (the outcome is in `status`)."""

    def __init__(self, registry: RegistryClient, member: ServingMember, versions: Callable[[], list[str]],
                 interval: float) -> None:
        self.registry, self.interval = registry, interval
        self.registration = Registration(registry, lambda: member.model_copy(update={"versions": versions()}),
                                         VersionsBeat)
        self.status = "not registered yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def start(self) -> RegistryHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.registration.renew()
                self.status = "ok"
            except httpx.HTTPError as exc:
                self.status = f"registry at {self.registry.url} unreachable: {exc!r}"
            self._stop.wait(self.interval)
