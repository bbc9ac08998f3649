"""Transport benchmark: a numpy array between two processes over gRPC + mutual TLS on loopback,
beside a plain TCP socket copy of the same bytes in the same run, and the small-message round trip.

    python benchmarks/transport.py [--mb 100] [--repeats 5] [--pings 2000]

Prints MB/s for both, their ratio, the median round trip, bytes on the wire and peak memory
(max RSS) of both processes. Bar (issue 2): ratio >= 0.5, round trip <= 1 ms median.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sharedml.net.certs import init_federation, load_identity
from sharedml.net.channel import Channel
from sharedml.net.grpc_transport import GrpcTransport

PARTIES = ["sender", "receiver"]


def _transport(cert_dir: str, party: str) -> GrpcTransport:
    return GrpcTransport(load_identity(Path(cert_dir), party), "127.0.0.1:0", {}, set(PARTIES))


def grpc_receiver(cert_dir: str, conn, repeats: int, pings: int) -> None:
    transport = _transport(cert_dir, "receiver")
    conn.send(transport.port)
    transport.peer_addresses["sender"] = conn.recv()
    channel = Channel(transport, "bench", "transport", PARTIES)
    for _ in range(pings):
        channel.send("sender", "pong", channel.recv("sender", "ping"))
    for _ in range(repeats):
        data = channel.recv("sender", "array")
        channel.send("sender", "ack", int(data.nbytes))
        del data
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    conn.recv()
    transport.close()


def bench_grpc(cert_dir: str, array: np.ndarray, repeats: int, pings: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=grpc_receiver, args=(cert_dir, child, repeats, pings))
    proc.start()
    transport = _transport(cert_dir, "sender")
    transport.peer_addresses["receiver"] = f"127.0.0.1:{parent.recv()}"
    parent.send(f"127.0.0.1:{transport.port}")
    channel = Channel(transport, "bench", "transport", PARTIES)
    rtts = []
    for i in range(pings):
        start = time.perf_counter()
        channel.send("receiver", "ping", i)
        channel.recv("receiver", "pong")
        rtts.append(time.perf_counter() - start)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        channel.send("receiver", "array", array)
        assert channel.recv("receiver", "ack") == array.nbytes
        times.append(time.perf_counter() - start)
    receiver_rss = parent.recv()
    parent.send("done")
    proc.join()
    sent = transport.stats.snapshot()["receiver"]["bytes_sent"]
    transport.close()
    return {"mb_s": array.nbytes / statistics.median(times) / 1e6, "rtt_ms": statistics.median(rtts[10:]) * 1e3,
            "bytes_sent": sent, "receiver_rss_mb": receiver_rss / 1024}


def socket_receiver(conn, nbytes: int, repeats: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    conn.send(server.getsockname()[1])
    peer, _ = server.accept()
    buffer = bytearray(nbytes)
    view = memoryview(buffer)
    for _ in range(repeats):
        got = 0
        while got < nbytes:
            got += peer.recv_into(view[got:], nbytes - got)
        peer.sendall(b"k")
    peer.close()
    server.close()


def bench_socket(array: np.ndarray, repeats: int) -> float:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=socket_receiver, args=(child, array.nbytes, repeats))
    proc.start()
    sock = socket.create_connection(("127.0.0.1", parent.recv()))
    payload = memoryview(array).cast("B")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sock.sendall(payload)
        assert sock.recv(1) == b"k"
        times.append(time.perf_counter() - start)
    sock.close()
    proc.join()
    return array.nbytes / statistics.median(times) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pings", type=int, default=2000)
    args = parser.parse_args()
    array = np.random.default_rng(0).random(args.mb * 1_000_000 // 8)
    with tempfile.TemporaryDirectory() as cert_dir:
        init_federation(PARTIES, Path(cert_dir))
        raw = bench_socket(array, args.repeats)
        grpc_result = bench_grpc(cert_dir, array, args.repeats, args.pings)
    ratio = grpc_result["mb_s"] / raw
    sender_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"payload: {array.nbytes / 1e6:.0f} MB float64, {args.repeats} repeats (median), loopback")
    print(f"{'path':32} {'MB/s':>10}")
    print(f"{'plain TCP socket (no TLS)':32} {raw:10.0f}")
    print(f"{'sharedml gRPC + mutual TLS':32} {grpc_result['mb_s']:10.0f}")
    print(f"ratio gRPC+mTLS / raw socket: {ratio:.2f}   (bar >= 0.50: {'PASS' if ratio >= 0.5 else 'FAIL'})")
    rtt = grpc_result["rtt_ms"]
    print(f"small-message round trip, median of {args.pings}: {rtt:.3f} ms   "
          f"(bar <= 1 ms: {'PASS' if rtt <= 1 else 'FAIL'})")
    print(f"bytes sent by sender over gRPC: {grpc_result['bytes_sent']:,}")
    print(f"peak RSS: sender {sender_rss:.0f} MB, receiver {grpc_result['receiver_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
