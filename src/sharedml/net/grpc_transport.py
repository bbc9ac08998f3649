"""gRPC transport with mutual TLS: the networked path between parties.

Each party runs a gRPC server (its inbox) and opens one client channel (one TLS connection) to each
peer. The TLS handshake rejects any certificate not signed by the federation CA; the server then
checks that the certificate's common name is the party the sender claims to be and a party of the
job, and answers PERMISSION_DENIED otherwise. No protobuf schema is needed: methods carry raw bytes,
and every message starts with a frame `[u32 header length][msgpack header][payload]`.

Two paths, because small and large messages are limited by different things:

* Small messages (most protocol traffic; round trip is what matters) go on one persistent
  bidirectional stream per peer, the *pipe*, opened on first use. A message then costs one stream
  write instead of a whole RPC (new HTTP/2 stream, headers, status, response): this more than
  halved the round trip. The server accepts the pipe (one empty response) only after checking the
  sender's certificate, so a refused sender gets PeerRejected from its first `send`.
* Large messages each get their own client-streaming call of CHUNK_BYTES chunks, copied into a
  buffer allocated once at the receiver, so neither side holds more than the message plus a few
  chunks, and concurrent large sends do not hold up the pipe.

Delivery semantics: a large message's `send` returns once the peer's server accepted the whole
message. A small message's `send` returns once its write on a healthy pipe completed (gRPC took it
for the peer's connection); if the peer refuses it or the pipe breaks afterwards, the failure
surfaces as the error of a later `send` to that peer (after a broken connection that `send` opens a
new pipe) or as the peer's `recv` timeout. `close` flushes the pipes (bounded) before tearing down.

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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import msgpack

from .certs import Identity
from .channel import DEFAULT_TIMEOUT, MessageKey, Transport
from .errors import PeerRejected, PeerUnreachable, TransportError

SERVICE = "sharedml.Transport"
PIPE_MAX_BYTES = 1 << 20  # messages up to this size go on the pipe; larger ones are streamed
CHUNK_BYTES = 1 << 20
MAX_GRPC_MESSAGE = max(PIPE_MAX_BYTES, CHUNK_BYTES) + (1 << 20)  # room for the header
DEFAULT_MAX_MESSAGE_BYTES = 16 << 30
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
    """A zeroed, writable buffer for a received message.

    A large one is an anonymous mapping populated in one system call, which releases the GIL, rather
    than a bytearray whose zero-filling takes one page fault per 4 KiB while holding it: about 40 ms
    less receiver CPU per 100 MB here. Both work with `loads`, which returns views into the buffer.
    """
    if size <= PIPE_MAX_BYTES:
        return bytearray(size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0))


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
    """Client side of the connection to one peer: channel, method stubs and the pipe."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.pipe: _Pipe | None = None
        self.call_pipe = channel.stream_stream(f"/{SERVICE}/Pipe")
        self.call_stream = channel.stream_unary(f"/{SERVICE}/Stream")
        self.call_abort = channel.unary_unary(f"/{SERVICE}/Abort")


