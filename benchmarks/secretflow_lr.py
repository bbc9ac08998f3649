"""Baseline: SecretFlow's secret-sharing logistic regression (secretflow.ml.linear.ss_sgd.SSRegression)
on the same vertical data, batch size and learning rate as `benchmarks/ss_lr.py` (our ss_lr).
Standalone: does not import sharedml.

Two parties, each its own OS process, in SecretFlow's PRODUCTION mode *without Ray*
(sf.init(ray_mode=False, cluster_config=...)), talking gRPC over 127.0.0.1; the SPU device is SEMI2K
over the same two parties (FM64 with 18 fractional bits, as ours, unless --field FM128). "alice"
holds the label and the guest features, "bob" the host features.

Setup as in secretflow_sgb.py (/tmp/sfvenv: Python 3.10, secretflow 1.14). Run (the script starts
itself as `--party alice` and `--party bob`):

    /tmp/sfvenv/bin/python benchmarks/secretflow_lr.py [--guest CSV --host CSV] [--epochs 10]
        [--batch-size 1024] [--learning-rate 0.1] [--alpha 1e-4] [--sig-type t1] [--field FM64]

Rows are inner-joined on id in the guest's order (a stand-in for PSI, not timed). SSRegression runs
with eps=0 (no convergence check, so every epoch runs and nothing is revealed during training),
L2 with l2_norm = alpha·batch_size (SecretFlow adds l2_norm·lr/batch·w to each step; ours adds
alpha·lr·w) and its default sigmoid `t1` (0.5 + x/8 clipped to [0, 1]: two comparisons). It drops
the last partial batch of an epoch. Prints one JSON line: fit_s (SSRegression.fit, all epochs:
sharing the data into SPU, compiling and training), epoch_s (SecretFlow's own per-epoch log lines:
their mean, the mean without the first epoch, which also shares the data and compiles, and the
fastest), AUC on
the training rows (predictions revealed to alice).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from secretflow_common import auc, load_party, peak_rss_mb, run_parties

# the package's example data, read from the source tree: sharedml is not installed in this venv
DATA = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"
_EPOCH_LINE = re.compile(r"epoch (\d+) times: ([0-9.]+)s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--guest", default=str(DATA / "default_credit_hetero_guest.csv.gz"))
    p.add_argument("--host", default=str(DATA / "default_credit_hetero_host.csv.gz"))
    p.add_argument("--label", default="y")
    p.add_argument("--id", default="id")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=1e-4, help="L2 on the mean loss, as ours (0: no penalty)")
    p.add_argument("--sig-type", default="t1", help="SecretFlow's sigmoid approximation: t1, t3, t5, sr, df, real")
    p.add_argument("--field", default="FM64", choices=["FM64", "FM128"])
    p.add_argument("--ports", help="internal: alice,bob,alice-spu,bob-spu ports on 127.0.0.1")
    p.add_argument("--party", choices=["alice", "bob"], help="internal: run as this party")
    return p.parse_args(argv)


class EpochTimes(logging.Handler):
    """Collects SSRegression's own 'epoch N times: Xs' log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _EPOCH_LINE.search(record.getMessage())
        if match:
            self.seconds.append(float(match.group(2)))


def run_party(a) -> dict:
    import secretflow as sf
    from secretflow.data import FedNdarray, PartitionWay
    from secretflow.ml.linear.ss_sgd import SSRegression

    ports = dict(zip(["alice", "bob", "alice-spu", "bob-spu"], a.ports.split(","), strict=True))
    cluster = {"parties": {p: {"address": f"127.0.0.1:{ports[p]}"} for p in ("alice", "bob")}, "self_party": a.party}
    sf.init(ray_mode=False, cluster_config=cluster, logging_level="warning", job_name="ss-lr-baseline")
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setLevel(logging.WARNING)
    epochs = EpochTimes()
    root.addHandler(epochs)
    root.setLevel(logging.INFO)
    alice, bob = sf.PYU("alice"), sf.PYU("bob")
    runtime = {"protocol": "SEMI2K", "field": a.field, "fxp_fraction_bits": 18 if a.field == "FM64" else 26}
    device = sf.SPU({"nodes": [{"party": p, "address": f"127.0.0.1:{ports[p + '-spu']}"} for p in ("alice", "bob")],
                     "runtime_config": runtime})
    xa_y = alice(load_party, num_returns=2)(a.guest, a.host, True, a.id, a.label)
    xb, _ = bob(load_party, num_returns=2)(a.guest, a.host, False, a.id, a.label)
    x = FedNdarray({alice: xa_y[0], bob: xb}, partition_way=PartitionWay.VERTICAL)
    y = FedNdarray({alice: xa_y[1]}, partition_way=PartitionWay.VERTICAL)
    rows = sf.reveal(alice(lambda v: len(v))(xa_y[1]))

    model = SSRegression(device)
    penalty = {"penalty": "l2", "l2_norm": a.alpha * a.batch_size} if a.alpha > 0 else {"penalty": "None"}
    started = time.perf_counter()
    model.fit(x, y, epochs=a.epochs, learning_rate=a.learning_rate, batch_size=a.batch_size, sig_type=a.sig_type,
              reg_type="logistic", eps=0.0, **penalty)
    sf.wait([model.spu_w])
    fit_s = time.perf_counter() - started

    predicted = model.predict(x, to_pyu=alice)
    score = sf.reveal(alice(auc)(predicted.partitions[alice], xa_y[1]))
    times = epochs.seconds
    out = {"party": a.party, "fit_s": round(fit_s, 3), "epoch_times": times, "auc": round(score, 6),
           "rows": int(rows), "peak_rss_mb": peak_rss_mb()}
    sf.shutdown()
    return out


def main():
    a = parse_args()
    if a.party:
        print(json.dumps(run_party(a)), flush=True)
        return
    from importlib.metadata import version  # not `import secretflow`: its C++ logs go to stdout

    res = run_parties(__file__, sys.argv[1:], ports=4)
    al = res["alice"]
    times = al["epoch_times"]
    print(json.dumps({"library": "secretflow-ss-lr", "version": version("secretflow"),
                      "mode": f"production, 2 processes, no Ray, gRPC on 127.0.0.1, SPU SEMI2K {a.field}",
                      "rows": al["rows"], "epochs": a.epochs, "batch_size": a.batch_size,
                      "learning_rate": a.learning_rate, "alpha": a.alpha, "sig_type": a.sig_type,
                      "fit_s": al["fit_s"], "fit_s_per_epoch": round(al["fit_s"] / a.epochs, 4),
                      "epoch_s": round(sum(times) / len(times), 4) if times else None,
                      "epoch_s_after_first": round(sum(times[1:]) / len(times[1:]), 4) if len(times) > 1 else None,
                      "epoch_s_min": round(min(times), 4) if times else None, "epoch_times": times,
                      "auc": al["auc"], "peak_rss_mb": {p: res[p]["peak_rss_mb"] for p in res}}))


if __name__ == "__main__":
    main()
