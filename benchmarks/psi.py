"""PSI benchmark: our `psi` job (two party processes over gRPC + mutual TLS on loopback) beside
openmined-psi (one process, both roles) and, when installed, SecretFlow's `spu.psi` called directly
and through our `engine: spu` — on the same IDs in the same run.

    python benchmarks/psi.py [--sizes 100000 1000000] [--with-10m] [--engines ecdh spu] [--no-openmined]

Each side holds n IDs (text, 16 characters), half of them shared, in shuffled order. Prints wall
seconds, CPU seconds (all processes of a run), peak RSS of the largest process, bytes sent, and
the ratios to openmined-psi and to spu.psi. Bars (issue 5): at 10^6, ecdh >= 3x faster than
openmined-psi in wall time and >= 1.5x in CPU seconds, peak RSS <= 1 GiB per party; 10^7 within
20 minutes; `engine: spu` within 1.2x of spu.psi direct. Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job

PARTIES = ("alice", "bob")
JOB = """
job: psi-bench
timeout: 600
parties:
  alice: {{role: guest, data: {{ids: ids}}}}
  bob:   {{role: host,  data: {{ids: ids}}}}
tasks:
  align: {{component: psi, inputs: {{data: $ids}}, params: {params}}}
"""

OPENMINED = r"""
import json, resource, sys, time
import pandas as pd
import private_set_intersection.python as psi
a = pd.read_parquet(sys.argv[1])["id"].tolist()
b = pd.read_parquet(sys.argv[2])["id"].tolist()
wall, cpu = time.perf_counter(), time.process_time()
client = psi.client.CreateWithNewKey(True)
server = psi.server.CreateWithNewKey(True)
setup = server.CreateSetupMessage(1e-9, len(a), b, psi.DataStructure.RAW)
request = client.CreateRequest(a)
response = server.ProcessRequest(request)
size = len(client.GetIntersection(setup, response))
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "size": size,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "bytes": setup.ByteSize() + request.ByteSize() + response.ByteSize()}))
"""


def make_ids(n: int, folder: Path) -> dict[str, Path]:
    """alice holds 0..n-1, bob n/2..3n/2-1, as 16-character text IDs in shuffled order."""
    rng = np.random.default_rng(7)
    paths = {}
    for party, start in zip(PARTIES, (0, n // 2), strict=True):
        values = rng.permutation(np.arange(start, start + n))
        ids = pd.Series(values).map("id{:014d}".format)
        paths[party] = folder / f"{party}-{n}.parquet"
        pd.DataFrame({"id": ids}).to_parquet(paths[party], index=False)
    return paths


def run_ours(paths: dict[str, Path], workdir: Path, params: dict) -> dict[str, float]:
    catalogs = {p: Catalog.from_mapping({"datasets": {"ids": {"path": str(paths[p])}}}, p, workdir)
                for p in PARTIES}
    spec = parse_job(JOB.format(params=json.dumps(params)))
    started = time.perf_counter()
    result = LocalRunner(workdir / "runs").run(spec, catalogs, mode="processes")
    wall = time.perf_counter() - started
    if result.state != "succeeded":
        raise RuntimeError(result.error)
    size = result.output("alice", "align", "size")
    parties = result.parties.values()
    return {"wall": wall, "cpu": sum(r.resources["cpu_s"] for r in parties), "size": size,
            "rss_mb": max(r.resources["peak_rss_mb"] for r in parties),
            "bytes": sum(peer["bytes_sent"] for r in parties for peer in r.traffic["align"].values())}


def run_openmined(paths: dict[str, Path]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", OPENMINED, str(paths["alice"]), str(paths["bob"])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_spu_direct(paths: dict[str, Path], workdir: Path, protocol: str) -> dict[str, float] | None:
    script = Path(__file__).with_name("psi_spu_direct.py")
    if not script.exists():
        return None
    out = subprocess.run([sys.executable, str(script), str(paths["alice"]), str(paths["bob"]), str(workdir),
                          protocol], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  spu.psi direct failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name: str, n: int, r: dict[str, float], baseline: dict[str, float] | None) -> str:
    ratio = ""
    if baseline:
        ratio = f"{baseline['wall'] / r['wall']:6.2f}x {baseline['cpu'] / r['cpu']:6.2f}x"
    return (f"{name:22} {n:>10,} {r['wall']:9.1f} {r['cpu']:9.1f} {r['rss_mb']:9.0f} "
            f"{r['bytes'] / 1e6:10.1f}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--with-10m", action="store_true", help="also 10^7 x 10^7 (ours only; ~20 minutes)")
    parser.add_argument("--engines", nargs="+", default=["ecdh", "spu"], choices=["ecdh", "spu"])
    parser.add_argument("--spu-protocol", default="rr22", choices=["rr22", "kkrt", "ecdh"])
    parser.add_argument("--no-openmined", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes + ([10_000_000] if args.with_10m else [])
    try:
        import spu  # noqa: F401
        has_spu = True
    except ImportError:
        has_spu = False
    print(f"{'engine':22} {'n per side':>10} {'wall s':>9} {'cpu s':>9} {'rss MiB':>9} {'sent MB':>10}  "
          "speed-up vs baseline (wall, cpu)")
    with tempfile.TemporaryDirectory(prefix="sharedml-psi-bench-") as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            paths = make_ids(n, folder)
            openmined = None
            if not args.no_openmined and n <= 1_000_000:
                openmined = run_openmined(paths)
                print(row("openmined-psi", n, openmined, None))
            if "ecdh" in args.engines:
                ours = run_ours(paths, folder, {"id_columns": "id"})
                assert ours["size"] == n // 2, ours
                print(row("sharedml ecdh", n, ours, openmined) + ("  (vs openmined)" if openmined else ""))
            if "spu" in args.engines and has_spu and n <= 1_000_000:
                direct = run_spu_direct(paths, folder, args.spu_protocol)
                if direct:
                    print(row(f"spu.psi {args.spu_protocol} direct", n, direct, None))
                ours = run_ours(paths, folder, {"id_columns": "id", "engine": "spu",
                                                "spu_protocol": args.spu_protocol})
                print(row(f"sharedml spu {args.spu_protocol}", n, ours, direct) + "  (vs spu.psi direct)")
            elif "spu" in args.engines and not has_spu and n == sizes[0]:
                print("spu not installed: pip install -e '.[spu]' to compare the spu engine")


if __name__ == "__main__":
    main()
