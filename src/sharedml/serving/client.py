"""The client SDK: predict through the guest's replicas, balanced round robin, failing over on faults.

Why: an application should not care which guest replica answers, nor notice when one dies. Replicas come
from static URLs and/or the registry (re-read in the background); a connection error, a timeout or a
5xx other than 503 moves the same request to the next replica (predictions are idempotent). A 4xx or a
503 (a host party is down, which another guest replica cannot fix) is the answer and raises at once.

    with Client(TlsFiles.in_dir(certs, "app"), guest="bank", registry="https://127.0.0.1:8600") as client:
        client.predict(ids=[133, 273])["predictions"]
"""

from __future__ import annotations

from typing import Any

from ..net.https import TlsFiles, error_detail, expect_server, http_client
from ..net.replica_registry import RegistryClient
from ..net.replicas import ReplicaUnavailable, RequestRefused
from .errors import HostUnavailable, ServingError
from .replicas import Replica, ReplicaSet


class Rejected(ServingError):
    """The guest answered the request with an error (4xx or 503); `status` and the message are the guest's."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Answer(RequestRefused):
    """Carries a final non-200 answer through the balancer without failing over."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Client:
    """Predictions from the guest party `guest`'s replicas; thread-safe."""

    def __init__(self, tls: TlsFiles, guest: str, urls: list[str] | None = None, *, registry: str | None = None,
                 registry_name: str = "registry", timeout: float = 5.0, refresh: float = 0.5) -> None:
        if not urls and registry is None:
            raise ValueError("Client needs the guest replicas' `urls` or a `registry` URL")
        self.guest = guest
        self._http = http_client(tls.client_context(), timeout)
        registry_client = None if registry is None else RegistryClient(registry, self._http, registry_name)
        self.replicas = ReplicaSet({guest: list(urls or [])}, registry_client, "guest", refresh=refresh).start()

    def close(self) -> None:
        self.replicas.stop()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def predict(self, ids: list | None = None, *, id: int | str | None = None,  # noqa: A002 - the API's field
                features: dict | list[dict] | None = None, model: str | None = None,
                version: int | None = None) -> dict[str, Any]:
        """`{model, version, predictions: [{id, score, label}], fallback}`; raises Rejected (4xx, 503) or
        HostUnavailable when no guest replica answered."""
        body: dict[str, Any] = {k: v for k, v in (("ids", ids), ("id", id), ("features", features),
                                                  ("model", model), ("version", version)) if v is not None}
        key = f"{model}:{version}" if model is not None and version is not None else None
        try:
            return self.replicas.call(self.guest, key, lambda replica: self._post(replica, body))
        except _Answer as answer:
            raise Rejected(answer.status, answer.detail) from None
        except ReplicaUnavailable as exc:
            raise HostUnavailable(f"no replica of guest {self.guest!r} answered: {exc}") from None

    def _post(self, replica: Replica, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(f"{replica.url}/v1/predict", json=body, extensions=expect_server(replica.party))
        if response.status_code == 200:
            return response.json()
        detail = error_detail(response.content)
        if response.status_code < 500 or response.status_code == 503:
            raise _Answer(response.status_code, detail)
        raise RuntimeError(f"guest replica {replica.name} answered {response.status_code}: {detail[:500]}")
