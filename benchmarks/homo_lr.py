"""homo_lr benchmark: federated test AUC beside centralised training, and seconds per round with and without SecAgg.

    python benchmarks/homo_lr.py [--rounds 10] [--data DIR] [--flower /tmp/flwrvenv/bin/python]
        [--clients 10] [--timing-rounds 3] [--sizes 100000 1000000] [--rows 16] [--skip-strategies]
        [--secagg-neighbours K]

For default_credit_homo (3 clients x 8,000 rows, 23 features) and breast_homo (2 clients, 30 features):
trains `homo_lr` in simulation (threads over the in-memory transport, one aggregator and one thread per
client, all on this machine's cores) with each strategy, plain and with secure aggregation, and prints the
test AUC at the first client next to scikit-learn's LogisticRegression fitted on the union of the clients'
rows, plus the mean seconds per round the aggregator logged (local training, aggregation and evaluation).

Then the Flower comparison (the configurations of benchmarks/flower_homo_lr.py, FedAvg, plain and with secure
aggregation): both datasets for `--rounds` rounds; default_credit's union cut into `--clients` clients for
`--timing-rounds` rounds; and `--clients` clients x `--rows` random rows for a model of each of `--sizes`
parameters (the same random rows as Flower's; the clients do not evaluate; AUC on the training rows). The
random rows run `LogisticClient` (homo_lr's local model) under the round loop directly, without the component's
DataFrame handling. Columns: seconds (the whole simulation), s/round (the aggregator's mean round_seconds),
after 1st (the mean of the rounds after the first), AUC. With `--flower PYTHON` the Flower script runs in that
interpreter (a venv with flwr[simulation]) in the same run, its rows are printed under ours, and `ratio`
is ours / Flower for each of seconds, s/round and after 1st (plain and secure rows against the same
Flower row; Flower has no secure aggregation in this simulation). Flower's first round also starts its Ray
actors, hence the after-1st column.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from flower_homo_lr import random_rows
from sklearn.linear_model import LogisticRegression

from sharedml import datasets
from sharedml.fl.rounds import run_aggregator, run_client, signature
from sharedml.fl.strategies import make_strategy
from sharedml.ml.linear.homo import HomoLRParams, LogisticClient, homo_lr
from sharedml.ml.metrics import roc_auc
from sharedml.runtime.simulate import simulate

DATA_DIR = datasets.folder()

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
    run = federated_run(clients, test, params)
    return run.auc, statistics.mean(run.rounds)


@dataclass
class Run:
    auc: float
    seconds: float  # the whole simulation
    rounds: list[float]  # the aggregator's round_seconds


def federated_run(clients: dict[str, pd.DataFrame], test: pd.DataFrame, params: Any,
                  component: Callable[..., Any] = homo_lr) -> Run:
    """An FL component (`homo_lr`, `homo_nn`) in simulation: test AUC at the first client, wall seconds, each
    round's seconds."""

    def party(ctx: Any) -> Any:
        if ctx.role == "aggregator":
            component(ctx, params)
            return [r["value"] for r in ctx.metrics.records if r["name"] == "round_seconds"]
        return component(ctx, params, train=clients[ctx.party], validate=test, test=test)["predictions"]

    started = time.perf_counter()
    out = simulate(party, {"aggregator": "aggregator", **{c: "client" for c in clients}}, timeout=600)
    seconds = time.perf_counter() - started
    predictions = out[next(iter(clients))]
    return Run(roc_auc(predictions["y"].to_numpy(), predictions["score"].to_numpy()), seconds, out["aggregator"])


def random_run(size: int, n_clients: int, rows: int, params: HomoLRParams) -> Run:
    """homo_lr's LogisticClient under the round loop on Flower's random rows; AUC on the union of those rows."""
    parts = [random_rows(size, n_clients, rows, k) for k in range(n_clients)]
    names = [f"c{k:02d}" for k in range(n_clients)]  # sorted as the party index (the shuffling seed) needs
    features = signature(["random", str(size)])

    def party(ctx: Any) -> Any:
        if ctx.role == "aggregator":
            strategy = make_strategy("fedavg", server_lr=None, proximal_mu=0.0, beta_1=params.beta_1,
                                     beta_2=params.beta_2, tau=params.tau)
            run_aggregator(ctx, params.round_config(), strategy)
            return [r["value"] for r in ctx.metrics.records if r["name"] == "round_seconds"]
        k = names.index(ctx.party)
        return run_client(ctx, params.round_config(), LogisticClient(*parts[k], params, k), features)

    started = time.perf_counter()
    out = simulate(party, {"aggregator": "aggregator", **{c: "client" for c in names}}, timeout=600)
    seconds = time.perf_counter() - started
    weights = out[names[0]]
    X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return Run(roc_auc(y, X @ weights[:-1] + weights[-1]), seconds, out["aggregator"])


