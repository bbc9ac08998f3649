"""gRPC transport with mutual TLS: the networked path between parties.

Each party runs a gRPC server (its inbox) and opens a client channel to each peer. The TLS
handshake rejects any certificate not signed by the federation CA; the server then checks that
the certificate's common name is the sender the message claims to be and a party of the job.

Small messages go in one unary call ([u32 header length][header][payload]); larger ones stream as
chunks into a buffer allocated once at the receiver, so neither side holds more than the message
plus one chunk. No protobuf schema is needed: the methods carry raw bytes.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import msgpack

from .certs import Identity
from .channel import DEFAULT_TIMEOUT, MessageKey, Transport
from .errors import PeerRejected, PeerUnreachable, TransportError

SERVICE = "sharedml.Transport"
CHUNK_BYTES = 4 << 20
MAX_GRPC_MESSAGE = CHUNK_BYTES + (1 << 20)
DEFAULT_MAX_MESSAGE_BYTES = 16 << 30
_LEN = struct.Struct("<I")
_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
]


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
        self.peer_addresses = dict(peers)
        self.allowed = set(allowed)
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self._client_creds = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem, private_key=identity.key_pem,
            certificate_chain=identity.cert_pem,
        )
        self._channels: dict[str, tuple[grpc.Channel, object, object, object]] = {}
        self._channels_lock = threading.Lock()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"{self.party}-rx"),
                                   options=_GRPC_OPTIONS)
        handlers = {
            "Deliver": grpc.unary_unary_rpc_method_handler(self._on_deliver),
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
    def _authorize(self, context: grpc.ServicerContext, claimed: str) -> None:
        names = context.auth_context().get("x509_common_name") or []
        cert_party = names[0].decode() if names else None
        if cert_party != claimed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate is for {cert_party!r} but the message claims to be from {claimed!r}")
        if cert_party not in self.allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"party {cert_party!r} is not a party of this job on node {self.party!r}")

    def _parse(self, frame: bytes, context: grpc.ServicerContext) -> tuple[MessageKey, int, int]:
        try:
            key, size, offset = _unpack_header(frame)
        except (ValueError, msgpack.UnpackException) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed message header: {err}")
        self._authorize(context, key.src)
        if size > self.max_message_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"message of {size} bytes exceeds the limit of {self.max_message_bytes}")
        return key, size, offset

    def _on_deliver(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        key, size, offset = self._parse(frame, context)
        if len(frame) - offset != size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payload length does not match the header")
        self.mailbox.put(key, memoryview(frame)[offset:].tobytes() if offset else frame)
        return b""

    def _on_stream(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        first = next(chunks, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty message stream")
        key, size, offset = self._parse(first, context)
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = len(first) - offset
        if filled > size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stream longer than its header says")
        view[:filled] = memoryview(first)[offset:]
        for chunk in chunks:
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
    def _methods(self, peer: str):
        with self._channels_lock:
            if peer not in self._channels:
                address = self.peer_addresses.get(peer)
                if address is None:
                    raise PeerUnreachable(f"no address known for party {peer!r} at party {self.party!r}")
                channel = grpc.secure_channel(
                    address, self._client_creds,
                    options=_GRPC_OPTIONS + [("grpc.ssl_target_name_override", peer)],
                )
                self._channels[peer] = (
                    channel,
                    channel.unary_unary(f"/{SERVICE}/Deliver"),
                    channel.stream_unary(f"/{SERVICE}/Stream"),
                    channel.unary_unary(f"/{SERVICE}/Abort"),
                )
            return self._channels[peer][1:]

    def _deliver(self, peer: str, key: MessageKey, segments: list[memoryview], nbytes: int) -> None:
        deliver, stream, _ = self._methods(peer)
        header = _pack_header(key, nbytes)
        # A big message may take a while on a slow link: allow 10 MB/s on top of the connect timeout.
        deadline = self.connect_timeout + nbytes / 10e6
        try:
            if nbytes <= CHUNK_BYTES:
                deliver(b"".join([header, *segments]), timeout=deadline, wait_for_ready=True)
            else:
                stream(_chunked(header, segments), timeout=deadline, wait_for_ready=True)
        except grpc.RpcError as err:
            raise self._translate(err, peer, key) from None

    def _translate(self, err: grpc.RpcError, peer: str, key: MessageKey) -> TransportError:
        code, details = err.code(), err.details()
        where = f"party {peer!r} at {self.peer_addresses.get(peer)}"
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return PeerRejected(f"{where} rejected message {key.tag!r} from {self.party!r}: {details}")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return PeerUnreachable(
                f"{where} did not accept message {key.tag!r} within {self.connect_timeout:g} s "
                f"(job {key.job}, task {key.task}): {details}"
            )
        return TransportError(f"sending {key.tag!r} to {where} failed: {code.name}: {details}")

    def _notify_abort(self, peer: str, job: str, reason: str) -> None:
        _, _, abort = self._methods(peer)
        abort(msgpack.packb([job, self.party, reason[:4000]]), timeout=min(self.connect_timeout, 5.0))

    def close(self) -> None:
        with self._channels_lock:
            for channel, *_ in self._channels.values():
                channel.close()
            self._channels.clear()
        self._server.stop(grace=1.0).wait()


def _chunked(header: bytes, segments: list[memoryview]) -> Iterator[bytes]:
    """Yield the header, then the payload in chunks of at most CHUNK_BYTES (one chunk copied at a time)."""
    yield header
    for segment in segments:
        view = memoryview(segment).cast("B")
        for start in range(0, len(view), CHUNK_BYTES):
            yield view[start:start + CHUNK_BYTES].tobytes()
