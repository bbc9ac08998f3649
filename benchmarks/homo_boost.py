"""homo_secureboost benchmark: test AUC beside XGBoost on the union of the clients' rows, seconds and bytes.

    python benchmarks/homo_boost.py [--trees 10] [--depth 5] [--data DIR]

For default_credit_homo (3 clients x 8,000 rows, 23 features): trains `homo_secureboost` in simulation
(threads over the in-memory transport, one aggregator and one thread per client, all on this machine's
cores) with and without secure aggregation, and prints the test AUC at the first client, the wall-clock
seconds of the whole training, and the bytes that crossed the wire (all messages, and those the
aggregator received). Beside it: XGBoost (hist, same hyper-parameters) on the union of the rows, once with
its own 32 bins of the raw values and once on the federated model's common bin codes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost

from sharedml import datasets
from sharedml.ml.metrics import roc_auc
from sharedml.ml.preprocess.binning import QuantileBinner
from sharedml.ml.tree.homo import HomoBoostParams, homo_secureboost
from sharedml.runtime.simulate import simulate

DATA_DIR = datasets.folder()

CLIENTS = ["guest", "host_1", "host_2"]


def federated(clients: dict[str, pd.DataFrame], test: pd.DataFrame,
              params: HomoBoostParams) -> tuple[float, float, int, int, dict[str, Any]]:
    """(test AUC at the first client, seconds, bytes on the wire, bytes to the aggregator, the model)."""
    records: list[Any] = []

    def party(ctx: Any) -> Any:
        if ctx.role == "aggregator":
            return homo_secureboost(ctx, params)
        return homo_secureboost(ctx, params, train=clients[ctx.party], test=test)

    started = time.perf_counter()
    out = simulate(party, {"aggregator": "aggregator", **{c: "client" for c in clients}}, timeout=300,
                   recorder=records.append)
    seconds = time.perf_counter() - started
    predictions = out[CLIENTS[0]]["predictions"]
    auc = roc_auc(predictions["y"].to_numpy(), predictions["score"].to_numpy())
    wire = sum(len(r.payload) for r in records)
    to_aggregator = sum(len(r.payload) for r in records if r.dst == "aggregator")
    return auc, seconds, wire, to_aggregator, out[CLIENTS[0]]["model"]


def xgboost_auc(union: pd.DataFrame, test: pd.DataFrame, features: list[str], params: HomoBoostParams,
                binner: QuantileBinner | None) -> float:
    """XGBoost on the union: raw values with its own max_bin bins, or the codes of `binner`."""
    def prepare(frame: pd.DataFrame) -> np.ndarray:
        values = frame[features].to_numpy()
        return values if binner is None else binner.transform(values)

    model = xgboost.XGBClassifier(n_estimators=params.n_estimators, max_depth=params.max_depth,
                                  learning_rate=params.learning_rate, reg_lambda=params.reg_lambda,
                                  gamma=params.gamma, min_child_weight=params.min_child_weight, tree_method="hist",
                                  max_bin=params.max_bin if binner is None else 2 * params.max_bin, n_jobs=2)
    model.fit(prepare(union), union["y"])
    return roc_auc(test["y"].to_numpy(), model.predict_proba(prepare(test))[:, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=10)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the example data (default: the package's)")
    args = parser.parse_args()
    clients = {c: pd.read_csv(args.data / f"default_credit_homo_{c}.csv.gz") for c in CLIENTS}
    test = pd.read_csv(args.data / "default_credit_homo_test.csv.gz")
    union = pd.concat(clients.values())
    print(f"default_credit_homo: {len(clients)} clients x {len(union) // len(clients)} rows, "
          f"{args.trees} trees of depth {args.depth}")
    print(f"{'learner':28} {'AUC':>7} {'seconds':>8} {'MB wire':>8} {'MB to agg':>9}")
    model = None
    for secure in (True, False):
        params = HomoBoostParams(n_estimators=args.trees, max_depth=args.depth, secure_aggregation=secure)
        auc, seconds, wire, to_aggregator, model = federated(clients, test, params)
        name = "homo_secureboost " + ("(secagg)" if secure else "(plain)")
        print(f"{name:28} {auc:7.4f} {seconds:8.2f} {wire / 1e6:8.2f} {to_aggregator / 1e6:9.2f}")
    assert model is not None
    features = model["features"]
    binner = QuantileBinner.from_dict(model["binner"])
    for name, bins in (("xgboost union, own bins", None), ("xgboost union, common bins", binner)):
        started = time.perf_counter()
        auc = xgboost_auc(union, test, features, params, bins)
        print(f"{name:28} {auc:7.4f} {time.perf_counter() - started:8.2f} {'-':>8} {'-':>9}")


if __name__ == "__main__":
    main()
