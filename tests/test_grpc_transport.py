"""gRPC + mutual TLS transport: delivery, chunked large messages, and who is refused."""

from __future__ import annotations

import socket
import threading
import time

import grpc
import numpy as np
import pytest

from sharedml.net.certs import init_federation
from sharedml.net.channel import Channel, MessageKey
from sharedml.net.errors import PeerRejected, PeerUnreachable
from sharedml.net.grpc_transport import PARTY_METADATA, SERVICE, GrpcTransport, _pack_header


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return init_federation(["a", "b", "c"], tmp_path_factory.mktemp("certs"))


def pair(identities, allowed=("a", "b"), timeout=10.0):
    ta = GrpcTransport(identities["a"], "127.0.0.1:0", {}, set(allowed), connect_timeout=timeout)
    tb = GrpcTransport(identities["b"], "127.0.0.1:0", {}, set(allowed), connect_timeout=timeout)
    ta.peer_addresses["b"] = f"127.0.0.1:{tb.port}"
    tb.peer_addresses["a"] = f"127.0.0.1:{ta.port}"
    return ta, tb


def test_small_and_large_messages_arrive_intact(federation):
    ta, tb = pair(federation)
    try:
        ca, cb = Channel(ta, "j", "t", ["a", "b"]), Channel(tb, "j", "t", ["a", "b"])
        big = np.random.default_rng(1).random(3_000_000)  # 24 MB: more than one chunk
        ca.send("b", "small", {"x": 1})
        ca.send("b", "big", big)
        cb.send("a", "reply", [1, 2, 3])
        assert cb.recv("a", "small") == {"x": 1}
        assert np.array_equal(cb.recv("a", "big"), big)
        assert ca.recv("b", "reply") == [1, 2, 3]
        assert ca.stats.snapshot()["b"]["bytes_sent"] > big.nbytes
    finally:
        ta.close()
        tb.close()


def test_concurrent_senders_to_one_peer(federation):
    ta, tb = pair(federation)
    try:
        ca, cb = Channel(ta, "j", "t", ["a", "b"]), Channel(tb, "j", "t", ["a", "b"])
        threads = [threading.Thread(target=lambda i=i: ca.send("b", f"m{i}", np.full(1000, i))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(4):
            assert np.array_equal(cb.recv("a", f"m{i}"), np.full(1000, i))
    finally:
        ta.close()
        tb.close()


def test_certificate_of_a_non_member_party_is_refused(federation):
    """'c' holds a valid certificate from the same CA but is not a party of b's job."""
    tb = GrpcTransport(federation["b"], "127.0.0.1:0", {}, {"a", "b"}, connect_timeout=5)
    tc = GrpcTransport(federation["c"], "127.0.0.1:0", {"b": f"127.0.0.1:{tb.port}"}, {"a", "b", "c"},
                       connect_timeout=5)
    try:
        start = time.monotonic()
        with pytest.raises(PeerRejected, match="'c' is not a party"):
            Channel(tc, "j", "t", ["b", "c"]).send("b", "x", 1)
        assert time.monotonic() - start < 5
    finally:
        tb.close()
        tc.close()


def test_certificate_from_a_foreign_ca_is_refused(federation, tmp_path):
    """A party named 'a' but certified by another CA cannot deliver anything to b."""
    impostor = init_federation(["a"], tmp_path / "other-ca")["a"]
    tb = GrpcTransport(federation["b"], "127.0.0.1:0", {}, {"a", "b"}, connect_timeout=5)
    ta = GrpcTransport(impostor, "127.0.0.1:0", {"b": f"127.0.0.1:{tb.port}"}, {"a", "b"}, connect_timeout=1.5)
    try:
        with pytest.raises((PeerUnreachable, PeerRejected)):
            Channel(ta, "j", "t", ["a", "b"]).send("b", "x", "secret")
        assert not tb.mailbox._messages  # nothing was accepted
    finally:
        ta.close()
        tb.close()


def test_unreachable_peer_fails_after_the_timeout(federation):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ta = GrpcTransport(federation["a"], "127.0.0.1:0", {"b": f"127.0.0.1:{dead}"}, {"a", "b"}, connect_timeout=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(PeerUnreachable, match=r"party 'b' at 127.0.0.1:\d+"):
            Channel(ta, "j", "t", ["a", "b"]).send("b", "x", 1)
        assert 0.9 < time.monotonic() - start < 6
    finally:
        ta.close()


def test_abort_notice_reaches_the_peer(federation):
    ta, tb = pair(federation)
    try:
        ta.abort_job("j", "ValueError: boom", ["b"])
        from sharedml.net.errors import JobAborted

        with pytest.raises(JobAborted, match="boom"):
            Channel(tb, "j", "t", ["a", "b"]).recv("a", "x", timeout=5)
    finally:
        ta.close()
        tb.close()


def test_every_call_is_authorised_by_its_certificate_as_it_starts(federation):
    """The party named in the call's metadata and in each message header must be the certificate's."""
    tb = GrpcTransport(federation["b"], "127.0.0.1:0", {}, {"a", "b", "c"}, connect_timeout=5)
    a = federation["a"]
    creds = grpc.ssl_channel_credentials(root_certificates=a.ca_pem, private_key=a.key_pem,
                                         certificate_chain=a.cert_pem)
    try:
        with grpc.secure_channel(f"127.0.0.1:{tb.port}", creds,
                                 options=[("grpc.ssl_target_name_override", "b")]) as channel:
            stream, abort = (channel.stream_unary(f"/{SERVICE}/{m}") for m in ("Stream", "Abort"))
            forged = _pack_header(MessageKey("j", "t", "c", "x", 0), 0)
            cases = [
                (stream, [forged], ((PARTY_METADATA, "c"),), "certificate is for 'a' but the sender claims"),
                (stream, [forged], ((PARTY_METADATA, "a"),), "message claims to be from 'c' on a call from 'a'"),
                (abort, [b"\x92\xa1j\xa1x"], (), "certificate is for 'a' but the sender claims to be None"),
            ]
            for method, frames, metadata, details in cases:
                with pytest.raises(grpc.RpcError) as refused:
                    method(iter(frames), timeout=5, metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert details in refused.value.details()
        assert not tb.mailbox._messages and not tb.mailbox._aborted
    finally:
        tb.close()
