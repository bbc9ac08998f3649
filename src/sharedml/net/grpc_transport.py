"""gRPC transport with mutual TLS: the networked path between parties.

Each party runs a gRPC server (its inbox) and opens one client channel (one TLS connection) to each
peer. The TLS handshake rejects any certificate not signed by the federation CA; the server then
checks, as soon as a call starts, that the certificate's common name is the party the sender claims
to be (in the call's metadata) and a party of the job, and answers PERMISSION_DENIED otherwise. No
protobuf schema is needed: methods carry raw bytes, and every message starts with a frame
`[u32 header length][msgpack header][payload]`.

Two paths, because small and large messages are limited by different things:

* Small messages (most protocol traffic; round trip is what matters) go on one persistent
  bidirectional stream per peer, the *pipe*, opened on first use. A message then costs one stream
  write instead of a whole RPC (new HTTP/2 stream, headers, status, response): this more than
  halved the round trip. The server accepts the pipe (one empty response) only after checking the
  sender's certificate, so a refused sender gets PeerRejected from its first `send`.
* Large messages each get their own client-streaming call of CHUNK_BYTES chunks, copied into a
  buffer that grows as they arrive, so neither side holds more than the message plus a few chunks,
  and concurrent large sends do not hold up the pipe.

Delivery semantics: a large message's `send` returns once the peer's server accepted the whole
message. A small message's `send` returns once its write on a healthy pipe completed (gRPC took it
for the peer's connection); if the peer refuses it or the pipe breaks afterwards, the failure
surfaces as the error of a later `send` to that peer (after a broken connection that `send` opens a
new pipe) or as the peer's `recv` timeout. `close` flushes the pipes (bounded) before tearing down.

Bounds (issue 22): peers may be hostile, so what one can make the server hold is bounded. Every
open call holds a server thread, so a peer may hold PIPES_PER_PEER pipes (a newer one replaces its
oldest) and CALLS_PER_PEER Stream and Abort calls, all peers together CALLS_TOTAL, and the thread
pool is larger than all of these together: the pipe of a party that does not flood always finds a
thread (its large messages share CALLS_TOTAL with the other peers' calls). A call beyond a bound is
refused at once (RESOURCE_EXHAUSTED, LimitExceeded at the sender), and one that does not send its
first chunk within FIRST_CHUNK_TIMEOUT, or its whole message within the time the sender allows
itself, is cancelled. A message's declared size is checked against `max_message_bytes` and counted
against the mailbox's unread bounds (channel.UnreadBounds) before any of its data is read, and its
buffer grows with the data that actually came: a sender that claims a gigabyte and sends 16 bytes
costs the receiver no more memory than it sent (its claim only holds room in its own unread bound
until the call ends).

Throughput is bounded by CPU, not by the network: besides the kernel's copies, TLS encrypts and
decrypts every byte, and grpcio copies each received chunk three times into Python objects before
this module copies it into place. On a 2-core machine that gives about 400 MB/s, against about
2.5 GB/s for a plain socket and about 650 MB/s for a bare Python TLS socket (see
`benchmarks/transport.py`).
"""

from __future__ import annotations

import logging
import mmap
import queue
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
import msgpack

from .certs import Identity
from .channel import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT, MessageKey, Transport, UnreadBounds
from .errors import LimitExceeded, PeerFlooding, PeerRejected, PeerUnreachable, TransportError

