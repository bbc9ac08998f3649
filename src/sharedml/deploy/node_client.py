"""The coordinator's side of the node control API: one client per node, every call bounded by a timeout.

Two kinds of failure, because the coordinator treats them differently: a node that answered "no"
(NodeRefused, with the node's own message, e.g. a policy denial) and a node that did not answer at all
(NodeUnreachable), which a running job tolerates for a while before failing.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..net.https import MtlsClient, TlsFiles, error_detail


class NodeUnreachable(Exception):
    """No answer from a node (connection refused or reset, TLS failure, timeout)."""


class NodeRefused(Exception):
    """A node answered with an error; `status` is the HTTP status, the message is the node's."""

    def __init__(self, party: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.party, self.status = party, status


class NodeClient:
    def __init__(self, party: str, url: str, tls: TlsFiles, timeout: float) -> None:
        self.party, self.url = party, url
        self._http = MtlsClient(url, tls, server_name=party, timeout=timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise NodeUnreachable(f"node {self.party!r} at {self.url} did not answer: "
                                  f"{type(err).__name__}: {err}") from err
        if response.status_code >= 400:
            raise NodeRefused(self.party, response.status_code, error_detail(response.content))
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def approve(self, job_id: str, spec: dict[str, Any], submitter: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/approve", {"spec": spec, "submitter": submitter})

    def approval(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/approval")

    def withdraw(self, job_id: str, why: str) -> None:
        self._call("POST", f"/jobs/{job_id}/withdraw", {"why": why[:500]})

    def open_job(self, job_id: str) -> int:
        return int(self._call("POST", f"/jobs/{job_id}/open")["port"])

    def run(self, job_id: str, task: str, ports: dict[str, int], attempt: int) -> None:
        self._call("POST", f"/jobs/{job_id}/tasks/{task}/run", {"ports": ports, "attempt": attempt})

    def status(self, job_id: str, task: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/tasks/{task}")

    def cancel(self, job_id: str, task: str) -> None:
        self._call("POST", f"/jobs/{job_id}/tasks/{task}/cancel")

    def delete_outputs(self, job_id: str, task: str) -> bool:
        return bool(self._call("DELETE", f"/jobs/{job_id}/tasks/{task}/outputs")["deleted"])

    def close(self) -> None:
        self._http.close()