class GrpcTransport(Transport):
    """Party-to-party messaging over gRPC with mutual TLS.

    `peers` maps each peer's party name to its address ("host:port"); `allowed` is the set of
    party names this node accepts messages from (the job's parties).
    """

    def __init__(self, identity: Identity, listen: str, peers: dict[str, str], allowed: set[str],
                 connect_timeout: float = DEFAULT_TIMEOUT,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(identity.party)
        self.identity = identity
        self.host = listen.rsplit(":", 1)[0]  # where peers reach this party; other services may bind there too
        self.peer_addresses = dict(peers)
        self.allowed = set(allowed)
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self._client_creds = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem, private_key=identity.key_pem,
            certificate_chain=identity.cert_pem,
        )
        self._peers: dict[str, _Peer] = {}
        self._peers_lock = threading.Lock()
        # Each inbound pipe holds a worker thread for its lifetime; threads start only when needed.
        self._executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix=f"{self.party}-rx")
        self._server = grpc.server(self._executor, options=_GRPC_OPTIONS)
        handlers = {
            "Pipe": grpc.stream_stream_rpc_method_handler(self._on_pipe),
            "Stream": grpc.stream_unary_rpc_method_handler(self._on_stream),
            "Abort": grpc.unary_unary_rpc_method_handler(self._on_abort),
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
    def _authorize(self, context: grpc.ServicerContext, claimed: str | None) -> str:
        """Return the sender's party name, or abort the call if its certificate does not allow it."""
        names = context.auth_context().get("x509_common_name") or []
        cert_party = names[0].decode() if names else None
        if cert_party != claimed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate is for {cert_party!r} but the sender claims to be {claimed!r}")
        if cert_party not in self.allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"party {cert_party!r} is not a party of this job on node {self.party!r}")
        return cert_party

    def _parse(self, frame: bytes, context: grpc.ServicerContext,
               sender: str | None = None) -> tuple[MessageKey, int, int]:
        """Header of a message's first frame; `sender` is the party already authorized on this call."""
        try:
            key, size, offset = _unpack_header(frame)
        except (ValueError, msgpack.UnpackException) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed message header: {err}")
        if key.src != sender or sender not in self.allowed:
            self._authorize(context, key.src)
        if size > self.max_message_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"message of {size} bytes exceeds the limit of {self.max_message_bytes}")
        return key, size, offset

    def _on_pipe(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        sender = self._authorize(context, dict(context.invocation_metadata()).get(PARTY_METADATA))
        yield b""  # the sender waits for this before its first write
        for frame in frames:
            key, size, offset = self._parse(frame, context, sender)
            if len(frame) - offset != size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payload length does not match the header")
            self.mailbox.put(key, frame[offset:])

    def _on_stream(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        first = next(chunks, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty message stream")
        key, size, offset = self._parse(first, context)
        buffer = _allocate(size)
        view = memoryview(buffer)
        filled = 0
        for chunk in _payload_chunks(first, offset, chunks):
            end = filled + len(chunk)
            if end > size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stream longer than its header says")
            view[filled:end] = chunk
            filled = end
        if filled != size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stream ended after {filled} of {size} bytes")
        self.mailbox.put(key, buffer)
        return b""

    def _on_abort(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            job, src, reason = msgpack.unpackb(frame, max_str_len=1 << 20, max_array_len=3)
        except (ValueError, TypeError, msgpack.UnpackException):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed abort notice")
        self._authorize(context, src)
        self.mailbox.abort(job, src, reason)
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
        # A big message may take a while on a slow link: allow 10 MB/s on top of the connect timeout.
        deadline = self.connect_timeout + nbytes / 10e6
        self._pipe(peer, key)  # fail fast, before any data, if the peer is unreachable or rejects us
        try:
            self._peer(peer).call_stream(chunks, timeout=deadline, wait_for_ready=True)
        except grpc.RpcError as err:
            raise self._translate(err, peer, key) from None

    def _where(self, peer: str) -> str:
        return f"party {peer!r} at {self.peer_addresses.get(peer)}"

    def _translate(self, err: grpc.RpcError, peer: str, key: MessageKey) -> TransportError:
        code, details = err.code(), err.details()
        where = self._where(peer)
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return PeerRejected(f"{where} rejected message {key.tag!r} from {self.party!r}: {details}")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or code in _REOPEN:
            return PeerUnreachable(
                f"{where} did not accept message {key.tag!r} within {self.connect_timeout:g} s "
                f"(job {key.job}, task {key.task}): {details}"
            )
        return TransportError(f"sending {key.tag!r} to {where} failed: {code.name}: {details}")

    def _notify_abort(self, peer: str, job: str, reason: str) -> None:
        notice = msgpack.packb([job, self.party, reason[:4000]])
        self._peer(peer).call_abort(notice, timeout=min(self.connect_timeout, ABORT_TIMEOUT))

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