SERVICE = "sharedml.Transport"
PIPE_MAX_BYTES = 1 << 20  # messages up to this size go on the pipe; larger ones are streamed
CHUNK_BYTES = 1 << 20
FIRST_BUFFER_BYTES = 4 * CHUNK_BYTES  # a large message's buffer starts at this size and doubles as data come
MAX_GRPC_MESSAGE = max(PIPE_MAX_BYTES, CHUNK_BYTES) + (1 << 20)  # room for the header
MIN_TRANSFER_RATE = 10e6  # bytes/s: a large message may take as long as at this rate, plus the connect timeout
FIRST_CHUNK_TIMEOUT = 5.0  # a Stream or Abort call that sends nothing for this long is cancelled
STREAMS_PER_PEER = 4  # large messages one party sends one peer at once; more wait their turn
CALLS_PER_PEER = 2 * STREAMS_PER_PEER  # open Stream and Abort calls of one peer: room for some it gave up on
CALLS_TOTAL = 32  # open Stream and Abort calls of all peers together
PIPES_PER_PEER = 2  # a peer's newer pipe replaces its oldest beyond this (a reconnect's old one may be dead)
SPARE_THREADS = 8  # server threads beyond what the bounds let calls hold: refusing a call takes one briefly
ABORT_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0
SERVER_GRACE = 0.5
PARTY_METADATA = "sharedml-party"
_LEN = struct.Struct("<I")
_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
]
_END = None  # queued to end a pipe's request stream
# A pipe that ended with one of these (closed, connection lost, peer shut down) is simply replaced.
_REOPEN = (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
_log = logging.getLogger(__name__)


def _pack_header(key: MessageKey, nbytes: int) -> bytes:
    header = msgpack.packb([key.job, key.task, key.src, key.tag, key.seq, nbytes])
    return _LEN.pack(len(header)) + header


def _unpack_header(frame: bytes) -> tuple[MessageKey, int, int]:
    """Return (key, payload size, offset of the payload in frame); ValueError if malformed."""
    if len(frame) < _LEN.size:
        raise ValueError("frame shorter than its length prefix")
    (hlen,) = _LEN.unpack_from(frame)
    if hlen > 65536 or _LEN.size + hlen > len(frame):
        raise ValueError("bad header length")
    fields = msgpack.unpackb(frame[_LEN.size:_LEN.size + hlen], max_str_len=65536, max_array_len=16,
                             max_map_len=0, max_bin_len=0, max_ext_len=0)
    if not (isinstance(fields, list) and len(fields) == 6):
        raise ValueError("bad header fields")
    job, task, src, tag, seq, size = fields
    if not all(isinstance(x, str) for x in (job, task, src, tag)) or not all(
        isinstance(x, int) and x >= 0 for x in (seq, size)
    ):
        raise ValueError("bad header field types")
    return MessageKey(job, task, src, tag, seq), size, _LEN.size + hlen


def _chunks(header: bytes, segments: list[memoryview]) -> Iterator[bytes]:
    """Yield header + payload as bytes objects of at most CHUNK_BYTES, each built with one copy."""
    pieces: list[memoryview | bytes] = [header]
    room = CHUNK_BYTES - len(header)
    for segment in segments:
        view = segment.cast("B")
        while len(view) >= room:
            pieces.append(view[:room])
            yield b"".join(pieces)
            view = view[room:]
            pieces, room = [], CHUNK_BYTES
        if len(view):
            pieces.append(view)
            room -= len(view)
    if pieces:
        yield b"".join(pieces)


def _payload_chunks(first: bytes, offset: int, chunks: Iterator[bytes]) -> Iterator[bytes | memoryview]:
    """The payload part of the first frame, then the following chunks."""
    if offset < len(first):
        yield memoryview(first)[offset:]
    yield from chunks


def _allocate(size: int) -> bytearray | mmap.mmap:
    """A zeroed, writable buffer for a received message (`loads` returns views into it).

    A large one is a private anonymous mapping: it grows without copying (mremap; a shared one could
    not grow, its backing object keeps its size), and its pages take memory only once written.
    """
    if size <= PIPE_MAX_BYTES:
        return bytearray(size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _transfer_timeout(connect_timeout: float, nbytes: int) -> float:
    """How long a large message may take, the same at both ends: a slow link gets MIN_TRANSFER_RATE."""
    return connect_timeout + nbytes / MIN_TRANSFER_RATE


def _cancel_after(context: grpc.ServicerContext, seconds: float) -> threading.Timer:
    """Cancel the call unless the returned timer is cancelled first: its request iterator then ends."""
    timer = threading.Timer(seconds, context.cancel)
    timer.daemon = True
    timer.start()
    return timer


class _Calls:
    """The calls each peer holds open at this server (each holds a server thread), within the bounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()
        self._pipes: defaultdict[str, list[grpc.ServicerContext]] = defaultdict(list)

    def enter(self, peer: str) -> str | None:
        """Count a new Stream or Abort call of `peer`; or say why it is refused."""
        with self._lock:
            if self._open[peer] >= CALLS_PER_PEER:
                return f"party {peer!r} already has {CALLS_PER_PEER} calls open, the most one peer may have"
            if self._open.total() >= CALLS_TOTAL:
                return f"{CALLS_TOTAL} calls are open, the most all peers together may have"
            self._open[peer] += 1
            return None

    def leave(self, peer: str) -> None:
        with self._lock:
            self._open[peer] -= 1

    def add_pipe(self, peer: str, context: grpc.ServicerContext) -> list[grpc.ServicerContext]:
        """Count a new pipe of `peer`; returns the older ones it replaces, for the caller to cancel."""
        with self._lock:
            pipes = self._pipes[peer]
            pipes.append(context)
            replaced = pipes[:-PIPES_PER_PEER]
            del pipes[:-PIPES_PER_PEER]
            return replaced

    def remove_pipe(self, peer: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            if context in self._pipes[peer]:
                self._pipes[peer].remove(context)


class _Pipe:
    """The persistent bidirectional stream that carries small messages to one peer.

    Frames are queued for gRPC's request-consuming thread; `send` waits until its frame's write
    completed (gRPC asks for the next frame only then), which also bounds the queue. `ended` is the
    finished call (its code and details say why), None while the pipe is open.
    """

    def __init__(self, method: grpc.StreamStreamMultiCallable, party: str) -> None:
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._queued = 0
        self._written = 0
        self.ended: grpc.Call | None = None
        self._call = method(self._requests(), wait_for_ready=True, metadata=((PARTY_METADATA, party),))

    def _requests(self) -> Iterator[bytes]:
        # Waits as long as the pipe lives: _END comes from `finish` or from the end of the call.
        while (frame := self._queue.get()) is not _END:
            yield frame
            with self._cond:  # gRPC resumes us only once the previous write completed
                self._written += 1
                self._cond.notify_all()

    def _on_end(self, call: grpc.Call) -> None:
        with self._cond:
            self.ended = call
            self._cond.notify_all()
        self._queue.put(_END)

    def open(self, timeout: float) -> bool:
        """Wait (at most `timeout`) for the server to accept the stream: True if it did."""
        timer = threading.Timer(timeout, self._call.cancel)
        timer.daemon = True
        timer.start()
        try:
            next(self._call)  # the server's acceptance: one empty response
        except (grpc.RpcError, StopIteration):
            pass  # the call ended (refused, unreachable, or cancelled by the timer): see `ended`
        finally:
            timer.cancel()
        self._call.add_done_callback(self._on_end)
        return self.ended is None

    def send(self, frame: bytes, timeout: float) -> bool:
        """Write one frame; False if the pipe ended (see `ended`) or the write did not complete in time."""
        with self._cond:
            if self.ended is not None:
                return False
            self._queued += 1
            ticket = self._queued
            self._queue.put(frame)
            self._cond.wait_for(lambda: self._written >= ticket or self.ended is not None, timeout)
            return self._written >= ticket

    def finish(self, timeout: float) -> bool:
        """End the request stream after the queued frames and wait for the call to end; True if it did."""
        self._queue.put(_END)
        with self._cond:
            return self._cond.wait_for(lambda: self.ended is not None, timeout)

    def cancel(self) -> None:
        self._call.cancel()


class _Peer:
    """Client side of the connection to one peer: channel, method stubs, the pipe and the open streams."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.pipe: _Pipe | None = None
        self.streams = threading.Semaphore(STREAMS_PER_PEER)
        self.call_pipe = channel.stream_stream(f"/{SERVICE}/Pipe")
        self.call_stream = channel.stream_unary(f"/{SERVICE}/Stream")
        self.call_abort = channel.stream_unary(f"/{SERVICE}/Abort")  # a stream: its wait for data is ours to bound


class GrpcTransport(Transport):
    """Party-to-party messaging over gRPC with mutual TLS.

    `peers` maps each peer's party name to its address ("host:port"); `allowed` is the set of
    party names this node accepts messages from (the job's parties). `max_message_bytes` and
    `unread` bound what peers may make this party hold (see Transport and the module docstring).
    """

    def __init__(self, identity: Identity, listen: str, peers: dict[str, str], allowed: set[str],
                 connect_timeout: float = DEFAULT_TIMEOUT,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, unread: UnreadBounds | None = None) -> None:
        super().__init__(identity.party, max_message_bytes, unread)
        self.identity = identity
        self.host = listen.rsplit(":", 1)[0]  # where peers reach this party; other services may bind there too
        self.peer_addresses = dict(peers)
        self.allowed = set(allowed)
        self.connect_timeout = connect_timeout
        self._metadata = ((PARTY_METADATA, self.party),)
        self._client_creds = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem, private_key=identity.key_pem,
            certificate_chain=identity.cert_pem,
        )
        self._peers: dict[str, _Peer] = {}
        self._peers_lock = threading.Lock()
        self._calls = _Calls()
        # Every open call holds a worker thread (started only when needed); the bounds leave SPARE_THREADS free.
        threads = CALLS_TOTAL + PIPES_PER_PEER * len(self.allowed) + SPARE_THREADS
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"{self.party}-rx")
        self._server = grpc.server(self._executor, options=_GRPC_OPTIONS)
        handlers = {
            "Pipe": grpc.stream_stream_rpc_method_handler(self._on_pipe),
            "Stream": grpc.stream_unary_rpc_method_handler(self._on_stream),
            "Abort": grpc.stream_unary_rpc_method_handler(self._on_abort),
        }
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        server_creds = grpc.ssl_server_credentials(
            [(identity.key_pem, identity.cert_pem)], root_certificates=identity.ca_pem,
            require_client_auth=True,
        )
        try:
            self.port = self._server.add_secure_port(listen, server_creds)
        except RuntimeError as err:
            raise TransportError(f"party {self.party!r} cannot listen on {listen}: {err}") from err
        if self.port == 0:
            raise TransportError(f"party {self.party!r} cannot listen on {listen} (address in use?)")
        self._server.start()

    # ---- receiving side -------------------------------------------------------------------
    def _authorize(self, context: grpc.ServicerContext) -> str:
        """Return the sender's party name, or abort the call if its certificate does not allow it."""
        claimed = dict(context.invocation_metadata()).get(PARTY_METADATA)
        names = context.auth_context().get("x509_common_name") or []
        cert_party = names[0].decode() if names else None
        if cert_party != claimed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate is for {cert_party!r} but the sender claims to be {claimed!r}")
        if cert_party not in self.allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"party {cert_party!r} is not a party of this job on node {self.party!r}")
        return cert_party

    @contextmanager
    def _call(self, context: grpc.ServicerContext) -> Iterator[str]:
        """Authorise a Stream or Abort call as it starts, before it waits for data, and count it against its
        sender's bounds while it runs; yields the sender."""
        sender = self._authorize(context)
        refused = self._calls.enter(sender)
        if refused is not None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"party {self.party!r} refused a call: {refused}")
        try:
            yield sender
        finally:
            self._calls.leave(sender)

    @staticmethod
    def _first_chunk(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """The call's first chunk: a call that sends none within FIRST_CHUNK_TIMEOUT is cancelled, so an idle
        call holds its thread only that long."""
        timer = _cancel_after(context, FIRST_CHUNK_TIMEOUT)
        try:
            first = next(chunks, None)
        finally:
            timer.cancel()
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no data within {FIRST_CHUNK_TIMEOUT:g} s")
        return first

    def _parse(self, frame: bytes, context: grpc.ServicerContext, sender: str) -> tuple[MessageKey, int, int]:
        """Header of a message's first frame; `sender` is the party authorized on this call."""
        try:
            key, size, offset = _unpack_header(frame)
        except (ValueError, msgpack.UnpackException) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed message header: {err}")
        if key.src != sender:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"message claims to be from {key.src!r} on a call from {sender!r}")
        if size > self.max_message_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"message {key.tag!r} from party {sender!r} declares {size} bytes, more than party "
                          f"{self.party!r} accepts (max_message_bytes {self.max_message_bytes}; the job spec may "
                          "raise it)")
        return key, size, offset

    def _on_pipe(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        sender = self._authorize(context)
        for replaced in self._calls.add_pipe(sender, context):
            replaced.cancel()
        try:
            yield b""  # the sender waits for this before its first write
            for frame in frames:
                key, size, offset = self._parse(frame, context, sender)
                if len(frame) - offset != size:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payload length does not match the header")
                try:
                    self.mailbox.put(key, frame[offset:])
                except PeerFlooding as err:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        finally:
            self._calls.remove_pipe(sender, context)

    def _on_stream(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        with self._call(context) as sender:
            first = self._first_chunk(chunks, context)
            key, size, offset = self._parse(first, context, sender)
            try:
                self.mailbox.reserve(key, size)
            except PeerFlooding as err:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
            try:
                buffer = self._receive(_payload_chunks(first, offset, chunks), size, context)
            except BaseException:
                self.mailbox.release(key, size)
                raise
            self.mailbox.put(key, buffer, reserved=True)
        return b""

    def _receive(self, chunks: Iterator[bytes | memoryview], size: int,
                 context: grpc.ServicerContext) -> bytearray | mmap.mmap:
        """Copy a large message's payload into a buffer that grows as the chunks arrive (doubling, up to
        `size`), within the time the sender allows itself."""
        buffer = _allocate(min(size, FIRST_BUFFER_BYTES))
        filled = 0
        timer = _cancel_after(context, _transfer_timeout(self.connect_timeout, size))
        try:
            for chunk in chunks:
                end = filled + len(chunk)
                if end > size:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stream longer than its header says")
                if end > len(buffer):
                    buffer.resize(min(size, max(end, 2 * len(buffer))))
                buffer[filled:end] = chunk
                filled = end
        finally:
            timer.cancel()
        if filled != size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stream ended after {filled} of {size} bytes")
        return buffer

    def _on_abort(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        with self._call(context) as sender:
            frame = self._first_chunk(frames, context)
            try:
                job, reason = msgpack.unpackb(frame, max_str_len=1 << 20, max_array_len=2)
            except (ValueError, TypeError, msgpack.UnpackException):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed abort notice")
            self.mailbox.abort(job, sender, reason)
        return b""

    # ---- sending side ---------------------------------------------------------------------
    def _peer(self, peer: str) -> _Peer:
        with self._peers_lock:
            if peer not in self._peers:
                address = self.peer_addresses.get(peer)
                if address is None:
                    raise PeerUnreachable(f"no address known for party {peer!r} at party {self.party!r}")
                channel = grpc.secure_channel(
                    address, self._client_creds,
                    options=_GRPC_OPTIONS + [("grpc.ssl_target_name_override", peer)],
                )
                self._peers[peer] = _Peer(channel)
            return self._peers[peer]

    def _deliver(self, peer: str, key: MessageKey, segments: list[memoryview], nbytes: int) -> None:
        header = _pack_header(key, nbytes)
        if nbytes <= PIPE_MAX_BYTES:
            self._send_small(peer, key, b"".join([header, *segments]))
        else:
            self._send_large(peer, key, _chunks(header, segments), nbytes)

    def _send_small(self, peer: str, key: MessageKey, frame: bytes) -> None:
        pipe = self._pipe(peer, key)
        if pipe.send(frame, self.connect_timeout):
            return
        if pipe.ended is not None and pipe.ended.code() in _REOPEN:
            # The connection broke before gRPC took our frame: try once more on a new pipe (the
            # mailbox ignores a duplicate if the frame did get through after all).
            pipe = self._pipe(peer, key)
            if pipe.send(frame, self.connect_timeout):
                return
        if pipe.ended is None:
            raise PeerUnreachable(f"{self._where(peer)} did not take message {key.tag!r} within "
                                  f"{self.connect_timeout:g} s (job {key.job}, task {key.task})")
        raise self._translate(pipe.ended, peer, key)

    def _pipe(self, peer: str, key: MessageKey) -> _Pipe:
        """The peer's open, accepted pipe; opens one if needed (so it also checks we may send)."""
        target = self._peer(peer)
        with target.lock:  # one pipe per peer: whoever finds none (or a broken one) opens it
            return self._open_pipe(peer, target, key)

    def _open_pipe(self, peer: str, target: _Peer, key: MessageKey) -> _Pipe:
        pipe = target.pipe
        if pipe is not None and pipe.ended is None:
            return pipe
        target.pipe = None
        if pipe is not None and pipe.ended.code() not in _REOPEN:
            raise self._translate(pipe.ended, peer, key)
        pipe = _Pipe(target.call_pipe, self.party)
        if not pipe.open(self.connect_timeout):
            if pipe.ended.code() not in _REOPEN:  # refused: bad certificate, or not a party of the job
                raise self._translate(pipe.ended, peer, key)
            raise PeerUnreachable(
                f"{self._where(peer)} did not accept a connection from {self.party!r} within "
                f"{self.connect_timeout:g} s (message {key.tag!r}, job {key.job}, task {key.task}): "
                "it is not listening, or the TLS handshake failed"
            )
        target.pipe = pipe
        return pipe

    def _send_large(self, peer: str, key: MessageKey, chunks: Iterator[bytes], nbytes: int) -> None:
        self._pipe(peer, key)  # fail fast, before any data, if the peer is unreachable or rejects us
        target = self._peer(peer)
        with target.streams:  # within the peer's bound on our open calls
            try:
                target.call_stream(chunks, timeout=_transfer_timeout(self.connect_timeout, nbytes),
                                   wait_for_ready=True, metadata=self._metadata)
            except grpc.RpcError as err:
                raise self._translate(err, peer, key) from None

    def _where(self, peer: str) -> str:
        return f"party {peer!r} at {self.peer_addresses.get(peer)}"

    def _translate(self, err: grpc.RpcError, peer: str, key: MessageKey) -> TransportError:
        code, details = err.code(), err.details()
        where = self._where(peer)
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return PeerRejected(f"{where} rejected message {key.tag!r} from {self.party!r}: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return LimitExceeded(f"{where} refused message {key.tag!r} from {self.party!r}: {details}")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or code in _REOPEN:
            return PeerUnreachable(
                f"{where} did not accept message {key.tag!r} within {self.connect_timeout:g} s "
                f"(job {key.job}, task {key.task}): {details}"
            )
        return TransportError(f"sending {key.tag!r} to {where} failed: {code.name}: {details}")

    def _notify_abort(self, peer: str, job: str, reason: str) -> None:
        notice = msgpack.packb([job, reason[:4000]])
        self._peer(peer).call_abort(iter([notice]), timeout=min(self.connect_timeout, ABORT_TIMEOUT),
                                    metadata=self._metadata)

    def close(self) -> None:
        """Flush the pipes (at most CLOSE_TIMEOUT in all), then close channels and stop the server."""
        with self._peers_lock:
            peers, self._peers = self._peers, {}
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for name, target in peers.items():
            if target.pipe is not None:
                self._finish(name, target.pipe, deadline)
            target.channel.close()
        self._server.stop(grace=SERVER_GRACE).wait(SERVER_GRACE + CLOSE_TIMEOUT)
        self._executor.shutdown(wait=False)

    def _finish(self, peer: str, pipe: _Pipe, deadline: float) -> None:
        if not pipe.finish(max(0.0, deadline - time.monotonic())):
            _log.warning("pipe to party %r did not drain within %g s; closing it", peer, CLOSE_TIMEOUT)
            pipe.cancel()
        elif pipe.ended.code() not in _REOPEN:
            _log.warning("party %r refused messages on the pipe: %s", peer, pipe.ended.details())
