"""The replicas of other parties that a guest (or a client) may call: listed, balanced, failed over.

Why: the guest's fan-out to each host and the client SDK's calls to the guest face the same problem:
several replicas per party, some down, some without the requested model version. The rules (healthy =
not marked down; round robin; fail over on a fault, not on a refusal) are `net.replicas`'
`HealthTable` and `Balancer`, as in the TEE cluster. Replicas come from static URLs and/or the registry, re-read
every `refresh` s in a background thread, never on a request's path. A replica that fails a call is
left out for `cooldown` s even if the registry still lists it (its last heartbeat may be recent); then
it is tried again (for static replicas, that is the only way back). When the registry stops listing
every replica of a party, the last ones it listed are kept: on a starved machine heartbeats arrive late
and the registry may drop them all while they still answer, so calls, not the registry, decide then
(a party that is really down still fails its calls, and the guest answers 503).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from ..net.replica_registry import RegistryClient
from ..net.replicas import Balancer, HealthTable, ReplicaUnavailable, RequestRefused
from .registration import ServingMember

R = TypeVar("R")
_FOREVER = 1e18  # HealthTable timeout: health here comes from mark_down, not from the age of an entry


@dataclass(frozen=True)
class Replica:
    party: str
    name: str
    url: str
    versions: frozenset[str] | None  # None: a static replica, assumed to serve every version

    def serves(self, key: str | None) -> bool:
        return key is None or self.versions is None or key in self.versions


class ReplicaSet:
    """Replicas of some parties (one role) with local mark-down, refreshed from the registry."""

    def __init__(self, static: dict[str, list[str]], registry: RegistryClient | None, role: str,
                 refresh: float = 0.5, cooldown: float = 3.0) -> None:
        self.static = {party: [Replica(party, url, url.rstrip("/"), None) for url in urls]
                       for party, urls in static.items()}
        self.registry, self.role, self.refresh, self.cooldown = registry, role, refresh, cooldown
        self.status = "static" if registry is None else "not listed yet"
        self._tables: dict[str, HealthTable[Replica]] = {}
        self._down_until: dict[tuple[str, str], float] = {}  # (party, replica name) -> when it may serve again
        self._balancers: dict[str, Balancer] = {}
        self._listed: dict[str, list[Replica]] = {}  # party -> the replicas the registry last listed for it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload()

    def start(self) -> ReplicaSet:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"{self.role}-replicas")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh):
            self.reload()

    def reload(self) -> None:
        """Rebuild the tables from the static list and the registry (kept as they were if it is down)."""
        listed: list[Replica] = []
        if self.registry is not None:
            try:
                members = [ServingMember.model_validate(m) for m in self.registry.replicas(role=self.role)]
                listed = [Replica(m.party, m.name, m.url.rstrip("/"), frozenset(m.versions)) for m in members]
                self.status = "ok"
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self.status = f"registry at {self.registry.url} unreachable: {exc!r}"
                return
        by_party: dict[str, list[Replica]] = {}
        for replica in listed:
            by_party.setdefault(replica.party, []).append(replica)
        self._listed = {**self._listed, **by_party}  # a party listed with no replica keeps its last ones
        tables: dict[str, HealthTable[Replica]] = {}
        now = time.monotonic()
        for replica in [r for rs in self.static.values() for r in rs] + [r for rs in self._listed.values() for r in rs]:
            table = tables.setdefault(replica.party, HealthTable(_FOREVER))
            table.put(replica.name, replica)
            if self._down_until.get((replica.party, replica.name), 0) > now:
                table.mark_down(replica.name)
        with self._lock:
            self._tables = tables

    def candidates(self, party: str, key: str | None = None) -> list[Replica]:
        table = self._tables.get(party)
        return [] if table is None else table.healthy(lambda r: r.serves(key))

    def failed(self, replica: Replica) -> None:
        """Leave `replica` out for `cooldown` s."""
        self._down_until[(replica.party, replica.name)] = time.monotonic() + self.cooldown
        table = self._tables.get(replica.party)
        if table is not None:
            table.mark_down(replica.name)

    def call(self, party: str, key: str | None, request: Callable[[Replica], R]) -> R:
        """`request` on the next healthy replica of `party` holding `key`, failing over to the others;
        ReplicaUnavailable when none is left. A RequestRefused from `request` is raised at once."""
        candidates = self._candidates_or_fail(party, key)
        with self._lock:
            balancer = self._balancers.setdefault(party, Balancer())
        return balancer.call(candidates, request, lambda r: r.name, self.failed)

    async def acall(self, party: str, key: str | None, request: Callable[[Replica], Awaitable[R]]) -> R:
        """`call` for a coroutine `request`, on an event loop (the guest's fan-out)."""
        candidates = self._candidates_or_fail(party, key)
        with self._lock:
            balancer = self._balancers.setdefault(party, Balancer())
        failures = []
        for replica in balancer.order(candidates):
            try:
                return await request(replica)
            except RequestRefused:
                raise
            except Exception as exc:  # any other fault is the replica's: try the next one
                self.failed(replica)
                failures.append(f"{replica.name}: {exc!r}")
        raise ReplicaUnavailable(f"every replica failed: {'; '.join(failures)}")

    def _candidates_or_fail(self, party: str, key: str | None) -> list[Replica]:
        candidates = self.candidates(party, key)
        if not candidates:
            what = f" with model {key} loaded" if key else ""
            raise ReplicaUnavailable(f"no healthy replica of party {party!r}{what} ({self.status})")
        return candidates
