"""Online joint prediction under load: a bounded, open-loop load generator against 2 guest replicas,
each fanning out to 2 host replicas (every replica its own process, mutual TLS on loopback, a registry
with heartbeats), for SecureBoost (20 trees) and hetero LR trained on default_credit_hetero.

Bar (issue 10): SecureBoost p99 <= 20 ms at 500 requests/s on this machine, and zero errors while one
host replica is killed (`--kill`: shop-1 gets SIGKILL halfway through a SecureBoost run).

The generator sends request i at t0 + i / rate whatever happened before (open loop, so a slow answer
cannot hide the queue behind it) and measures latency from that scheduled time; at most
`--outstanding` requests are in flight, beyond that a request is counted as dropped (bounded).

Run: python benchmarks/serving.py [--rate 500] [--seconds 10] [--trees 20] [--depth 5] [--kill]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

try:
    import uvloop  # the generator's own CPU is taken from the servers': keep it small
except ImportError:
    uvloop = None

from sharedml import datasets
from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.serving.loopback import LocalCluster

DATA = datasets.folder()
JOB = """
job: bench-serving
timeout: 600
parties:
  bank: {{role: guest, data: {{clients: clients}}}}
  shop: {{role: host, data: {{clients: clients}}}}
tasks:
  align: {{component: psi, inputs: {{data: $clients}}}}
  boost: {{component: hetero_secureboost, inputs: {{train: align.data}},
          params: {{n_estimators: {trees}, max_depth: {depth}, key_bits: 1024, seed: 1}}}}
  lr: {{component: hetero_lr, inputs: {{train: align.data}}, params: {{epochs: 2, key_bits: 1024, seed: 1}}}}
