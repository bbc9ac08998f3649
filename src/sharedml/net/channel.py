"""The Channel API that protocol code uses, and the transport contract beneath it.

Protocol code only ever calls `send / recv / broadcast / gather` on a `Channel`; which transport
carries the bytes (threads in one process, or gRPC with mutual TLS between machines) is invisible
to it. Every message is keyed by (job, task, sender, tag, sequence), so concurrent tasks and
repeated sends with the same tag never mix: the n-th `recv(peer, tag)` gets the n-th
`send(me, tag)` of that peer in that task.
"""

from __future__ import annotations

import mmap
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import JobAborted, JobCancelled, PeerTimeout, TransportError
from .serialization import SerializationError, dumps, encoded_size, loads

DEFAULT_TIMEOUT = 60.0
Payload = bytes | bytearray | memoryview | mmap.mmap  # a received message, as the transport holds it


@dataclass(frozen=True, slots=True)
class MessageKey:
    job: str
    task: str
    src: str
    tag: str
    seq: int


@dataclass(frozen=True, slots=True)
class WireRecord:
    """One message as it crossed the wire, kept only when a recorder is attached (for audits/tests)."""

    src: str
    dst: str
    key: MessageKey
    payload: bytes


class TrafficStats:
    """Bytes and messages sent to / received from each peer; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_sent: Counter[str] = Counter()
        self.bytes_recv: Counter[str] = Counter()
        self.msgs_sent: Counter[str] = Counter()
        self.msgs_recv: Counter[str] = Counter()

    def add_sent(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_sent[peer] += nbytes
            self.msgs_sent[peer] += 1

    def add_recv(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_recv[peer] += nbytes
            self.msgs_recv[peer] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            peers = sorted(set(self.bytes_sent) | set(self.bytes_recv))
            return {
                p: {"bytes_sent": self.bytes_sent[p], "bytes_recv": self.bytes_recv[p],
                    "msgs_sent": self.msgs_sent[p], "msgs_recv": self.msgs_recv[p]}
                for p in peers
            }


class Mailbox:
    """Messages that have arrived for this party and wait for a matching `recv`.

    Also holds the job-level signals that must wake a waiting `recv`: another party aborted the
    job, or the job was cancelled here.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: dict[MessageKey, Payload] = {}
        self._aborted: dict[str, tuple[str, str]] = {}
        self._cancelled: set[str] = set()

    def put(self, key: MessageKey, payload: Payload) -> None:
        with self._cond:
            self._messages.setdefault(key, payload)  # a retried delivery must not replace the first
            self._cond.notify_all()

    def abort(self, job: str, party: str, reason: str) -> None:
        with self._cond:
            self._aborted.setdefault(job, (party, reason))
            self._cond.notify_all()

    def cancel(self, job: str) -> None:
        with self._cond:
            self._cancelled.add(job)
            self._cond.notify_all()

    def get(self, key: MessageKey, timeout: float) -> Payload:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if key.job in self._cancelled:
                    raise JobCancelled(f"job {key.job} was cancelled")
                if key.job in self._aborted:
                    raise JobAborted(key.job, *self._aborted[key.job])
                payload = self._messages.pop(key, None)
                if payload is not None:
                    return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeout(
                        f"no message {key.tag!r} (#{key.seq}) from party {key.src!r} within {timeout:g} s "
                        f"(job {key.job}, task {key.task}); the peer may have crashed or be unreachable"
                    )
                self._cond.wait(remaining)

    def forget_job(self, job: str) -> None:
        """Drop everything held for a finished job."""
        with self._cond:
            for key in [k for k in self._messages if k.job == job]:
                del self._messages[key]
            self._aborted.pop(job, None)
            self._cancelled.discard(job)


