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

from .errors import TeeError
from .node import ReplicaNode
from .node_config import NodeConfig
from .transport import detail

MANAGER = "manager"


class Membership:
    """The heartbeat-and-sync loop of one replica (run it in a thread)."""

    def __init__(self, node: ReplicaNode, config: NodeConfig, http: httpx.Client) -> None:
        self.node, self.config, self.http = node, config, http
        self._registered = False

    def run(self, url: str, stop: threading.Event) -> None:
        """Until `stop`: heartbeat (registering first), pull from peers whose ring differs, poll static peers."""
        next_static = 0.0
        while not stop.is_set():
            for peer in self._manager_peers(url):
                if peer["digest"] != self.node.enclave.keyring.digest():
                    self.pull(peer["url"], peer["name"])
            if self.config.peers and time.monotonic() >= next_static:
                for peer_url in self.config.peers:
                    self.pull(peer_url, peer_url)
                next_static = time.monotonic() + self.config.sync_interval
            stop.wait(self.config.heartbeat_interval)

    def _manager_peers(self, url: str) -> list[dict]:
        """Register or heartbeat; the peers the manager lists (none if it is unreachable)."""
        if self.config.manager is None:
            return []
        base, digest = self.config.manager.rstrip("/"), self.node.enclave.keyring.digest()
        try:
            if self._registered:
                response = self.http.post(f"{base}/v1/replicas/{self.node.enclave.name}/heartbeat",
                                          json={"digest": digest})
                if response.status_code == 404:  # the manager restarted or dropped us: register again
                    self._registered = False
            if not self._registered:
                response = self.http.post(f"{base}/v1/replicas", json={
                    "name": self.node.enclave.name, "url": url, "quote": self.node.enclave.quote.to_json(),
                    "digest": digest})
            if response.status_code != 200:
                self.node.record_sync(MANAGER, f"refused ({response.status_code}): {detail(response)}")
                return []
            self._registered = True
            self.node.record_sync(MANAGER, "ok")
            return response.json()["peers"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self.node.record_sync(MANAGER, f"unreachable at {base}: {exc!r}")
            return []

    def pull(self, peer_url: str, peer: str) -> None:
        """Ask `peer` for its key ring and merge it; the outcome goes to `health()['sync'][peer]`."""
        try:
            response = self.http.post(f"{peer_url.rstrip('/')}/v1/keys/export",
                                      content=self.node.enclave.quote.to_json().encode())
            if response.status_code != 200:
                self.node.record_sync(peer, f"refused ({response.status_code}): {detail(response)}")
                return
            new = self.node.import_keys(response.content, peer)
        except httpx.HTTPError as exc:
            self.node.record_sync(peer, f"unreachable at {peer_url}: {exc!r}")
        except TeeError as exc:
            self.node.record_sync(peer, f"answer rejected: {exc}")
        else:
            self.node.record_sync(peer, f"ok: {new} new keys")
