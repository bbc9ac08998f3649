"""homo_nn benchmark: federated MLP test AUC beside centralised torch training; s/round with and without SecAgg.

    python benchmarks/homo_nn.py [--rounds 10] [--data DIR] [--hidden 32 16]
        [--flower /tmp/flwrvenv/bin/python]

For default_credit_homo (3 clients x 8,000 rows, 23 features, batch 64) and breast_homo (2 clients, 30
features, batch 16): `homo_nn` with an MLP (ReLU after each `--hidden` width, one logit; Adam, lr 0.01, one
local epoch per round, seed 0) in simulation (threads over the in-memory transport; clients in one process
train one at a time, see sharedml/ml/nn/models.py), plain and with secure aggregation, every client evaluating
the test rows each round as its validation set. `central` is the same network, initial weights and seeding
trained on the union of the clients' rows for `--rounds` epochs (homo_nn with one client holding the union, one
round of `--rounds` local epochs): the same budget in epochs. Columns: test AUC at the first client, seconds
(the whole simulation, torch warm), s/round (the aggregator's mean round_seconds), after 1st (rounds after the
first), and the secure/plain ratio of s/round. With `--flower PYTHON`, benchmarks/flower_homo_nn.py runs the same
network, initial weights, seeds and FedAvg rounds in Flower's simulation in that interpreter (a venv with
flwr[simulation] and torch) in the same run, and `ours/Flower` is the ratio of each of seconds, s/round and
after 1st (Flower has no secure aggregation; its first round also starts the Ray actors).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from homo_lr import federated_run, fmt, ratio, run_flower

from sharedml import datasets
from sharedml.ml.nn.homo import HomoNNParams, homo_nn

DATA_DIR = datasets.folder()

DATASETS = {"default_credit_homo": (["guest", "host_1", "host_2"], 64), "breast_homo": (["guest", "host"], 16)}


def run(clients: dict[str, pd.DataFrame], test: pd.DataFrame, params: HomoNNParams) -> dict[str, Any]:
    """homo_nn in simulation: test AUC at the first client, wall seconds, the aggregator's round_seconds."""
    found = federated_run(clients, test, params, homo_nn)
    return {"auc": found.auc, "seconds": found.seconds, "round_s": statistics.mean(found.rounds),
            "round_s_after_first": statistics.mean(found.rounds[1:]) if len(found.rounds) > 1 else None}


def ours(args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    """{dataset: {engine: row}} for engines ours, ours secagg and central."""
    common = {"seed": 0, "learning_rate": 0.01, "optimizer": "adam", "round_timeout": 600.0,
              "model": {"type": "mlp", "hidden": args.hidden}}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name, (parties, batch) in DATASETS.items():
        clients = {p: pd.read_csv(args.data / f"{name}_{p}.csv.gz") for p in parties}
        test = pd.read_csv(args.data / f"{name}_test.csv.gz")
        run(clients, test, HomoNNParams(rounds=1, batch_size=batch, **common))  # warm torch up
        found[name] = {
            "ours": run(clients, test, HomoNNParams(rounds=args.rounds, batch_size=batch, **common)),
            "ours secagg": run(clients, test, HomoNNParams(rounds=args.rounds, batch_size=batch,
                                                           secure_aggregation=True, **common)),
            "central": run({"union": pd.concat(clients.values())}, test,
                           HomoNNParams(rounds=1, local_epochs=args.rounds, min_clients=1, batch_size=batch, **common)),
        }
    return found


def flower_rows(python: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run benchmarks/flower_homo_nn.py in `python` (its own venv); its JSON rows by dataset."""
    return run_flower(python, "flower_homo_nn.py", ["--rounds", str(args.rounds), "--data", str(args.data),
                                                    "--hidden", *map(str, args.hidden)])


def report(found: dict[str, dict[str, dict[str, Any]]], flower: dict[str, dict[str, Any]]) -> None:
    keys = ("seconds", "round_s", "round_s_after_first")
    print(f"{'data':20} {'engine':13} {'AUC':>7} {'seconds':>8} {'s/round':>8} {'after 1st':>9}  "
          "secure/plain s/round; ours/Flower: seconds, s/round, after 1st")
    for name, rows in found.items():
        theirs = flower.get(name)
        engines = {**rows, **({f"Flower {theirs['version']}": theirs} if theirs else {})}
        for engine, x in engines.items():
            note = ratio(x["round_s"], rows["ours"]["round_s"]).rjust(7) if engine == "ours secagg" else " " * 7
            if theirs and engine in ("ours", "ours secagg"):
                note += " " + " ".join(ratio(x[k], theirs[k]).rjust(7) for k in keys)
            print(f"{name:20} {engine:13} {x['auc']:7.4f} {x['seconds']:8.2f} {x['round_s']:8.4f} "
                  f"{fmt(x['round_s_after_first'], '9.4f'):>9}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the example data (default: the package's)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[32, 16], help="hidden layer widths")
    parser.add_argument("--flower", metavar="PYTHON", help="also run benchmarks/flower_homo_nn.py in this Python")
    args = parser.parse_args()
    found = ours(args)
    report(found, flower_rows(args.flower, args) if args.flower else {})


if __name__ == "__main__":
    main()