class Transport(ABC):
    """Moves encoded messages between this party and its peers.

    Subclasses implement `_deliver` (get bytes into the peer's mailbox) and `_notify_abort`.
    """

    def __init__(self, party: str) -> None:
        self.party = party
        self.mailbox = Mailbox()
        self.stats = TrafficStats()
        self.recorder: Callable[[WireRecord], None] | None = None

    @abstractmethod
    def _deliver(self, peer: str, key: MessageKey, segments: list[memoryview], nbytes: int) -> None: ...

    @abstractmethod
    def _notify_abort(self, peer: str, job: str, reason: str) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release network resources."""

    def send_encoded(self, peer: str, key: MessageKey, segments: list[memoryview]) -> int:
        nbytes = encoded_size(segments)
        if self.recorder is not None:
            self.recorder(WireRecord(self.party, peer, key, b"".join(segments)))
        self._deliver(peer, key, segments, nbytes)
        self.stats.add_sent(peer, nbytes)
        return nbytes

    def receive(self, key: MessageKey, timeout: float) -> tuple[Any, int]:
        payload = self.mailbox.get(key, timeout)
        self.stats.add_recv(key.src, len(payload))
        try:
            return loads(payload), len(payload)
        except SerializationError as err:
            raise TransportError(
                f"party {key.src!r} sent a malformed message {key.tag!r} (job {key.job}, task {key.task}): {err}"
            ) from err

    def abort_job(self, job: str, reason: str, peers: Iterable[str]) -> None:
        """Tell peers that this party failed, so their pending `recv`s fail now instead of timing out."""
        for peer in peers:
            try:
                self._notify_abort(peer, job, reason)
            except Exception:  # best effort: the peer may be the one that is down
                pass

    def cancel_job(self, job: str) -> None:
        self.mailbox.cancel(job)


class Channel:
    """A party's view of one task's messaging with the other parties of a job."""

    def __init__(self, transport: Transport, job: str, task: str, parties: Iterable[str],
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.transport = transport
        self.party = transport.party
        self.job = job
        self.task = task
        self.parties = list(parties)
        if self.party not in self.parties:
            raise ValueError(f"party {self.party!r} is not one of the channel's parties {self.parties}")
        self.peers = [p for p in self.parties if p != self.party]
        self.timeout = timeout
        self.stats = TrafficStats()
        self._lock = threading.Lock()
        self._send_seq: Counter[tuple[str, str]] = Counter()
        self._recv_seq: Counter[tuple[str, str]] = Counter()

    def _check_peer(self, peer: str) -> None:
        if peer not in self.peers:
            raise ValueError(f"{peer!r} is not a peer of party {self.party!r} in task {self.task}; "
                             f"peers are {self.peers}")

    def _next(self, counter: Counter[tuple[str, str]], peer: str, tag: str) -> int:
        with self._lock:
            seq = counter[(peer, tag)]
            counter[(peer, tag)] = seq + 1
            return seq

    def _send_segments(self, peer: str, tag: str, segments: list[memoryview]) -> None:
        key = MessageKey(self.job, self.task, self.party, tag, self._next(self._send_seq, peer, tag))
        self.stats.add_sent(peer, self.transport.send_encoded(peer, key, segments))

    def send(self, peer: str, tag: str, obj: Any) -> None:
        """Send `obj` to `peer` under `tag`; returns once the peer's node has accepted it."""
        self._check_peer(peer)
        self._send_segments(peer, tag, dumps(obj))

    def recv(self, peer: str, tag: str, timeout: float | None = None) -> Any:
        """Wait for the next message `tag` from `peer`; raises PeerTimeout after `timeout` seconds."""
        self._check_peer(peer)
        key = MessageKey(self.job, self.task, peer, tag, self._next(self._recv_seq, peer, tag))
        obj, nbytes = self.transport.receive(key, self.timeout if timeout is None else timeout)
        self.stats.add_recv(peer, nbytes)
        return obj

    def broadcast(self, tag: str, obj: Any, peers: Iterable[str] | None = None) -> None:
        """Send the same object to several peers (all by default), encoding it once."""
        targets = self.peers if peers is None else list(peers)
        for peer in targets:
            self._check_peer(peer)
        segments = dumps(obj)
        for peer in targets:
            self._send_segments(peer, tag, segments)

    def gather(self, tag: str, peers: Iterable[str] | None = None,
               timeout: float | None = None) -> dict[str, Any]:
        """Receive one message `tag` from each of several peers (all by default)."""
        return {peer: self.recv(peer, tag, timeout) for peer in (self.peers if peers is None else peers)}