def comparison(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Our rows of the Flower comparison: FedAvg, plain and secure, per configuration."""
    rows = []
    common = {"strategy": "fedavg", "seed": 0, "learning_rate": 0.1, "alpha": 0.0, "local_epochs": 1,
              "round_timeout": 600.0}
    frames = {}
    for name, (parties, options) in DATASETS.items():
        frames[name] = {p: pd.read_csv(args.data / f"{name}_{p}.csv.gz") for p in parties}
        test = pd.read_csv(args.data / f"{name}_test.csv.gz")
        for secure in (False, True):
            params = HomoLRParams(rounds=args.rounds, secure_aggregation=secure, **common, **options)
            rows.append(row(name, secure, len(parties), test.shape[1] - 1, args.rounds,
                            federated_run(frames[name], test, params)))
    union = pd.concat(frames["default_credit_homo"].values(), ignore_index=True)
    parts = np.array_split(np.arange(len(union)), args.clients)
    split = {f"c{k:02d}": union.iloc[part] for k, part in enumerate(parts)}
    test = pd.read_csv(args.data / "default_credit_homo_test.csv.gz")
    for secure in (False, True):
        params = HomoLRParams(rounds=args.timing_rounds, secure_aggregation=secure, batch_size=64, **common,
                              **sparse(args, secure))
        rows.append(row(f"default_credit_homo_x{args.clients}", secure, args.clients, test.shape[1] - 1,
                        args.timing_rounds, federated_run(split, test, params)))
    for size in args.sizes:
        for secure in (False, True):
            params = HomoLRParams(rounds=args.timing_rounds, secure_aggregation=secure, batch_size=64, **common,
                                  **sparse(args, secure))
            rows.append(row(f"random_{size}", secure, args.clients, size, args.timing_rounds,
                            random_run(size, args.clients, args.rows, params)))
    return rows


def sparse(args: argparse.Namespace, secure: bool) -> dict[str, Any]:
    """SecAgg+ (k neighbours, a threshold of k/2 + 1) for the timing rows' secure runs when asked for."""
    if not (secure and args.secagg_neighbours):
        return {}
    return {"secagg_neighbours": args.secagg_neighbours, "min_clients": args.secagg_neighbours // 2 + 1}


def row(config: str, secure: bool, clients: int, parameters: int, rounds: int, run: Run) -> dict[str, Any]:
    return {"config": config, "engine": "ours secagg" if secure else "ours", "clients": clients,
            "parameters": parameters, "rounds": rounds, "seconds": run.seconds,
            "round_s": statistics.mean(run.rounds),
            "round_s_after_first": statistics.mean(run.rounds[1:]) if len(run.rounds) > 1 else None, "auc": run.auc}


def flower_rows(python: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run benchmarks/flower_homo_lr.py in `python` (its own venv); its JSON rows by configuration."""
    return run_flower(python, "flower_homo_lr.py", [
        "--rounds", str(args.rounds), "--data", str(args.data), "--clients", str(args.clients),
        "--timing-rounds", str(args.timing_rounds), "--rows", str(args.rows), "--sizes", *map(str, args.sizes)])


def run_flower(python: str, script: str, options: list[str]) -> dict[str, dict[str, Any]]:
    """Run a Flower script of this folder in `python` (a venv with flwr); the JSON lines it prints, by config."""
    done = subprocess.run([python, str(Path(__file__).with_name(script)), *options], capture_output=True, text=True,
                          timeout=3600)
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            found[result["config"]] = result
    if done.returncode or not found:
        print(f"Flower run failed (exit {done.returncode}): {done.stderr.strip()[-600:]}")
    return found


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def ratio(ours: float | None, theirs: float | None) -> str:
    return "" if not ours or not theirs else f"{ours / theirs:.3g}"


def print_comparison(ours: list[dict[str, Any]], flower: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'config':26} {'engine':13} {'clients':>7} {'params':>9} {'rounds':>6} {'seconds':>8} {'s/round':>8} "
          f"{'after 1st':>9} {'AUC':>7}  ratio ours/Flower: seconds, s/round, after 1st")
    configs = list(dict.fromkeys([r["config"] for r in ours] + list(flower)))
    for config in configs:
        f = flower.get(config)
        for x in [r for r in ours if r["config"] == config] + ([f] if f else []):
            note = ""
            if f and x is not f:
                note = " ".join(ratio(x[k], f[k]).rjust(7) for k in ("seconds", "round_s", "round_s_after_first"))
            engine = f"Flower {x['version']}" if x is f else x["engine"]
            print(f"{config:26} {engine:13} {x['clients']:7d} {x['parameters']:9,d} {x['rounds']:6d} "
                  f"{x['seconds']:8.2f} {x['round_s']:8.4f} {fmt(x['round_s_after_first'], '9.4f'):>9} "
                  f"{x['auc']:7.4f}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the example data (default: the package's)")
    parser.add_argument("--flower", metavar="PYTHON", help="also run benchmarks/flower_homo_lr.py in this Python")
    parser.add_argument("--clients", type=int, default=10, help="clients of the timing rows")
    parser.add_argument("--timing-rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="parameters")
    parser.add_argument("--rows", type=int, default=16, help="random rows per client in the random_<P> rows")
    parser.add_argument("--skip-strategies", action="store_true", help="only the Flower comparison")
    parser.add_argument("--secagg-neighbours", type=int, metavar="K",
                        help="the timing rows' secure runs use SecAgg+ with K neighbours per client")
    args = parser.parse_args()
    if not args.skip_strategies:
        strategies(args)
    ours = comparison(args)
    print_comparison(ours, flower_rows(args.flower, args) if args.flower else {})


def strategies(args: argparse.Namespace) -> None:
    print(f"{'data':20} {'strategy':9} {'secagg':6} {'AUC':>7} {'central':>7} {'s/round':>8}")
    for name, (parties, options) in DATASETS.items():
        clients = {p: pd.read_csv(args.data / f"{name}_{p}.csv.gz") for p in parties}
        test = pd.read_csv(args.data / f"{name}_test.csv.gz")
        central = centralised_auc(clients, test)
        for strategy in ("fedavg", "fedprox", "fedadam", "fedyogi"):
            for secure in (False, True):
                params = HomoLRParams(rounds=args.rounds, strategy=strategy, seed=0, secure_aggregation=secure,
                                      proximal_mu=0.01 if strategy == "fedprox" else 0.0, **options)
                auc, seconds = federated(clients, test, params)
                print(f"{name:20} {strategy:9} {str(secure):6} {auc:7.4f} {central:7.4f} {seconds:8.4f}")


if __name__ == "__main__":
    main()
