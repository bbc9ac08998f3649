"""TEE benchmark: xgboost trained inside the (simulated) enclave on the two owners' encrypted halves of
default_credit, beside the same training on the plaintext files, in the same run.

    python benchmarks/tee.py [--trees 50] [--depth 5] [--bins 256] [--nthread 2] [--repeat 5]
                             [--chunk-kib 1024] [--synthetic-rows N]

Enclave path (timed): stream-decrypt both files chunk by chunk, parse, inner join on `id`, train, seal the
release to one recipient. Plaintext path (timed): read both CSV files, the same join, the same training.
Attestation and the owners' encryption are set up before the clock starts. Wall times come from one
process running the two paths alternately `--repeat` times (other load on the machine then hits both
alike); peak RSS comes from running each path alone in its own process.
Bar (issue 11): enclave / plaintext <= 1.2.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"  # the package's example data


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plaintext_run(files: list[Path], params: dict):
    """Read, join and train on plaintext CSV files; returns the model and its training rows."""
    from sharedml.tee.models import fit
    from sharedml.tee.tables import OwnerTable, join
    from sharedml.tee.train import features_and_label

    tables = [OwnerTable(name, "id", pd.read_csv(path)) for name, path in zip(("bank", "insurer"), files, strict=True)]
    X, y, features = features_and_label(join(tables), "bank.y")
    return fit("xgboost", X, y, features, "bank.y", params), X, y


def enclave_setup(files: list[Path], folder: Path, chunk_size: int):
    """Start a simulated enclave and encrypt both halves to it (not timed)."""
    from sharedml.crypto import kex
    from sharedml.tee.attestation import InsecureAttestationWarning, SimulatedProvider
    from sharedml.tee.enclave import Enclave
    from sharedml.tee.owner import encrypt_file
    from sharedml.tee.owner_policy import OwnerPolicy

    warnings.simplefilter("ignore", InsecureAttestationWarning)
    enclave = Enclave(SimulatedProvider())
    quote = enclave.start()
    recipient = kex.generate_private_key()
    encrypted = []
    for name, path in zip(("bank", "insurer"), files, strict=True):
        policy = OwnerPolicy(dataset_id=name, id_column="id", allowed_measurements=[quote.measurement.hex()],
                             allowed_recipients={"analyst": kex.public_key_bytes(recipient).hex()},
                             allow_simulated=True)
        encrypted.append(str(folder / f"{name}.enc"))
        encrypt_file(policy, quote, path, encrypted[-1], chunk_size=chunk_size)
    return enclave, encrypted, recipient


def enclave_run(enclave, encrypted: list[str], params: dict) -> int:
    from sharedml.tee.train import TrainJob, train

    return len(train(enclave, TrainJob(encrypted, label="bank.y", recipients=["analyst"], params=params)).releases)


def runner(kind: str, files: list[Path], folder: Path, params: dict, chunk_size: int):
    """A no-argument callable for one timed path (enclave setup and encryption happen here, untimed)."""
    if kind == "enclave":
        enclave, encrypted, _ = enclave_setup(files, folder, chunk_size)
        return functools.partial(enclave_run, enclave, encrypted, params)
    return functools.partial(plaintext_run, files, params)


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def phase(kind: str, files: list[Path], params: dict, chunk_size: int) -> dict:
    """One path alone in this process, for its own peak RSS: set up, warm up, one timed run."""
    with tempfile.TemporaryDirectory(prefix="sharedml-tee-bench-") as tmp:
        run = runner(kind, files, Path(tmp), params, chunk_size)
        result = run()
        wall = timed(run)
    if kind == "plaintext":
        from sharedml.ml.metrics import roc_auc

        model, X, y = result
        result = roc_auc(y, model.predict_scores(X))
    return {"wall": wall, "rss": peak_rss_mib(), "result": result}


def paired(files: list[Path], params: dict, chunk_size: int, repeat: int) -> dict[str, list[float]]:
    """Both paths in one process, alternating, so load from other processes hits both alike."""
    with tempfile.TemporaryDirectory(prefix="sharedml-tee-bench-") as tmp:
        runs = {kind: runner(kind, files, Path(tmp), params, chunk_size) for kind in ("plaintext", "enclave")}
        for run in runs.values():
            run()
        walls: dict[str, list[float]] = {kind: [] for kind in runs}
        for round_ in range(repeat):
            for kind in (("plaintext", "enclave") if round_ % 2 == 0 else ("enclave", "plaintext")):
                walls[kind].append(timed(runs[kind]))
    return walls


def synthetic_files(rows: int, folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 40))
    y = (rng.random(rows) < 1 / (1 + np.exp(-X[:, :5].sum(axis=1)))).astype(int)
    guest = pd.DataFrame(X[:, :20], columns=[f"g{i}" for i in range(20)]).assign(y=y)
    guest.insert(0, "id", np.arange(rows))
    host = pd.DataFrame(X[:, 20:], columns=[f"h{i}" for i in range(20)])
    host.insert(0, "id", np.arange(rows))
    paths = [folder / "guest.csv", folder / "host.csv"]
    guest.to_csv(paths[0], index=False)
    host.to_csv(paths[1], index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--nthread", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--synthetic-rows", type=int, default=0, help="use a synthetic 20+20-column set instead")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--phase", choices=["enclave", "plaintext"], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    params = {"n_estimators": args.trees, "max_depth": args.depth, "max_bin": args.bins, "learning_rate": 0.3,
              "nthread": args.nthread}
    chunk_size = args.chunk_kib << 10
    if args.phase:
        print(json.dumps(phase(args.phase, args.files, params, chunk_size)))
        return
    with tempfile.TemporaryDirectory(prefix="sharedml-tee-data-") as tmp:
        files = (synthetic_files(args.synthetic_rows, Path(tmp)) if args.synthetic_rows else
                 [args.data_dir / f"default_credit_hetero_{side}.csv.gz" for side in ("guest", "host")])
        alone = {}
        for kind in ("plaintext", "enclave"):
            command = [sys.executable, __file__, *sys.argv[1:], "--phase", kind, "--files", *map(str, files)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"{kind} phase failed:\n{done.stderr[-3000:]}")
            alone[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        walls = paired(files, params, chunk_size, args.repeat)
    name = f"synthetic {args.synthetic_rows:,} x 40" if args.synthetic_rows else "default_credit (30,000 x 23)"
    print(f"{name}: xgboost hist, {args.trees} trees, depth {args.depth}, {args.bins} bins, nthread {args.nthread}, "
          f"chunks {args.chunk_kib} KiB; {args.repeat} alternating runs")
    print(f"{'path':34} {'best s':>7} {'median s':>9} {'peak RSS MiB (alone)':>21}")
    labels = {"plaintext": "plaintext: read + join + train", "enclave": "enclave: decrypt + join + train"}
    for kind, label in labels.items():
        print(f"{label:34} {min(walls[kind]):7.3f} {statistics.median(walls[kind]):9.3f} {alone[kind]['rss']:21.0f}")
    ratios = [e / p for e, p in zip(walls["enclave"], walls["plaintext"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"enclave / plaintext: median of paired ratios {ratio:.3f}x, best vs best "
          f"{min(walls['enclave']) / min(walls['plaintext']):.3f}x (bar 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}); "
          f"plaintext AUC {alone['plaintext']['result']:.4f}; releases {alone['enclave']['result']}")


if __name__ == "__main__":
    main()
