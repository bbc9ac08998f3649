"""MPC operator benchmark: our engine beside SecretFlow SPU (SEMI2K) and MPyC, on the same inputs in one run.

    python benchmarks/mpc.py [--size small|full] [--skip-grpc] [--skip-he] [--json PATH]

Two parties, full size: a 1000×100 @ 100×1 matmul, 10^5 comparisons x < y and 10^5 sigmoids, x and y
uniform on [-8, 8]; `--size small`: 100×10 @ 10×1 and 10^3 elements, a quick check. Three parties:
10^4 comparisons (small: 10^3), ours with a dealer beside MPyC. SPU and MPyC run through
benchmarks/mpc_reference.py (see there how; `pip install -e '.[spu]' mpyc`, Python 3.11), "spu not
installed" / "mpyc not installed" standing in for their rows where they are missing.

Ours, how:
- dealer: tuples from a trusted dealer, a party of its own (role dealer) that answers the computing
  parties' requests during the online phase; truncation by tuple.
- he offline / online: two parties, no dealer. `prepare` makes, ahead of the operator, exactly the
  tuples that it consumed under the dealer (counted there): Beaver triples from OU homomorphic
  encryption, AND triples and daBits from IKNP oblivious transfer, truncation pairs from those. The
  online phase then draws from these pools. The matmul's and the comparisons' tuples are made in
  full. Those of 10^5 sigmoids would take many minutes, so the sigmoid's offline row is projected:
  its tuple counts times the costs per tuple measured in the same run (HE triples and truncation
  pairs on 2,000, AND words and daBits in the comparisons' offline phase). Its online phase is the
  dealer row's protocol, drawing from the pools instead of asking the dealer.
- sim: every party a thread of one process over the in-memory transport (`simulate`).
- grpc: every party, the dealer included, its own OS process talking gRPC with mutual TLS over
  loopback, as the `sharedml.jobs.worker` parties of a job do (certificates from `init_federation`).
- Each measurement runs in fresh processes, so that peak RSS is that measurement's own.

Columns:
- seconds: the operator alone (inputs already shared, the result left shared: its reveal is not
  timed), the slowest party; best of 3 after the parties met at a barrier (he: one run, the pools
  hold tuples for one). The first run pays one-off costs (polynomial fits), as SPU's warm-up run does.
  Offline rows leave out the one-off setup (keys, base OTs, the HE worker pool) and say how long it took.
- ours/ref: seconds over the reference's. Two parties, rows in simulation: the SPU row of the same
  operator; sigmoid methods against SPU modes of their kind (minimax ↔ DEFAULT, accurate ↔ REAL,
  linear ↔ SEG3). Three parties: MPyC secfxp(64,18).
- bytes: sent by all parties, the dealer's answers included. rounds: opening rounds (SPU: send
  actions of a party). max err: against numpy, comparisons must be exact (0).
- rss: peak RSS (MiB) of the process, in sim the one process running every party, in grpc the
  largest party process.

Bars (issue): in simulation each operator within 1.5× of SPU SEMI2K; the default sigmoid's max abs
error ≤ 1e-3 on [-8, 8].
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from mpc_reference import SIZES, Size, expected, make_inputs, peak_rss_mb

from sharedml.crypto import parallel
from sharedml.mpc import DealerSource, MPCSession, TripleSource
from sharedml.mpc import functions as F
from sharedml.mpc.triples import Tuple
from sharedml.net.certs import init_federation, load_identity
from sharedml.net.channel import Channel
from sharedml.net.grpc_transport import GrpcTransport
from sharedml.runtime.context import Context
from sharedml.runtime.simulate import simulate

REFERENCE = Path(__file__).with_name("mpc_reference.py")
REPEATS = 3
TIMEOUT = 3600.0
RATE_N = 2000  # elementwise HE triples and truncation pairs made to measure their rates
WARMUP_MUL = 1000  # HE triples made before timing anything HE: enough to start the HE worker pool
# Truncation pairs are made by a protocol that itself draws AND words and daBits: made first, they
# make their own instead of taking those prepared for the operator.
OFFLINE_ORDER = ("trunc", "mul", "matmul", "and_words", "dabits")
SPU_MODE = {"minimax": "DEFAULT", "accurate": "REAL", "linear": "SEG3"}
OPERATORS = {
    "matmul": lambda u, v, method: u @ v,
    "less": lambda u, v, method: F.less(u, v),
    "sigmoid": lambda u, v, method: F.sigmoid(u, method=method),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Job:
    """One measurement of ours: `op` run by every party (op "offline": tuples only, no operator)."""

    op: str
    n: int
    matmul: tuple[int, int]
    method: str = "minimax"
    triples: str = "dealer"
    parties: int = 2
    repeats: int = REPEATS
    demand: dict[str, Any] = field(default_factory=dict)  # he/ot: the tuples to make first, by kind
    truncation: str | None = None  # the session's default unless set

    @property
    def roles(self) -> dict[str, str]:
        roles = {p: "party" for p in ("alice", "bob", "carol")[:self.parties]}
        return (roles | {"dealer": "dealer"}) if self.triples == "dealer" else roles


@dataclass
class Row:
    op: str
    engine: str
    where: str
    n: str
    seconds: float | None = None
    bytes: int | None = None
    rounds: int | None = None
    max_error: float | None = None
    rss_mb: float | None = None
    note: str = ""
    reference: str = ""  # the engine this row's ratio is taken against
    ratio: float | None = None


# -- what runs at every party ---------------------------------------------------------------------
class CountingSource(TripleSource):
    """The dealer's tuples, tallied: what an operator consumes is what the dealer-free offline phase makes."""

    def __init__(self, inner: TripleSource) -> None:
        self.inner, self.name, self.makes_trunc_pairs = inner, inner.name, inner.makes_trunc_pairs
        self.demand = self.zero()

    @staticmethod
    def zero() -> dict[str, Any]:
        return {"mul": 0, "matmul": [], "and_words": 0, "dabits": 0, "trunc": {}}

    def take(self) -> dict[str, Any]:
        """The tally so far, restarting it."""
        tally, self.demand = self.demand, self.zero()
        return tally

    def mul(self, shape: tuple[int, ...]) -> Tuple:
        self.demand["mul"] += math.prod(shape)
        return self.inner.mul(shape)

    def matmul(self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Tuple:
        self.demand["matmul"].append((tuple(shape_a), tuple(shape_b)))
        return self.inner.matmul(shape_a, shape_b)

    def and_words(self, n: int) -> Tuple:
        self.demand["and_words"] += n
        return self.inner.and_words(n)

    def dabits(self, n: int) -> Tuple:
        self.demand["dabits"] += n
        return self.inner.dabits(n)

    def trunc(self, n: int, shift: int) -> Tuple:
        self.demand["trunc"][shift] = self.demand["trunc"].get(shift, 0) + n
        return self.inner.trunc(n, shift)

    def close(self) -> None:
        self.inner.close()


def open_session(ctx: Context, job: Job) -> MPCSession:
    if job.triples in ("he", "ot") or ctx.role == "dealer":
        return MPCSession(ctx, triples=job.triples, truncation=job.truncation if ctx.role != "dealer" else None)
    computing = [p for p in ctx.parties if ctx.roles[p] != "dealer"]
    return MPCSession(ctx, triples=CountingSource(DealerSource(ctx, computing, "dealer")))


def barrier(mpc: MPCSession) -> None:
    """Every computing party waits for the others (one opening of a zero word), so timings start together."""
    mpc.open(np.zeros(1, np.uint64))


def traffic(mpc: MPCSession) -> int:
    """Bytes this party sent, plus those the dealer sent it (the dealer's traffic, counted where it lands)."""
    stats = mpc.ctx.channel.stats.snapshot()
    return sum(s["bytes_sent"] for s in stats.values()) + stats.get(mpc.dealer, {}).get("bytes_recv", 0)


def prepare(mpc: MPCSession, kind: str, amount: Any) -> tuple[float, int]:
    """Make `amount` tuples of one kind ahead: (seconds, bytes)."""
    barrier(mpc)
    sent, began = traffic(mpc), time.perf_counter()
    mpc.triples.prepare(**{kind: amount})
    return time.perf_counter() - began, traffic(mpc) - sent


def run_operator(mpc: MPCSession, job: Job, operands: tuple, want: np.ndarray) -> dict[str, Any]:
    counting = isinstance(mpc.triples, CountingSource)
    barrier(mpc)
    if counting:
        mpc.triples.take()
    sent, rounds, began = traffic(mpc), mpc.rounds, time.perf_counter()
    out = OPERATORS[job.op](*operands, job.method)
    run = {"seconds": time.perf_counter() - began, "bytes": traffic(mpc) - sent, "rounds": mpc.rounds - rounds,
           "demand": mpc.triples.take() if counting else None}
    return run | {"error": float(np.max(np.abs(out.reveal() - want)))}


def party_program(ctx: Context, job: Job) -> dict[str, Any]:
    """The job at one party; the same code in simulation and over gRPC."""
    began = time.perf_counter()
    with open_session(ctx, job) as mpc:
        if mpc.is_dealer:
            mpc.serve()
            return {}
        if job.triples in ("he", "ot") and {"mul", "matmul"} & set(job.demand):
            mpc.triples.prepare(mul=WARMUP_MUL)
        if job.op == "sigmoid":
            F.sigmoid_plan(job.method)  # the one-off fit, outside the timing (repeats may be 1)
        setup = time.perf_counter() - began
        offline = {kind: prepare(mpc, kind, job.demand[kind]) for kind in OFFLINE_ORDER if kind in job.demand}
        runs = []
        if job.op != "offline":
            data = make_inputs(job.n, job.matmul)
            names = ("a", "b") if job.op == "matmul" else ("x", "y")
            operands = tuple(mpc.share(data[name] if ctx.party == owner else None, owner=owner)
                             for name, owner in zip(names, mpc.parties, strict=False))
            want = expected(job.op, data)
            runs = [run_operator(mpc, job, operands, want) for _ in range(job.repeats)]
        return {"setup_s": setup, "offline": offline, "runs": runs}


# -- running a job: threads of one process, or one process per party over gRPC -------------------
def _child(queue: mp.Queue, index: int, fn: Any, args: tuple) -> None:
    try:
        queue.put((index, fn(*args), None))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which stops the others
        queue.put((index, None, f"{type(err).__name__}: {err}"))
    finally:  # else multiprocessing's exit would wait forever for the idle HE workers
        parallel.shutdown()


def in_processes(calls: list[tuple[Any, tuple]]) -> list[Any]:
    """fn(*args) of each call, each in a fresh spawned process; the first failure stops them all."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(queue, i, fn, args)) for i, (fn, args) in enumerate(calls)]
    for proc in procs:
        proc.start()
    results = {}
    try:
        for _ in procs:
            index, value, error = queue.get(timeout=TIMEOUT)
            if error:
                raise RuntimeError(error)
            results[index] = value
    finally:
        for proc in procs:
            if len(results) < len(procs):
                proc.terminate()
            proc.join()
    return [results[i] for i in range(len(calls))]


def sim_job(job: Job) -> dict[str, dict]:
    results = simulate(partial(party_program, job=job), job.roles, timeout=TIMEOUT)
    rss = peak_rss_mb()
    return {party: result | {"rss_mb": rss} for party, result in results.items()}


def _grpc_party(party: str, roles: dict[str, str], addresses: dict[str, str], cert_dir: str, name: str,
                program: Any, args: tuple) -> Any:
    peers = {p: a for p, a in addresses.items() if p != party}
    transport = GrpcTransport(load_identity(Path(cert_dir), party), addresses[party], peers, set(addresses),
                              connect_timeout=TIMEOUT)
    try:
        channel = Channel(transport, name, "main", roles, TIMEOUT)
        with tempfile.TemporaryDirectory(prefix=f"sharedml-{name}-") as workdir:
            return program(Context(party, roles, name, "main", channel, Path(workdir)), *args)
    finally:
        transport.close()


def in_grpc_processes(roles: dict[str, str], program: Any, args: tuple = (), name: str = "bench") -> dict[str, Any]:
    """{party: program(ctx, *args)}, every party its own spawned process, gRPC + mutual TLS on loopback
    (certificates from `init_federation`, as the parties of a job have). `program` must be picklable."""
    with tempfile.TemporaryDirectory(prefix=f"sharedml-{name}-") as cert_dir:
        init_federation(list(roles), Path(cert_dir))
        base = free_base_port(len(roles))
        addresses = {p: f"127.0.0.1:{base + i}" for i, p in enumerate(roles)}
        results = in_processes([(_grpc_party, (p, roles, addresses, cert_dir, name, program, args)) for p in roles])
    return dict(zip(roles, results, strict=True))


def _measured_party(ctx: Context, job: Job) -> dict[str, Any]:
    return party_program(ctx, job) | {"rss_mb": peak_rss_mb()}


def free_base_port(count: int) -> int:
    """A port p with p .. p+count-1 free on loopback right now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        with contextlib.suppress(OSError), contextlib.ExitStack() as stack:
            for port in range(base, base + count):
                stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            return base


def run_job(job: Job, where: str) -> dict[str, dict]:
    """{party: its result} of `job`, in simulation or over gRPC."""
    if where == "sim":
        return in_processes([(sim_job, (job,))])[0]
    return in_grpc_processes(job.roles, _measured_party, (job,), name="mpc-bench")


# -- from party results to rows -------------------------------------------------------------------
@dataclass
class Measured:
    row: Row
    demand: dict[str, Any] | None  # the tuples one run consumed (dealer jobs)
    offline: dict[str, tuple[float, int]]  # kind -> (seconds, bytes) of making it ahead
    setup_s: float


def measure(job: Job, where: str, engine: str, n: str, reference: str = "") -> Measured:
    log(f"  {where:4} {job.op:8} {engine}")
    results = run_job(job, where)
    computing = [r for r in results.values() if "runs" in r]
    row = Row(job.op, engine, where, n, rss_mb=max(r["rss_mb"] for r in results.values()), reference=reference)
    offline = {kind: (max(r["offline"][kind][0] for r in computing), sum(r["offline"][kind][1] for r in computing))
               for kind in computing[0]["offline"]}
    demand = None
    if job.repeats:
        runs = [[r["runs"][i] for r in computing] for i in range(job.repeats)]
        best = min(runs, key=lambda parties: max(p["seconds"] for p in parties))
        row.seconds = max(p["seconds"] for p in best)
        row.bytes = sum(p["bytes"] for p in best)
        row.rounds = max(p["rounds"] for p in best)
        row.max_error = max(p["error"] for run in runs for p in run)
        demand = best[0]["demand"]
        if job.op == "less" and row.max_error:
            row.note = "NOT EXACT"
    return Measured(row, demand, offline, max(r["setup_s"] for r in computing))


def operand_label(op: str, size: Size) -> str:
    m, k = size.matmul
    return f"{m}x{k}@{k}x1" if op == "matmul" else f"{size.n:,}"


def dealer_rows(size: Size, where: str) -> tuple[list[Row], dict[tuple[str, str], dict]]:
    """Ours with the dealer, every operator and sigmoid method; also what each consumed."""
    rows, demands = [], {}
    for op, method in (("matmul", ""), ("less", ""), ("sigmoid", "minimax"), ("sigmoid", "accurate"),
                       ("sigmoid", "linear")):
        engine = "ours dealer" + (f" {method}" if method else "")
        job = Job(op, size.n, size.matmul, method=method or "minimax")
        measured = measure(job, where, engine, operand_label(op, size), spu_engine(SPU_MODE.get(method, "")))
        rows.append(measured.row)
        demands[op, method] = measured.demand
    return rows, demands


def offline_row(op: str, where: str, n: str, measured: Measured, demand: dict[str, Any],
                engine: str = "ours he offline") -> Row:
    parts = ", ".join(f"{amount(kind, demand[kind]):,} {kind} {seconds:.1f} s"
                      for kind, (seconds, _) in measured.offline.items())
    return Row(op, engine, where, n, seconds=sum(s for s, _ in measured.offline.values()),
               bytes=sum(b for _, b in measured.offline.values()), rss_mb=measured.row.rss_mb,
               note=f"{parts}; setup {measured.setup_s:.1f} s not included")


def amount(kind: str, value: Any) -> int:
    """How many tuples a demand of one kind is: matrix triples, truncation pairs over all shifts, elements."""
    return len(value) if kind == "matmul" else sum(value.values()) if kind == "trunc" else value


def unit_costs(demand: dict[str, Any], offline: dict[str, tuple[float, int]]) -> dict[str, tuple[float, float]]:
    """Seconds and bytes per tuple of each kind made."""
    return {kind: (seconds / amount(kind, demand[kind]), sent / amount(kind, demand[kind]))
            for kind, (seconds, sent) in offline.items()}


def he_rows(size: Size, where: str, demands: dict[tuple[str, str], dict]) -> list[Row]:
    """Dealer-free: offline and online of the matmul and the comparisons, the sigmoid's offline projected."""
    rows, rates = [], {}
    for op in ("matmul", "less"):
        demand = {kind: value for kind, value in demands[op, ""].items() if value}
        job = Job(op, size.n, size.matmul, triples="he", repeats=1, demand=demand)
        measured = measure(job, where, "ours he online", operand_label(op, size), spu_engine(""))
        rows += [offline_row(op, where, measured.row.n, measured, demand), measured.row]
        rates |= unit_costs(demand, measured.offline)
    sigmoid = {kind: value for kind, value in demands["sigmoid", "minimax"].items() if value}
    # what the comparisons' offline phase did not make, or made too little of to time well
    sample = {kind: {shift: RATE_N for shift in value} if kind == "trunc" else RATE_N
              for kind, value in sigmoid.items() if kind in ("mul", "trunc")}
    rate_job = Job("offline", 0, size.matmul, triples="he", repeats=0, demand=sample)
    rates |= unit_costs(sample, measure(rate_job, where, "ours he (tuple rates)", "").offline)
    counts = {kind: amount(kind, value) for kind, value in sigmoid.items()}
    rows.append(Row("sigmoid", "ours he offline minimax", where, operand_label("sigmoid", size),
                    seconds=sum(count * rates[kind][0] for kind, count in counts.items()),
                    bytes=round(sum(count * rates[kind][1] for kind, count in counts.items())),
                    note="PROJECTED: " + ", ".join(f"{count:,} {kind}" for kind, count in counts.items())
                         + f" at this run's rates (HE triples {1 / rates['mul'][0]:,.0f}/s on {RATE_N:,}); "
                         "online = the dealer row's protocol"))
    # triples="ot": elementwise triples by OT, fast enough to make all of them; local truncation (no
    # truncation pairs, each of which would cost two carry trees of OT-made AND triples)
    demand = {kind: value for kind, value in sigmoid.items() if kind != "trunc"}
    job = Job("sigmoid", size.n, size.matmul, triples="ot", repeats=1, demand=demand, truncation="local")
    measured = measure(job, where, "ours ot online minimax", operand_label("sigmoid", size), spu_engine("DEFAULT"))
    measured.row.note = "local truncation"
    rows += [offline_row("sigmoid", where, measured.row.n, measured, demand, "ours ot offline minimax"), measured.row]
    return rows


def three_party_rows(size: Size, grpc: bool) -> list[Row]:
    n = size.three_party_n
    rows = []
    for kind in ("secfxp64", "secint32"):
        rows.append(reference_row("mpyc", ["mpyc", kind, str(n), "-M3", f"-B{free_base_port(3)}"], "less",
                                  f"MPyC {kind} 3p", "tcp", f"{n:,}"))
    for where in ("sim", "grpc") if grpc else ("sim",):
        job = Job("less", n, size.matmul, parties=3)
        rows.append(measure(job, where, "ours dealer 3p", f"{n:,}", "MPyC secfxp64 3p").row)
    return rows


# -- reference engines ----------------------------------------------------------------------------
def spu_engine(mode: str) -> str:
    return f"SPU SEMI2K {mode}".rstrip()


def reference_row(module: str, argv: list[str], op: str, engine: str, where: str, n: str) -> Row:
    """A row from mpc_reference.py, or a note that its engine is missing or failed."""
    if importlib.util.find_spec(module) is None:
        return Row(op, engine, where, n, note=f"{module} not installed")
    log(f"  {where:4} {op:8} {engine}")
    out = subprocess.run([sys.executable, str(REFERENCE), *argv], capture_output=True, text=True, timeout=TIMEOUT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        return Row(op, engine, where, n, note=f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(lines[-1])
    return Row(op, engine, where, n, result["seconds"], result["bytes"], result["rounds"], result["max_error"],
               result["rss_mb"])


def spu_rows(size_name: str, size: Size) -> list[Row]:
    rows = [reference_row("spu", ["spu", op, size_name], op, spu_engine(""), "sim", operand_label(op, size))
            for op in ("matmul", "less")]
    for mode in ("DEFAULT", "REAL", "SEG3"):
        rows.append(reference_row("spu", ["spu", f"sigmoid-{mode}", size_name], "sigmoid", spu_engine(mode), "sim",
                                  operand_label("sigmoid", size)))
    rows[2].note = rows[2].note or "DEFAULT resolves to REAL in spu 0.9.5"
    return rows


# -- output ---------------------------------------------------------------------------------------
def with_ratios(rows: list[Row]) -> list[Row]:
    """Ratios to the reference; to SPU only in simulation, where SPU was run."""
    for row in rows:
        if row.reference.startswith("SPU") and row.where != "sim":
            continue
        base = next((r for r in rows if r.op == row.op and r.engine == row.reference and r.seconds), None)
        if base and row.seconds:
            row.ratio = row.seconds / base.seconds
    return rows


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    print(f"{'op':8} {'engine':34} {'where':5} {'n':>15} {'seconds':>9} {'ours/ref':>8} {'bytes MB':>10} "
          f"{'rounds':>6} {'max err':>8} {'rss MiB':>8}  note")
    for op in ("matmul", "less", "sigmoid"):
        for r in (r for r in rows if r.op == op):
            print(f"{r.op:8} {r.engine:34} {r.where:5} {r.n:>15} {fmt(r.seconds, '9.4f'):>9} {fmt(r.ratio, '8.2f'):>8} "
                  f"{fmt(r.bytes and r.bytes / 1e6, '10.2f'):>10} {fmt(r.rounds, '6d'):>6} "
                  f"{fmt(r.max_error, '8.1e'):>8} {fmt(r.rss_mb, '8.0f'):>8}  {r.note}")


def print_bars(rows: list[Row]) -> None:
    """The issue's bars: ours within 1.5x of SPU in simulation; default sigmoid error <= 1e-3."""
    for r in rows:
        if r.ratio is not None and r.reference.startswith("SPU"):
            print(f"bar ours/SPU <= 1.5: {r.op} {r.engine}: {r.ratio:.2f} {'PASS' if r.ratio <= 1.5 else 'FAIL'}")
    for r in rows:
        if r.op == "sigmoid" and "minimax" in r.engine and r.max_error is not None:
            ok = r.max_error <= 1e-3
            print(f"bar sigmoid error <= 1e-3: {r.engine} ({r.where}): {r.max_error:.1e} {'PASS' if ok else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--skip-grpc", action="store_true", help="simulation only")
    parser.add_argument("--skip-he", action="store_true", help="no dealer-free (HE/OT) tuples")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    size = SIZES[args.size]
    log(f"MPC benchmark, size {args.size}")
    rows = spu_rows(args.size, size)
    for where in ("sim",) if args.skip_grpc else ("sim", "grpc"):
        dealer, demands = dealer_rows(size, where)
        rows += dealer + ([] if args.skip_he else he_rows(size, where, demands))
    rows = with_ratios(rows + three_party_rows(size, not args.skip_grpc))
    print_table(rows)
    print_bars(rows)
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
