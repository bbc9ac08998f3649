"""In-memory transport: every party is a thread of one process (simulation, tests, notebooks).

Messages are still encoded and copied into a fresh buffer, exactly as on the wire, so the
simulation exercises the same serialization and byte accounting as the networked path.
"""

from __future__ import annotations

import threading

from .channel import DEFAULT_MAX_MESSAGE_BYTES, MessageKey, Transport, UnreadBounds
from .errors import PeerUnreachable


class MemoryHub:
    """The shared 'network' that in-memory transports of one simulation deliver through.

    Its transports bound messages and unread messages as networked ones do (see Transport), so a
    simulation fails where a deployment with the same `max_message_bytes` would.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, unread: UnreadBounds | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.unread = unread
        self._lock = threading.Lock()
        self._transports: dict[str, MemoryTransport] = {}

    def transport(self, party: str) -> MemoryTransport:
        with self._lock:
            if party in self._transports:
                raise ValueError(f"party {party!r} is already attached to this hub")
            transport = MemoryTransport(party, self)
            self._transports[party] = transport
            return transport

    def lookup(self, peer: str) -> MemoryTransport:
        with self._lock:
            target = self._transports.get(peer)
        if target is None:
            raise PeerUnreachable(f"party {peer!r} is not attached to the in-memory hub")
        return target

    def detach(self, party: str) -> None:
        with self._lock:
            self._transports.pop(party, None)


class MemoryTransport(Transport):
    def __init__(self, party: str, hub: MemoryHub) -> None:
        super().__init__(party, hub.max_message_bytes, hub.unread)
        self.hub = hub

    def _deliver(self, peer: str, key: MessageKey, segments: list[memoryview], nbytes: int) -> None:
        target = self.hub.lookup(peer)
        buffer = bytearray(nbytes)
        offset = 0
        for segment in segments:
            view = memoryview(segment).cast("B")
            buffer[offset:offset + len(view)] = view
            offset += len(view)
        target.mailbox.put(key, buffer)

    def _notify_abort(self, peer: str, job: str, reason: str) -> None:
        self.hub.lookup(peer).mailbox.abort(job, self.party, reason)

    def close(self) -> None:
        self.hub.detach(self.party)
