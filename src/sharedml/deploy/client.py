"""A client for the coordinator's API (what the CLI, the tests and the benchmark use).

Where to reach the coordinator and which certificate to present come from arguments or the
environment: ``SHAREDML_COORDINATOR`` (https URL), ``SHAREDML_CERTS`` (folder with ``ca.crt`` and
``<identity>.crt/.key``), ``SHAREDML_IDENTITY`` (the certificate name to present) and
``SHAREDML_COORDINATOR_NAME`` (the name the coordinator's certificate must carry; "coordinator").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from ..net.https import MtlsClient, TlsFiles

ENV = {"url": "SHAREDML_COORDINATOR", "certs": "SHAREDML_CERTS", "identity": "SHAREDML_IDENTITY",
       "server": "SHAREDML_COORDINATOR_NAME"}


class ApiError(Exception):
    """The coordinator refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None, node: str | None = None) -> None:
        super().__init__(message)
        self.status, self.node = status, node


class CoordinatorClient:
    def __init__(self, url: str | None = None, certs: Path | None = None, identity: str | None = None,
                 server_name: str | None = None, timeout: float = 30.0) -> None:
        url = url or os.environ.get(ENV["url"])
        cert_dir = certs or (Path(os.environ[ENV["certs"]]) if ENV["certs"] in os.environ else None)
        identity = identity or os.environ.get(ENV["identity"])
        missing = [f"{flag} (or ${ENV[key]})" for key, flag, value in
                   (("url", "--coordinator", url), ("certs", "--certs", cert_dir),
                    ("identity", "--identity", identity)) if not value]
        if missing:
            raise ApiError(f"say where the coordinator is and who you are: missing {', '.join(missing)}")
        server_name = server_name or os.environ.get(ENV["server"], "coordinator")
        self.url = str(url)
        try:
            tls = TlsFiles.in_dir(Path(str(cert_dir)), str(identity))
        except FileNotFoundError as err:
            raise ApiError(str(err)) from err
        self._http = MtlsClient(self.url, tls, server_name, timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ApiError(f"coordinator at {self.url} did not answer: {type(err).__name__}: {err}") from err
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            raise ApiError(str(body.get("detail")), response.status_code, body.get("node"))
        return response.json()

    def submit(self, spec_text: str) -> str:
        return self.call("POST", "/jobs", json={"spec": spec_text})["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/jobs/{job_id}")

    def close(self) -> None:
        self._http.close()
