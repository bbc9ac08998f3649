"""The cluster manager: registration, heartbeats, attested key sync, load balancing and failover.

Why: one enclave is a single point of failure and enclave memory caps throughput, so several replicas
of the same code serve together. The manager is untrusted: it sees quotes and relays ciphertext. Keys
move only between replicas whose quotes show the same measurement, and each replica checks its peer's
quote itself (`Enclave.export_keys` / `import_keys`), so a manager that groups replicas wrongly still
cannot get a key to different code. Every relayed key ring is logged in `releases` for audit.

In-process (objects and threads); the network form of the same protocol is `manager` (the manager
service), `enclave_host` and `enclave_api` (a replica process) and `client` (the SDK). Health and
selection rules are shared with it (`net.replicas`): replicas stop being served when they miss heartbeats
for `heartbeat_timeout` seconds or fail a request; a later heartbeat brings them back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..net.replicas import Balancer, HealthTable
from .enclave import Enclave
from .errors import ClusterError
from .predict import PredictionService
from .quotes import Quote

T = TypeVar("T")


@dataclass
class Replica:
    """An enclave worker as the cluster sees it, with the prediction service it runs (once loaded)."""

    enclave: Enclave
    service: PredictionService | None = None

    @property
    def name(self) -> str:
        return self.enclave.name

    @property
    def quote(self) -> Quote:
        return self.enclave.quote

    def handle(self, request: bytes) -> bytes:
        if self.service is None:
            raise ClusterError(f"replica {self.name} has no model loaded")
        return self.service.handle(request)


@dataclass(frozen=True)
class KeyRelease:
    """One key ring relayed from `source` to `target` (ciphertext of `size` bytes)."""

    source: str
    target: str
    measurement: bytes
    size: int


class ClusterManager:
    """Tracks replicas, syncs key rings within a measurement, routes requests round robin with failover."""

    def __init__(self, heartbeat_timeout: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.releases: list[KeyRelease] = []
        self._table: HealthTable[Replica] = HealthTable(heartbeat_timeout, clock, ClusterError)
        self._balancer = Balancer(ClusterError)

    def register(self, replica: Replica) -> None:
        """Add a started replica (its quote is not verified here: peers and clients verify it)."""
        replica.quote  # noqa: B018  (raises EnclaveNotReady for a replica that was never started)
        self._table.put(replica.name, replica, replace=False)

    def heartbeat(self, name: str) -> None:
        self._table.beat(name)

    def mark_down(self, name: str) -> None:
        self._table.mark_down(name)

    def healthy(self, measurement: bytes | None = None) -> list[Replica]:
        """Replicas seen within the heartbeat timeout, in registration order."""
        return self._table.healthy(None if measurement is None else lambda r: r.quote.measurement == measurement)

    def sync_keys(self) -> int:
        """Gather every healthy replica's ring at one replica per measurement, then spread it; returns transfers."""
        groups: dict[bytes, list[Replica]] = {}
        for replica in self.healthy():
            groups.setdefault(replica.quote.measurement, []).append(replica)
        transfers = 0
        for measurement, members in groups.items():
            leader, others = members[0], members[1:]
            for source, target in [*((o, leader) for o in others), *((leader, o) for o in others)]:
                blob = source.enclave.export_keys(target.quote)
                target.enclave.import_keys(source.quote, blob)
                self.releases.append(KeyRelease(source.name, target.name, measurement, len(blob)))
                transfers += 1
        return transfers

    def releases_to(self, name: str) -> int:
        return sum(release.target == name for release in self.releases)

    def call(self, request: Callable[[Replica], T], measurement: bytes | None = None) -> T:
        """Run `request` on the next healthy replica; a replica that fails is marked down and the next tried."""
        return self._balancer.call(self.healthy(measurement), request, lambda r: r.name,
                                   lambda r: self.mark_down(r.name))


class Heartbeat(threading.Thread):
    """Reports a replica alive every `interval` seconds until `stop()`."""

    def __init__(self, manager: ClusterManager, name: str, interval: float = 0.2) -> None:
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self._manager, self._replica, self._interval = manager, name, interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._manager.heartbeat(self._replica)

    def stop(self) -> None:
        self._stopped.set()
        self.join()