"""


def train(root: Path, rows: int, trees: int, depth: int) -> tuple[str, str, dict[str, Path]]:
    """(workdir, job id, {party: full feature file}): trained on the first `rows` clients, served for all."""
    catalogs, sources = {}, {}
    for party, name in (("bank", "guest"), ("shop", "host")):
        folder = root / party
        folder.mkdir(parents=True)
        table = pd.read_csv(DATA / f"default_credit_hetero_{name}.csv.gz")
        table.iloc[:rows].to_csv(folder / "train.csv", index=False)
        table.to_csv(folder / "features.csv", index=False)
        catalogs[party] = Catalog.from_mapping({"datasets": {"clients": {"path": "train.csv"}}}, party, folder)
        sources[party] = folder / "features.csv"
    began = time.perf_counter()
    result = LocalRunner(root / "runs").run(parse_job(JOB.format(trees=trees, depth=depth)), catalogs)
    if result.state != "succeeded":
        raise SystemExit(f"training failed: {result.error}")
    print(f"trained SecureBoost ({trees} trees, depth {depth}) and hetero LR on {rows} rows in "
          f"{time.perf_counter() - began:.0f} s")
    return str(root / "runs"), result.job_id, sources


def start_cluster(cluster: LocalCluster, workdir: str, job: str, sources: dict[str, Path], workers: int) -> list[str]:
    registry = cluster.start("registry", {"role": "registry", "party": "registry"})  # serve.yaml defaults
    models = [{"name": name, "version": 1, "part": {"artifacts": workdir, "job": job, "task": name}}
              for name in ("boost", "lr")]
    common = {"registry": registry.url, "models": models}
    for name in ("shop-1", "shop-2"):
        cluster.start(name, {"role": "host", "party": "shop", "guest": "bank",
                             "features": {"path": str(sources["shop"])}, **common})
    guests = []
    for name in ("bank-1", "bank-2"):
        guests.append(cluster.start(name, {"role": "guest", "party": "bank", "hosts": {"shop": []},
                                           "workers": workers, "features": {"path": str(sources["bank"])},
                                           **common}).url)
    for name in ("bank-1", "bank-2"):
        cluster.wait(lambda name=name: len(cluster.health(name)["hosts"]["shop"]) == 2, 15, f"{name} to see hosts")
    return guests


class Connection:
    """One kept-alive HTTPS connection speaking just enough HTTP/1.1 for the load: a generator built on
    httpx measured itself (about 100 requests/s at most on this machine), not the servers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, context: ssl.SSLContext, server_name: str) -> Connection:
        host, _, port = url.removeprefix("https://").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context, server_hostname=server_name)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: bank\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def open_still(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Pools:
    """Kept-alive connections to each guest, opened before the load starts and reused by every run, as
    a long-running application keeps them (a TLS handshake costs about 4 ms of CPU on each side here)."""

    def __init__(self, guests: list[str], context: ssl.SSLContext) -> None:
        self.guests, self.context = guests, context
        self.idle: list[list[Connection]] = [[] for _ in guests]

    async def open(self, per_guest: int) -> None:
        for g, url in enumerate(self.guests):
            self.idle[g] += [await Connection.open(url, self.context, "bank") for _ in range(per_guest)]

    async def take(self, g: int) -> Connection:
        """An idle connection the guest has not closed (it closes those idle for 30 s), else a new one."""
        pool = self.idle[g]
        while pool:
            connection = pool.pop()
            if connection.open_still():
                return connection
            connection.close()
        return await Connection.open(self.guests[g], self.context, "bank")

    def close(self) -> None:
        for pool in self.idle:
            for connection in pool:
                connection.close()


async def drive(pools: Pools, cluster: LocalCluster, ids: list[int], model: str, rate: float, seconds: float,
                outstanding: int, kill_at: float | None = None) -> dict:
    """Open-loop load at `rate` for `seconds`; latencies (ms) from each request's scheduled time."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors: list[str] = []
    dropped = 0
    slots = asyncio.Semaphore(outstanding)

    async def one(i: int, scheduled: float) -> None:
        g = i % len(pools.guests)
        connection = None
        try:
            connection = await pools.take(g)
            body = json.dumps({"id": ids[i % len(ids)], "model": model}).encode()
            status, answer = await connection.post("/v1/predict", body)
            if status != 200:
                errors.append(f"{status}: {answer[:200]!r}")
            pools.idle[g].append(connection)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
            if connection is not None:
                connection.close()
        finally:
            latencies.append(1000 * (time.perf_counter() - scheduled))
            slots.release()

    tasks: set[asyncio.Task] = set()
    sent = 0
    start = time.perf_counter() + 0.05  # not loop.time(): uvloop's clock counts whole milliseconds
    if kill_at is not None:
        loop.call_later(0.05 + kill_at, cluster.kill, "shop-1")
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        if scheduled > time.perf_counter():
            await asyncio.sleep(scheduled - time.perf_counter())
        if slots.locked():
            dropped += 1
            continue
        await slots.acquire()
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"model": model, "rate": rate, "sent": sent, "throughput": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(pick(0.99), 2),
            "max_ms": round(ordered[-1], 2), "errors": len(errors), "dropped": dropped,
            "killed": "shop-1" if kill_at is not None else None, "first_errors": errors[:3]}


async def measure(guests: list[str], cluster: LocalCluster, ids: list[int], args: argparse.Namespace) -> None:
    """Every run on one event loop and one set of connections: a warm-up at the rate, then the measured run."""
    pools = Pools(guests, cluster.tls().client_context())
    await pools.open(args.outstanding // len(guests))
    runs = [(model, None) for model in args.models.split(",")] + ([("boost", args.seconds / 2)] if args.kill else [])
    print(f"{'model':<8}{'killed':<8}{'rate':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'errors':>8}{'dropped':>9}{'steal %':>9}")
    gc.collect()
    gc.freeze()  # the generator's own collections would pause sending and count as the servers' latency
    for model, kill_at in runs:
        await drive(pools, cluster, ids, model, args.rate, args.warmup, args.outstanding)
        gc.collect()
        before, counters = cpu_by_process(cluster), cpu_counters()
        result = await drive(pools, cluster, ids, model, args.rate, args.seconds, args.outstanding, kill_at)
        result["cpu_ms_per_request"] = cpu_per_request(cluster, before, cpu_by_process(cluster), result["sent"])
        result["steal_percent"] = steal_percent(counters, cpu_counters())
        print(f"{model:<8}{result['killed'] or '-':<8}{args.rate:>7.0f}{result['throughput']:>9.1f}"
              f"{result['p50_ms']:>9.2f}{result['p99_ms']:>9.2f}{result['max_ms']:>9.2f}"
              f"{result['errors']:>8}{result['dropped']:>9}{result['steal_percent']:>9.1f}")
        print(json.dumps(result))
        for error in result["first_errors"]:
            print(f"  error: {error}")
    pools.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_counters() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal ...)."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of the machine's time the hypervisor gave to other guests meanwhile: on a shared host the
    replicas get that much less CPU than the run asked for, whatever this code does."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return round(100 * spent[7] / max(1, sum(spent)), 1)


def cpu_by_process(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds so far of each live replica and of this generator."""
    used = {name: cpu_seconds(p.proc.pid) for name, p in cluster.processes.items() if p.alive()}
    return {**used, "generator": time.process_time()}


def cpu_per_request(cluster: LocalCluster, before: dict[str, float], after: dict[str, float],
                    requests: int) -> dict[str, float]:
    """CPU ms per request by kind (guest, host, registry, generator) over the processes alive throughout
    (a replica killed meanwhile takes its CPU with it)."""
    roles = {"bank": "guest", "shop": "host", "registry": "registry"}
    totals = {"guest": 0.0, "host": 0.0, "registry": 0.0, "generator": 0.0}
    for name in before.keys() & after.keys():
        role = "generator" if name == "generator" else roles[cluster.processes[name].party]
        totals[role] += after[name] - before[name]
    return {role: round(1000 * used / max(1, requests), 3) for role, used in totals.items()}


def peak_rss_mib(cluster: LocalCluster) -> dict[str, float]:
    """Peak resident memory of each live replica (VmHWM)."""
    peaks = {}
    for name, process in cluster.processes.items():
        if process.alive():
            for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = round(int(line.split()[1]) / 1024, 1)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measured run")
    parser.add_argument("--outstanding", type=int, default=64, help="most requests in flight at once")
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--train-rows", type=int, default=3000, help="rows to train on (all 30,000 are served)")
    parser.add_argument("--kill", action="store_true", help="also a SecureBoost run with shop-1 killed halfway")
    parser.add_argument("--models", default="boost,lr", help="models to load, comma-separated: boost, lr")
    parser.add_argument("--workers", type=int, default=4, help="batches each guest replica predicts at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workdir, job, sources = train(root / "train", args.train_rows, args.trees, args.depth)
        ids = [int(i) for i in pd.read_csv(sources["bank"], usecols=["id"])["id"].sample(frac=1, random_state=0)]
        with LocalCluster(root / "replicas", ["bank", "shop"]) as cluster:
            guests = start_cluster(cluster, workdir, job, sources, args.workers)
            run = uvloop.run if uvloop is not None else asyncio.run
            run(measure(guests, cluster, ids, args))
            print(json.dumps({"peak_rss_mib": peak_rss_mib(cluster)}))

if __name__ == "__main__":
    main()
