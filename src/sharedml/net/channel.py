"""The Channel API that protocol code uses, and the transport contract beneath it.

Protocol code only ever calls `send / recv / broadcast / gather` on a `Channel`; which transport
carries the bytes (threads in one process, or gRPC with mutual TLS between machines) is invisible
to it. Every message is keyed by (job, task, sender, tag, sequence), so concurrent tasks and
repeated sends with the same tag never mix: the n-th `recv(peer, tag)` gets the n-th
`send(me, tag)` of that peer in that task.

Peers need not be honest, so what one can make this party hold is bounded (issue 22): a message may
be at most `max_message_bytes` (a job spec may raise it; 256 MiB by default), and messages that have
arrived but are not received yet may take at most twice that per peer and four times that per job,
and 10,000 messages per peer, 40,000 per job (`UnreadBounds`). A message beyond a bound is refused:
its sender's `send` fails with a LimitExceeded error naming the bound, and a `recv` here that waits
for that peer's messages in that job fails with PeerFlooding instead of waiting for what was refused.
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

from .errors import JobAborted, JobCancelled, MessageTooLarge, PeerFlooding, PeerTimeout, TransportError
from .serialization import SerializationError, dumps, encoded_size, loads

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20
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


@dataclass(frozen=True, slots=True)
class UnreadBounds:
    """How much one peer (over all jobs) and one job (over all peers) may leave unread in the mailbox.

    A message usually arrives before its `recv`, and a protocol may send the next one before the peer
    read the last: so a peer may leave two messages of the largest size unread, and a job's peers four.
    """

    bytes_per_peer: int
    bytes_per_job: int
    messages_per_peer: int = 10_000
    messages_per_job: int = 40_000

    @classmethod
    def for_max_message(cls, max_message_bytes: int) -> UnreadBounds:
        return cls(2 * max_message_bytes, 4 * max_message_bytes)


class Mailbox:
    """Messages that have arrived for this party and wait for a matching `recv`, within UnreadBounds.

    Also holds the job-level signals that must wake a waiting `recv`: another party aborted the
    job, or the job was cancelled here, or a peer's message was refused for breaking a bound (then
    the peer's later messages in that job cannot be trusted to line up with the `recv`s).
    """

    def __init__(self, party: str, bounds: UnreadBounds) -> None:
        self.party = party
        self.bounds = bounds
        self._cond = threading.Condition()
        self._messages: dict[MessageKey, Payload] = {}
        self._aborted: dict[str, tuple[str, str]] = {}
        self._cancelled: set[str] = set()
        self._refused: dict[tuple[str, str], str] = {}  # (job, peer): why a message of theirs was refused
        self._held_bytes: Counter[tuple[str, str]] = Counter()  # ("peer", name) or ("job", id): unread bytes
        self._held: Counter[tuple[str, str]] = Counter()  # the same: unread messages

    def reserve(self, key: MessageKey, nbytes: int) -> None:
        """Count a message of `nbytes` as unread before it arrives (a large one, so that what it will take is
        checked before its data come); PeerFlooding if that breaks a bound."""
        with self._cond:
            self._admit(key, nbytes)

    def release(self, key: MessageKey, nbytes: int) -> None:
        """Undo `reserve` for a message that did not arrive."""
        with self._cond:
            self._count(key, -nbytes, -1)

    def put(self, key: MessageKey, payload: Payload, reserved: bool = False) -> None:
        """Store an arrived message (`reserved`: its size was counted by `reserve`); PeerFlooding if it breaks a
        bound. A retried delivery of a message already here is dropped: it must not replace the first."""
        with self._cond:
            if key in self._messages:
                if reserved:
                    self._count(key, -len(payload), -1)
                return
            if not reserved:
                self._admit(key, len(payload))
            self._messages[key] = payload
            self._cond.notify_all()

    def _admit(self, key: MessageKey, nbytes: int) -> None:
        bounds = self.bounds
        for scope, max_bytes, max_messages in ((("peer", key.src), bounds.bytes_per_peer, bounds.messages_per_peer),
                                               (("job", key.job), bounds.bytes_per_job, bounds.messages_per_job)):
            held_bytes, held = self._held_bytes[scope], self._held[scope]
            too_many = held + 1 > max_messages
            if too_many or held_bytes + nbytes > max_bytes:
                owner = f"party {key.src!r}" if scope[0] == "peer" else f"job {key.job}"
                remedy = ("must receive before it sends more" if too_many
                          else "may raise max_message_bytes in the job spec")
                reason = (
                    f"party {self.party!r} refused message {key.tag!r} ({nbytes} bytes) from party {key.src!r} "
                    f"(job {key.job}, task {key.task}): {owner} already has {held} messages ({held_bytes} bytes) "
                    f"there that were not received yet, and may have {max_messages} messages or {max_bytes} bytes "
                    f"(a bound against flooding: a protocol that needs more {remedy})"
                )
                self._refused.setdefault((key.job, key.src), reason)
                self._cond.notify_all()
                raise PeerFlooding(reason)
        self._count(key, nbytes, 1)

    def _count(self, key: MessageKey, nbytes: int, messages: int) -> None:
        for scope in (("peer", key.src), ("job", key.job)):
            self._held_bytes[scope] += nbytes
            self._held[scope] += messages
            if not self._held[scope]:
                del self._held[scope], self._held_bytes[scope]

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
                    self._count(key, -len(payload), -1)
                    return payload
                if (key.job, key.src) in self._refused:
                    raise PeerFlooding(self._refused[key.job, key.src])
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
                self._count(key, -len(self._messages.pop(key)), -1)
            self._aborted.pop(job, None)
            self._cancelled.discard(job)
            for refused in [r for r in self._refused if r[0] == job]:
                del self._refused[refused]


class Transport(ABC):
    """Moves encoded messages between this party and its peers.

    Subclasses implement `_deliver` (get bytes into the peer's mailbox) and `_notify_abort`.
    `max_message_bytes` bounds the messages this party sends and accepts, and by default (`unread`
    None) the bytes its mailbox holds unread (UnreadBounds.for_max_message).
    """

    def __init__(self, party: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 unread: UnreadBounds | None = None) -> None:
        self.party = party
        self.max_message_bytes = max_message_bytes
        self.mailbox = Mailbox(party, unread or UnreadBounds.for_max_message(max_message_bytes))
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
        if nbytes > self.max_message_bytes:
            raise MessageTooLarge(
                f"message {key.tag!r} from party {self.party!r} to party {peer!r} (job {key.job}, task {key.task}) "
                f"is {nbytes} bytes, more than max_message_bytes ({self.max_message_bytes}): send it in parts, "
                "or raise max_message_bytes in the job spec"
            )
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
