"""homo_lr benchmark: federated test AUC beside centralised training, and seconds per round with and without SecAgg.

    python benchmarks/homo_lr.py [--rounds 10] [--data /work/shared/data]

For default_credit_homo (3 clients x 8,000 rows, 23 features) and breast_homo (2 clients, 30 features):
trains `homo_lr` in simulation (threads over the in-memory transport, one aggregator and one thread per
client, all on this machine's cores) with each strategy, plain and with secure aggregation, and prints the
test AUC at the first client next to scikit-learn's LogisticRegression fitted on the union of the clients'
rows, plus the mean seconds per round the aggregator logged (local training, aggregation and evaluation).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression

from sharedml.fl.homo_lr import HomoLRParams, homo_lr
from sharedml.ml.metrics import roc_auc
from sharedml.runtime.simulate import simulate

DATASETS = {
    "default_credit_homo": (["guest", "host_1", "host_2"], {"batch_size": 64}),
    "breast_homo": (["guest", "host"], {"batch_size": 16}),
}


def centralised_auc(clients: dict[str, pd.DataFrame], test: pd.DataFrame) -> float:
    union = pd.concat(clients.values())
    features = [c for c in union.columns if c not in ("id", "y")]
    model = LogisticRegression(max_iter=2000).fit(union[features], union["y"])
    return roc_auc(test["y"].to_numpy(), model.predict_proba(test[features])[:, 1])


def federated(clients: dict[str, pd.DataFrame], test: pd.DataFrame, params: HomoLRParams) -> tuple[float, float]:
    """(test AUC at the first client, mean seconds per round at the aggregator)."""

    def party(ctx: Any) -> Any:
        if ctx.role == "aggregator":
            homo_lr(ctx, params)
            return [r["value"] for r in ctx.metrics.records if r["name"] == "round_seconds"]
        return homo_lr(ctx, params, train=clients[ctx.party], validate=test, test=test)["predictions"]

    out = simulate(party, {"aggregator": "aggregator", **{c: "client" for c in clients}}, timeout=120)
    predictions = out[next(iter(clients))]
    return roc_auc(predictions["y"].to_numpy(), predictions["score"].to_numpy()), statistics.mean(out["aggregator"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    print(f"{'data':20} {'strategy':9} {'secagg':6} {'AUC':>7} {'central':>7} {'s/round':>8}")
    for name, (parties, options) in DATASETS.items():
        clients = {p: pd.read_csv(args.data / f"{name}_{p}.csv") for p in parties}
        test = pd.read_csv(args.data / f"{name}_test.csv")
        central = centralised_auc(clients, test)
        for strategy in ("fedavg", "fedprox", "fedadam", "fedyogi"):
            for secure in (False, True):
                params = HomoLRParams(rounds=args.rounds, strategy=strategy, seed=0, secure_aggregation=secure,
                                      proximal_mu=0.01 if strategy == "fedprox" else 0.0, **options)
                auc, seconds = federated(clients, test, params)
                print(f"{name:20} {strategy:9} {str(secure):6} {auc:7.4f} {central:7.4f} {seconds:8.4f}")


if __name__ == "__main__":
    main()
