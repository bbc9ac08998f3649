"""A replica's outbound side: stay registered with the manager, and pull key rings from same-measurement peers.

Why: a new replica must get the key ring from a running one before it can serve, and a key that one
replica learns (an owner's upload, a model it trained) must reach the others. Each heartbeat returns the
peers that claim this replica's measurement with their key-ring digests; a peer whose digest differs
from ours has keys we may lack, so we ask it for its ring (sending our quote; the peer's enclave decides)
and our enclave checks the answer. Both sides pull, so the rings converge on their union. Static peers
(no manager, or a manager you do not rely on) are polled every `sync_interval`. Every call has the
configured timeout; a dead manager or peer is recorded in `health()` and retried on the next tick.
"""

from __future__ import annotations

import threading
import time

import httpx

from ..net.https import error_detail
from ..net.replica_registry import Registration, RegistryClient
from .enclave_host import EnclaveHost
from .errors import TeeError
from .manager import DigestBeat, EnclaveMember
from .replica_config import ReplicaConfig

MANAGER = "manager"


class Membership:
    """The heartbeat-and-sync loop of one replica (run it in a thread)."""

    def __init__(self, host: EnclaveHost, config: ReplicaConfig, http: httpx.Client) -> None:
        self.host, self.config, self.http = host, config, http

    def run(self, url: str, stop: threading.Event) -> None:
        """Until `stop`: heartbeat (registering first), pull from peers whose ring differs, poll static peers;
        `url` is where peers and clients reach this replica."""
        registration = None if self.config.manager is None else Registration(
            RegistryClient(self.config.manager, self.http), lambda: self._member(url), DigestBeat)
        next_static = 0.0
        while not stop.is_set():
            for peer in self._manager_peers(registration):
                if peer["digest"] != self.host.enclave.keyring.digest():
                    self.pull(peer["url"], peer["name"])
            if self.config.peers and time.monotonic() >= next_static:
                for peer_url in self.config.peers:
                    self.pull(peer_url, peer_url)
                next_static = time.monotonic() + self.config.sync_interval
            stop.wait(self.config.heartbeat_interval)

    def _member(self, url: str) -> EnclaveMember:
        enclave = self.host.enclave
        return EnclaveMember(name=enclave.name, url=url, quote=enclave.quote.to_json(), digest=enclave.keyring.digest())

    def _manager_peers(self, registration: Registration | None) -> list[dict]:
        """Register or heartbeat; the peers the manager lists (none if it is unreachable or refused us)."""
        if registration is None:
            return []
        try:
            peers = registration.renew()["peers"]
        except httpx.HTTPStatusError as exc:
            self.host.record_sync(MANAGER, f"refused ({exc.response.status_code}): "
                                           f"{error_detail(exc.response.content)}")
            return []
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self.host.record_sync(MANAGER, f"unreachable at {registration.registry.url}: {exc!r}")
            return []
        self.host.record_sync(MANAGER, "ok")
        return peers

    def pull(self, peer_url: str, peer: str) -> None:
        """Ask `peer` for its key ring and merge it; the outcome goes to `health()['sync'][peer]`."""
        try:
            response = self.http.post(f"{peer_url.rstrip('/')}/v1/keys/export",
                                      content=self.host.enclave.quote.to_json().encode())
            if response.status_code != 200:
                self.host.record_sync(peer, f"refused ({response.status_code}): {error_detail(response.content)}")
                return
            new = self.host.import_keys(response.content, peer)
        except httpx.HTTPError as exc:
            self.host.record_sync(peer, f"unreachable at {peer_url}: {exc!r}")
        except TeeError as exc:
            self.host.record_sync(peer, f"answer rejected: {exc}")
        else:
            self.host.record_sync(peer, f"ok: {new} new keys")
