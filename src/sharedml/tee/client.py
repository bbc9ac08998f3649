"""Client SDK of the network cluster: find healthy replicas, verify them, predict with load balancing and failover.

Why: a prediction client must not trust the manager's list: it verifies every replica's quote against
its own trust settings before encrypting anything to it (a replica whose quote fails is skipped and
listed in `refused`), spreads requests round robin, and on an error or timeout marks the replica down
and retries the request on the next one (predictions are idempotent; the request is re-encrypted to
each replica's own key). The list is refreshed from the manager every `refresh` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..net.https import OCTETS, error_detail
from ..net.replica_registry import RegistryClient
from ..net.replicas import Balancer, HealthTable
from .attestation import verify_quote
from .errors import AttestationError, ClusterError, RequestRejected
from .predict import PredictionClient
from .quotes import Quote, TrustSettings
from .sealed import header_bytes, read_header
from .storage import open_input
from .tls_options import TlsOptions, http_client_for


@dataclass(frozen=True)
class RemoteReplica:
    """A replica reached over HTTP; `handle` is what `PredictionClient.ask` calls."""

    name: str
    url: str
    quote: Quote
    model: str
    http: httpx.Client

    def handle(self, request: bytes) -> bytes:
        response = self.http.post(f"{self.url}/v1/predict/{self.model}", content=request,
                                  headers={"content-type": OCTETS})
        if response.status_code == 403:
            raise RequestRejected(f"replica {self.name}: {error_detail(response.content)}")
        if response.status_code != 200:
            raise ClusterError(f"replica {self.name} answered {response.status_code}: "
                               f"{error_detail(response.content)}")
        return response.content


class ClusterClient:
    """Predicts on a model served by the cluster behind `manager_url`; thread-safe."""

    def __init__(self, manager_url: str, key: X25519PrivateKey, trust: TrustSettings, model_id: bytes,
                 tls: TlsOptions | None = None, timeout: float = 5.0, refresh: float = 2.0) -> None:
        self.manager_url = manager_url.rstrip("/")
        self.refused: dict[str, str] = {}  # replica name -> why its quote was not accepted
        self.failovers: list[str] = []  # replicas that failed a request (which was retried elsewhere)
        self._predictor = PredictionClient(key, trust, model_id)
        self._trust = trust
        self._http = http_client_for(tls, timeout)
        self._manager = RegistryClient(self.manager_url, self._http)
        self._refresh = refresh
        self._table: HealthTable[RemoteReplica] = HealthTable(float("inf"), error=ClusterError)
        self._balancer = Balancer(ClusterError)
        self._listed_at = float("-inf")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def replicas(self) -> list[RemoteReplica]:
        """Verified replicas not marked down, listing them again from the manager when the list is stale."""
        with self._lock:
            if time.monotonic() - self._listed_at >= self._refresh or not self._table.healthy():
                self._list()
            return self._table.healthy()

    def _list(self) -> None:
        try:
            listed = self._manager.replicas()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            if self._table.healthy():
                return  # keep serving from the last list while the manager is unreachable
            raise ClusterError(f"cluster manager at {self.manager_url} unreachable and no replica known: {exc!r}") \
                from None
        table: HealthTable[RemoteReplica] = HealthTable(float("inf"), error=ClusterError)
        for entry in listed:
            name = str(entry.get("name"))
            try:
                quote = Quote.from_json(entry["quote"], f"replica {name}")
                verify_quote(quote, self._trust)
            except (AttestationError, KeyError, TypeError) as exc:
                self.refused[name] = str(exc)
                continue
            table.put(name, RemoteReplica(name, str(entry["url"]).rstrip("/"), quote, self._predictor.model_id,
                                          self._http))
        self._table, self._listed_at = table, time.monotonic()

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Scores for `rows` from the next replica; fails over on errors and timeouts, never on a refusal."""
        return self._balancer.call(self.replicas(), lambda r: self._predictor.ask(r, rows), lambda r: r.name,
                                   self._failed)

    def _failed(self, replica: RemoteReplica) -> None:
        self._table.mark_down(replica.name)
        with self._lock:
            self.failovers.append(replica.name)


class ReplicaAdmin:
    """An owner's or operator's calls to one replica: its quote, health, dataset keys, models to serve."""

    def __init__(self, url: str, tls: TlsOptions | None = None, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = http_client_for(tls, timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._http.request(method, f"{self.url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ClusterError(f"replica at {self.url} unreachable: {exc!r}") from None
        if response.status_code != 200:
            raise ClusterError(f"replica at {self.url}: {method} {path} answered {response.status_code}: "
                               f"{error_detail(response.content)}")
        return response

    def quote(self) -> Quote:
        """The replica's quote, unverified: check it (e.g. `encrypt_file` does) before trusting it."""
        return Quote.from_json(self._call("GET", "/v1/quote").text, f"replica at {self.url}")

    def health(self) -> dict:
        return self._call("GET", "/v1/health").json()

    def add_dataset(self, location: str) -> dict:
        """Send an encrypted file's header so the replica takes its data key (then syncs it to its peers)."""
        with open_input(location) as stream:
            header = header_bytes(read_header(stream, str(location)))
        return self._call("POST", "/v1/datasets", content=header, headers={"content-type": OCTETS}).json()

    def load_model(self, location: str) -> str:
        """Make the replica serve the sealed model at `location` (a path or URL it can read)."""
        return self._call("POST", "/v1/models", json={"location": location}).json()["model"]
