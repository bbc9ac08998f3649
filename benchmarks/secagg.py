"""Secure aggregation benchmark: plain vs secure summing of client vectors, in simulation and over gRPC.

    python benchmarks/secagg.py [--clients 10] [--sizes 100000 1000000] [--repeats 3] [--grpc]

Both runs use the same in-memory transport (threads, real serialization): "plain" has each client send
its float32 vector and the aggregator add them up; "secure" runs `sharedml.fl.secagg.secure_aggregate`
(complete graph, threshold n/2 + 1, no dropouts) with 64- and 32-bit rings. Prints the best-of-repeats
wall time, the ratio to plain, the bytes a client sends and receives, the CPU seconds of the busiest client
and of the aggregator (each party's own thread: what one machine would spend if each party had its own), and
the time of one client's ChaCha20 mask streams alone (n - 1 pairwise + 1 self mask, k + 1 with SecAgg+;
the aggregator removes n self-masks). In simulation every party shares this machine's cores, and OpenSSL's
ChaCha20 holds the GIL, so the secure wall time is close to the sum of all parties' CPU.
With `--grpc` every party (the aggregator and each client) is its own OS process, talking gRPC with
mutual TLS on loopback as the parties of a job do; after a warm-up round trip the aggregator times one
aggregation, from telling the clients to start to holding the total (key agreement and share exchange
included). All processes still share this machine's cores.
Bar (later FedAvg issue): secure <= 1.5x plain at 10 clients x 10^6 parameters.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mpc import in_grpc_processes

from sharedml.crypto.prg import SeededStream
from sharedml.fl.secagg import secure_aggregate
from sharedml.runtime.context import Context
from sharedml.runtime.simulate import simulate


def plain_sum(inputs: dict[str, np.ndarray]) -> Callable[[Context], Any]:
    def party(ctx: Context) -> Any:
        cpu = time.thread_time()
        if ctx.role == "client":
            ctx.send("server", "update", inputs[ctx.party])
            return _cost(ctx, cpu)
        total = np.zeros_like(next(iter(inputs.values())))
        for update in ctx.gather("update").values():
            total += update
        return _cost(ctx, cpu)
    return party


def secure_sum(inputs: dict[str, np.ndarray], ring_bits: int, totals: list[np.ndarray],
               neighbours: int | None = None) -> Callable[[Context], Any]:
    """Complete graph with threshold n/2 + 1, or SecAgg+ with k neighbours and threshold k/2 + 1."""
    graph = "complete" if neighbours is None else "sparse"
    threshold = (len(inputs) if neighbours is None else neighbours) // 2 + 1

    def party(ctx: Context) -> Any:
        cpu = time.thread_time()
        result = secure_aggregate(ctx, inputs.get(ctx.party), threshold=threshold, clip=1.0, frac_bits=16,
                                  ring_bits=ring_bits, graph=graph, neighbours=neighbours)
        if result is not None:
            totals.append(result.total)
        return _cost(ctx, cpu)
    return party


def _cost(ctx: Context, cpu_start: float) -> tuple[int, int, float]:
    """Bytes this party sent and received, and the CPU seconds its own thread used."""
    stats = ctx.channel.stats.snapshot().values()
    return (sum(s["bytes_sent"] for s in stats), sum(s["bytes_recv"] for s in stats),
            time.thread_time() - cpu_start)


def best(fn: Callable[[], dict[str, Any]], repeats: int) -> tuple[float, dict[str, Any]]:
    times, out = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def expansion_seconds(size: int, streams: int, bits: int, repeats: int) -> float:
    """Time to expand and add `streams` ChaCha20 masks of `size` ring elements (one client's masking)."""
    def work() -> dict[str, Any]:
        acc = np.zeros(size, dtype=np.uint32 if bits == 32 else np.uint64)
        for _ in range(streams):
            acc += SeededStream(os.urandom(32), domain=b"bench").ring(size, bits)
        return {}
    return best(work, repeats)[0]


def report(name: str, seconds: float, plain_s: float, out: dict[str, Any]) -> None:
    sent, recv, _ = out["c00"]
    client_cpu = max(cpu for p, (_, _, cpu) in out.items() if p != "server")
    print(f"  {name:<25} {seconds:7.3f} s {seconds / plain_s:6.2f}x   client sends {sent / 1e6:6.2f} MB, receives "
          f"{recv / 1e6:6.3f} MB; CPU: busiest client {client_cpu:.3f} s, aggregator {out['server'][2]:.3f} s")


def client_input(party: str, size: int) -> np.ndarray:
    """Client cNN's vector, the same in every process (the aggregator's check needs them all)."""
    return np.random.default_rng(int(party[1:])).uniform(-1, 1, size).astype(np.float32)


def timed_party(ctx: Context, size: int, bits: int, neighbours: int | None) -> dict[str, Any] | None:
    """One aggregation (bits 0: plain) after a warm-up round trip; the aggregator returns its time and total."""
    clients = ctx.parties_with_role("client")
    if ctx.role == "client":
        ctx.send("server", "ready", 1)
        ctx.recv("server", "go")
    else:
        ctx.gather("ready", clients)
        started = time.perf_counter()
        ctx.broadcast("go", 1, clients)
    vector = client_input(ctx.party, size) if ctx.role == "client" else None
    if bits == 0:
        if ctx.role == "client":
            ctx.send("server", "update", vector)
            return None
        total = np.zeros(size, dtype=np.float64)
        for update in ctx.gather("update", clients).values():
            total += update
    else:
        threshold = (len(clients) if neighbours is None else neighbours) // 2 + 1
        result = secure_aggregate(ctx, vector, threshold=threshold, clip=1.0, frac_bits=16, ring_bits=bits,
                                  graph="complete" if neighbours is None else "sparse", neighbours=neighbours)
        if result is None:
            return None
        total = result.total
    return {"seconds": time.perf_counter() - started, "total": total}


def grpc_report(roles: dict[str, str], size: int, repeats: int) -> None:
    expected = np.sum([client_input(c, size).astype(np.float64) for c in roles if c != "server"], axis=0)
    plain_s = 0.0
    for name, bits, k in (("plain", 0, None), ("secure 64-bit", 64, None), ("secure 32-bit", 32, None),
                          ("secure 32-bit SecAgg+ k=4", 32, 4)):
        runs = [in_grpc_processes(roles, timed_party, (size, bits, k), name="secagg-bench")["server"]
                for _ in range(repeats)]
        seconds = min(run["seconds"] for run in runs)
        plain_s = plain_s or seconds
        error = float(np.max(np.abs(runs[-1]["total"] - expected)))
        print(f"  {name:<25} {seconds:7.3f} s {seconds / plain_s:6.2f}x   max error {error:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grpc", action="store_true", help="every party its own process over gRPC + mTLS")
    args = parser.parse_args()
    n = args.clients
    roles = {"server": "aggregator", **{f"c{i:02d}": "client" for i in range(n)}}
    rng = np.random.default_rng(0)
    print(f"{n} clients, float32 vectors, best of {args.repeats}; {os.cpu_count()} CPUs")
    if args.grpc:
        for size in args.sizes:
            print(f"\n{size:,} parameters, gRPC + mutual TLS, one process per party")
            grpc_report(roles, size, args.repeats)
        return
    for size in args.sizes:
        inputs = {c: rng.uniform(-1, 1, size).astype(np.float32) for c in roles if c != "server"}
        expected = np.sum([x.astype(np.float64) for x in inputs.values()], axis=0)
        plain_s, plain_out = best(lambda inputs=inputs: simulate(plain_sum(inputs), roles), args.repeats)
        print(f"\n{size:,} parameters")
        report("plain", plain_s, plain_s, plain_out)
        for bits, k in ((64, None), (32, None), (32, 4)):
            totals: list[np.ndarray] = []
            secure_s, out = best(lambda inputs=inputs, bits=bits, k=k, totals=totals:
                                 simulate(secure_sum(inputs, bits, totals, k), roles), args.repeats)
            report(f"secure {bits}-bit" + ("" if k is None else f" SecAgg+ k={k}"), secure_s, plain_s, out)
            error = float(np.max(np.abs(totals[-1] - expected)))
            masks = expansion_seconds(size, n if k is None else k + 1, bits, args.repeats)
            print(f"    max error {error:.1e}; one client's {n if k is None else k + 1} ChaCha20 mask streams "
                  f"alone: {masks:.3f} s")


if __name__ == "__main__":
    main()
