"""Baseline: SecretFlow SecureBoost (SGB, secretflow.ml.boost.sgb_v) on the same vertical data and
parameters as `benchmarks/secureboost.py` (our hetero_secureboost). Standalone: does not import sharedml.

Two parties, each its own OS process, in SecretFlow's PRODUCTION mode *without Ray*
(sf.init(ray_mode=False, cluster_config=...)); they talk gRPC over 127.0.0.1. "alice" holds the
label and the guest features (sk keeper of HEU), "bob" holds the host features (HEU evaluator).
HE: OU with 2048-bit keys (SGB accepts any HEU schema; elgamal would need quantization).

Setup (SecretFlow needs Python 3.10/3.11; keep it out of the project's environment):

    /root/.pyenv/versions/3.10.13/bin/python -m venv /tmp/sfvenv
    /tmp/sfvenv/bin/pip install --pre 'secretflow==1.14.*'     # 1.14.0b0; Ray is not needed

Run (the script starts itself twice, `--party alice` and `--party bob`, and merges their output):

    /tmp/sfvenv/bin/python benchmarks/secretflow_sgb.py [--guest CSV --host CSV] \
        [--trees 10 --depth 5 --bins 32 --he ou|paillier --base-score 0.0]

Guest CSV: id, y, features...; host CSV: id, features.... Rows are inner-joined on id in the guest's
order (each party reads the other's id column only: a stand-in for PSI, not timed). Prints one JSON
line. wall_s is Sgb.train only; total_s adds sf.init, HEU setup and data loading. peak_rss_mb is
ru_maxrss of each party process (the larger of self and children).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from secretflow_common import auc, load_party, peak_rss_mb, run_parties

# the package's example data, read from the source tree: sharedml is not installed in this venv
DATA = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--guest", default=str(DATA / "default_credit_hetero_guest.csv.gz"))
    p.add_argument("--host", default=str(DATA / "default_credit_hetero_host.csv.gz"))
    p.add_argument("--trees", type=int, default=10)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--bins", type=int, default=32)
    p.add_argument("--base-score", type=float, default=0.0,
                   help="initial margin (SGB default 0; ours uses log-odds of the label mean)")
    p.add_argument("--he", choices=["ou", "paillier"], default="ou")
    p.add_argument("--ports", help="internal: alice,bob ports on 127.0.0.1")
    p.add_argument("--party", choices=["alice", "bob"], help="internal: run as this party")
    return p.parse_args(argv)


def run_party(a) -> dict:
    t_start = time.perf_counter()
    import secretflow as sf
    import spu
    from secretflow.data import FedNdarray, PartitionWay
    from secretflow.ml.boost.sgb_v import Sgb

    ports = dict(zip(["alice", "bob"], a.ports.split(","), strict=True))
    cluster = {"parties": {p: {"address": f"127.0.0.1:{ports[p]}"} for p in ports}, "self_party": a.party}
    sf.init(ray_mode=False, cluster_config=cluster, logging_level="warning", job_name="sgb-baseline")
    alice, bob = sf.PYU("alice"), sf.PYU("bob")
    heu = sf.HEU({"sk_keeper": {"party": "alice"}, "evaluators": [{"party": "bob"}], "mode": "PHEU",
                  "he_parameters": {"schema": a.he, "key_pair": {"generate": {"bit_size": 2048}}}},
                 spu.FieldType.FM128)

    xa_y = alice(load_party, num_returns=2)(a.guest, a.host, True)
    xb, _ = bob(load_party, num_returns=2)(a.guest, a.host, False)
    x = FedNdarray({alice: xa_y[0], bob: xb}, partition_way=PartitionWay.VERTICAL)
    y = FedNdarray({alice: xa_y[1]}, partition_way=PartitionWay.VERTICAL)
    rows = sf.reveal(alice(lambda v: len(v))(xa_y[1]))

    params = {"num_boost_round": a.trees, "max_depth": a.depth, "learning_rate": 0.3, "reg_lambda": 1.0,
              "gamma": 0.0, "sketch_eps": 1.0 / a.bins, "objective": "logistic", "rowsample_by_tree": 1.0,
              "colsample_by_tree": 1.0, "base_score": a.base_score, "first_tree_with_label_holder_feature": False}
    t_fit = time.perf_counter()
    model = Sgb(heu).train(params, x, y)
    sf.wait([t.get_leaf_weight() for t in model.trees])
    wall = time.perf_counter() - t_fit
    total = time.perf_counter() - t_start

    score = sf.reveal(alice(auc)(model.predict(x), xa_y[1]))
    out = {"party": a.party, "wall_s": round(wall, 2), "total_s": round(total, 2), "auc": round(score, 6),
           "rows": int(rows), "trees": len(model.trees), "peak_rss_mb": peak_rss_mb()}
    sf.shutdown()
    return out


def main():
    a = parse_args()
    if a.party:
        print(json.dumps(run_party(a)), flush=True)
        return
    from importlib.metadata import version  # not `import secretflow`: its C++ logs go to stdout

    t0 = time.perf_counter()
    res = run_parties(__file__, sys.argv[1:], ports=2)
    al = res["alice"]
    print(json.dumps({"library": "secretflow-sgb", "version": version("secretflow"),
                      "mode": "production, 2 processes, no Ray, gRPC on 127.0.0.1",
                      "wall_s": al["wall_s"], "total_s": al["total_s"],
                      "launcher_s": round(time.perf_counter() - t0, 2),
                      "auc": al["auc"], "he": f"{a.he}-2048", "rows": al["rows"], "trees": al["trees"],
                      "depth": a.depth, "bins": a.bins, "base_score": a.base_score,
                      "peak_rss_mb": {p: res[p]["peak_rss_mb"] for p in res}}))


if __name__ == "__main__":
    main()
