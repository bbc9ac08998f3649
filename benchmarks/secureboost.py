"""SecureBoost benchmark: `hetero_secureboost` as a job (guest and host as two processes over gRPC +
mutual TLS on loopback) beside xgboost trained locally on the joined plaintext with the same bins and
parameters, in the same run.

    python benchmarks/secureboost.py [--trees 10] [--depth 5] [--bins 32] [--synthetic 100000 ...]
                                     [--secretflow /tmp/sfvenv/bin/python]

Data: default_credit_hetero (30,000 rows, 13 + 10 features), and optionally synthetic sets of n rows
x 50 features (25 + 25). Prints wall seconds, bytes sent, peak RSS per party, AUC of both, and the
time of each; with --secretflow, SecretFlow 1.14's SGB too (two processes, no Ray, OU 2048-bit), started
from the same margin. Bar (issue 7): default_credit, 10 trees of depth 5, within 60 s; 10^6 x 50 within
30 minutes and 8 GiB per party; AUC within 0.002 of xgboost.
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

from sharedml import datasets
from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.ml.metrics import roc_auc
from sharedml.ml.preprocess import QuantileBinner

JOB = """
job: secureboost-bench
timeout: 3600
parties:
  guest: {{role: guest, data: {{train: train}}}}
  host:  {{role: host,  data: {{train: train}}}}
tasks:
  boost: {{component: hetero_secureboost, inputs: {{train: $train}}, params: {params}}}
"""


def default_credit(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_csv(data_dir / "default_credit_hetero_guest.csv.gz"),
            pd.read_csv(data_dir / "default_credit_hetero_host.csv.gz"))


def synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 50)).astype(np.float32)
    logit = X[:, :5].sum(axis=1) - X[:, 25:30].sum(axis=1) + 0.5 * X[:, 3] * X[:, 28]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    guest = pd.DataFrame(X[:, :25], columns=[f"g{i}" for i in range(25)])
    guest.insert(0, "y", y)
    guest.insert(0, "id", np.arange(n))
    host = pd.DataFrame(X[:, 25:], columns=[f"h{i}" for i in range(25)])
    host.insert(0, "id", np.arange(n))
    return guest, host


def run_ours(guest: pd.DataFrame, host: pd.DataFrame, folder: Path, params: dict) -> dict:
    catalogs = {}
    for party, frame in (("guest", guest), ("host", host)):
        path = folder / f"{party}.parquet"
        frame.to_parquet(path, index=False)
        catalogs[party] = Catalog.from_mapping({"datasets": {"train": {"path": str(path)}}}, party, folder)
    started = time.perf_counter()
    result = LocalRunner(folder / "runs").run(parse_job(JOB.format(params=json.dumps(params))), catalogs,
                                              mode="processes")
    wall = time.perf_counter() - started
    if result.state != "succeeded":
        raise RuntimeError(result.error)
    predictions = result.output("guest", "boost", "predictions")
    return {"wall": wall, "auc": roc_auc(predictions["y"], predictions["score"]),
            "bytes": sum(p["bytes_sent"] for r in result.parties.values() for p in r.traffic["boost"].values()),
            "rss": {p: r.resources["peak_rss_mb"] for p, r in result.parties.items()}}


def run_xgboost(guest: pd.DataFrame, host: pd.DataFrame, params: dict) -> dict:
    import xgboost as xgb

    blocks = [guest.drop(columns=["id", "y"]), host.drop(columns=["id"])]
    codes = np.hstack([QuantileBinner(params["max_bin"]).fit_transform(b.to_numpy(np.float64)) for b in blocks])
    y = guest["y"].to_numpy()
    started = time.perf_counter()
    matrix = xgb.DMatrix(codes.astype(np.float32), label=y)
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": params["max_depth"],
                         "eta": params["learning_rate"], "max_bin": params["max_bin"] + 1, "nthread": 2},
                        matrix, params["n_estimators"])
    wall = time.perf_counter() - started
    return {"wall": wall, "auc": roc_auc(y, booster.predict(matrix))}


def run_secretflow(python: str, guest: pd.DataFrame, host: pd.DataFrame, folder: Path, params: dict) -> dict:
    """SecretFlow's SGB on the same rows and parameters, in its own Python 3.10 venv (secretflow_sgb.py)."""
    guest.to_csv(folder / "guest.csv", index=False)
    host.to_csv(folder / "host.csv", index=False)
    mean = guest["y"].mean()
    command = [python, str(Path(__file__).with_name("secretflow_sgb.py")), "--guest", str(folder / "guest.csv"),
               "--host", str(folder / "host.csv"), "--trees", str(params["n_estimators"]),
               "--depth", str(params["max_depth"]), "--bins", str(params["max_bin"]), "--he", params["he_scheme"],
               "--base-score", str(np.log(mean / (1 - mean)))]  # start from the same margin as ours
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200)
    if done.returncode:
        raise RuntimeError(f"secretflow_sgb.py failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", type=int, default=10)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--he", default="ou", choices=["ou", "paillier"])
    parser.add_argument("--synthetic", type=int, nargs="*", default=[], help="row counts of synthetic 25+25 sets")
    parser.add_argument("--data-dir", type=Path, default=datasets.folder())  # the package's example data
    parser.add_argument("--secretflow", metavar="PYTHON", help="a Python with secretflow 1.14 installed "
                        "(see secretflow_sgb.py): also run SecretFlow's SGB on the same data and parameters")
    args = parser.parse_args()
    params = {"n_estimators": args.trees, "max_depth": args.depth, "max_bin": args.bins, "learning_rate": 0.3,
              "he_scheme": args.he}
    sets = [("default_credit", *default_credit(args.data_dir))]
    sets += [(f"synthetic {n:,} x 50", *synthetic(n)) for n in args.synthetic]
    print(f"{args.trees} trees, depth {args.depth}, {args.bins} bins, {args.he.upper()} 2048-bit")
    print(f"{'data':24} {'ours s':>8} {'xgb s':>7} {'AUC ours':>9} {'AUC xgb':>8} {'diff':>8} {'sent MB':>8}  "
          "peak RSS MiB")
    for name, guest, host in sets:
        with tempfile.TemporaryDirectory(prefix="sharedml-sb-bench-") as tmp:
            ours = run_ours(guest, host, Path(tmp), params)
            sgb = run_secretflow(args.secretflow, guest, host, Path(tmp), params) if args.secretflow else None
        ref = run_xgboost(guest, host, params)
        print(f"{name:24} {ours['wall']:8.1f} {ref['wall']:7.2f} {ours['auc']:9.4f} {ref['auc']:8.4f} "
              f"{ours['auc'] - ref['auc']:+8.4f} {ours['bytes'] / 1e6:8.1f}  "
              + ", ".join(f"{p} {v:.0f}" for p, v in ours["rss"].items()))
        if sgb:
            print(f"{'  SecretFlow SGB ' + sgb['version']:24} {sgb['launcher_s']:8.1f} "
                  f"(train only {sgb['wall_s']:.1f} s) AUC {sgb['auc']:.4f}  {sgb['he']}  peak RSS MiB "
                  + ", ".join(f"{p} {v:.0f}" for p, v in sgb["peak_rss_mb"].items())
                  + f"  -> ours {sgb['launcher_s'] / ours['wall']:.2f}x faster (whole runs)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
