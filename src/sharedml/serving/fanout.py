"""The guest's one round trip: ask every host of a model, concurrently, for its partial result.

Why: latency is the slowest host, not the sum; each call goes to a healthy replica holding the request's
model version, fails over to another on an error or timeout, and presents the guest's certificate while
checking that the answering certificate is the host party's own (TLS server name = party name).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..net.https import TlsFiles, error_detail
from ..net.https_pool import ConnectionPool
from ..net.replicas import ReplicaUnavailable, RequestRefused
from .errors import HostUnavailable, ServingError
from .replicas import Replica, ReplicaSet
from .wire import CONTENT_TYPE, decode_answer, encode


class HostRefused(ServingError):
    """A host refused the guest's request itself (403 or 400): a configuration problem, not an outage."""

    status = 502


class HostFanout:
    """Runs on the guest's event loop (its connection pool belongs to that loop)."""

    def __init__(self, replicas: ReplicaSet, tls: TlsFiles, timeout: float) -> None:
        self.replicas, self.timeout = replicas, timeout
        self._http = ConnectionPool(tls.client_context())

    async def ask(self, hosts: list[str], name: str, version: int, ids: list) -> dict[str, dict[str, Any]]:
        """Every host's answer for `ids` under model `name:version`; HostUnavailable naming the host that
        none of whose replicas answered within the timeout."""
        body, key = encode({"model": name, "version": version, "ids": ids}), f"{name}:{version}"
        if len(hosts) == 1:  # the common case, without gather's task per host
            return {hosts[0]: await self._ask(hosts[0], key, body, len(ids))}
        answers = await asyncio.gather(*(self._ask(host, key, body, len(ids)) for host in hosts))
        return dict(zip(hosts, answers, strict=True))

    async def _ask(self, host: str, key: str, body: bytes, rows: int) -> dict[str, Any]:
        try:
            return await self.replicas.acall(host, key, lambda replica: self._post(replica, body, rows))
        except ReplicaUnavailable as exc:
            raise HostUnavailable(f"host {host!r} did not answer within {self.timeout} s: {exc}") from None
        except RequestRefused as exc:
            raise HostRefused(str(exc)) from None

    async def _post(self, replica: Replica, body: bytes, rows: int) -> dict[str, Any]:
        status, answer = await self._http.post(replica.url, replica.party, "/v1/partial", body, CONTENT_TYPE,
                                               self.timeout)
        if status == 200:
            return decode_answer(answer, replica.party, rows)
        detail = error_detail(answer)[:500]
        if status in (400, 403):
            raise RequestRefused(f"host replica {replica.name} refused the request: {detail}")
        raise RuntimeError(f"host replica {replica.name} answered {status}: {detail}")
