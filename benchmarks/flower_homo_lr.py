"""Flower's simulation of the same numpy logistic regression and FedAvg rounds as sharedml's `homo_lr`.

    /tmp/flwrvenv/bin/python benchmarks/flower_homo_lr.py [--rounds 10] [--data DIR]
        [--clients 10] [--timing-rounds 3] [--sizes 100000 1000000] [--rows 16] [--only NAME ...]

Standalone (it does not import sharedml): run it in a venv with `flwr[simulation]` (Ray), numpy, pandas and
scikit-learn, or through `benchmarks/homo_lr.py --flower PYTHON`. Each configuration is one
`flwr.simulation.run_simulation` call (Flower's Message API: a `ServerApp` running `flwr.serverapp.strategy.FedAvg`
and a `ClientApp` on virtual SuperNodes in Ray actors, 1 CPU each) and prints one JSON line.

The model is homo_lr's: weights = coefficients then intercept, all zeros at the start; each round every
client runs `local_epochs` of mini-batch SGD on its rows (a permutation from numpy's default_rng([seed,
client index, round - 1]), step `learning_rate` on the mean log-loss gradient + alpha * w on the coefficients)
from the global weights, and FedAvg averages the clients' weights by their row counts. Like homo_lr's
benchmark, every client then evaluates the new global model on the test rows each round (federated
evaluation), except in the random-data timing rows, where neither side evaluates.

Configurations (the same as benchmarks/homo_lr.py's Flower-comparison rows):
- default_credit_homo: 3 clients (guest, host_1, host_2), batch 64; breast_homo: 2 clients, batch 16;
  `--rounds` rounds; AUC on the test rows of the final global model.
- default_credit_homo_x10: the union of default_credit's three clients (in that order) cut into `--clients`
  contiguous parts, `--timing-rounds` rounds, batch 64; test AUC.
- random_<P>: `--clients` clients x `--rows` random rows (uniform in [-1, 1], label = sign of a fixed random
  linear function) with P - 1 features, so a P-parameter model; `--timing-rounds` rounds; the AUC is
  on the union of the clients' training rows (a check that both sides compute the same model).

Fields: seconds (the whole run_simulation call: Ray start, actors, rounds, shutdown), round_s (mean over
rounds, from configure_train to the end of aggregate_evaluate at the server; the first round also starts
the Ray actors and loads each client's data), round_s_after_first, strategy_s (all rounds), rounds_s (each
round), auc, version.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"  # no sharedml in this venv

DATASETS = {
    "default_credit_homo": (["guest", "host_1", "host_2"], 64),
    "breast_homo": (["guest", "host"], 16),
}
LEARNING_RATE, ALPHA, LOCAL_EPOCHS, SEED = 0.1, 0.0, 1, 0
_CACHE: dict[tuple, Any] = {}


# -- data (the same function runs in the server process and in Flower's Ray actors) ------------------
def random_rows(size: int, clients: int, rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Client k's random rows for a `size`-parameter model (benchmarks/homo_lr.py makes the same)."""
    w_true = np.random.default_rng([7, size]).random(size - 1) * 2 - 1
    X = np.random.default_rng([8, size, clients, k]).random((rows, size - 1)) * 2 - 1
    return X, (X @ w_true > 0).astype(np.float64)


def client_data(cfg: dict[str, Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    key = (cfg["kind"], cfg["data"], cfg["name"], int(cfg["clients"]), int(cfg["size"]), int(cfg["rows"]), k)
    if key not in _CACHE:
        if cfg["kind"] == "random":
            _CACHE[key] = random_rows(int(cfg["size"]), int(cfg["clients"]), int(cfg["rows"]), k)
        else:
            parties = DATASETS[cfg["name"]][0]
            frames = [pd.read_csv(Path(cfg["data"]) / f"{cfg['name']}_{p}.csv.gz") for p in parties]
            if cfg["kind"] == "split":
                union = pd.concat(frames, ignore_index=True)
                frame = union.iloc[np.array_split(np.arange(len(union)), int(cfg["clients"]))[k]]
            else:
                frame = frames[k]
            _CACHE[key] = xy(frame)
    return _CACHE[key]


def test_data(cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    key = ("test", cfg["data"], cfg["name"])
    if key not in _CACHE:
        _CACHE[key] = xy(pd.read_csv(Path(cfg["data"]) / f"{cfg['name']}_test.csv.gz"))
    return _CACHE[key]


def xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame.drop(columns=["id", "y"]).to_numpy(np.float64), frame["y"].to_numpy(np.float64)


# -- the model: homo_lr's LogisticClient ------------------------------------------------------------
def probability(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(X @ w[:-1] + w[-1])))


def local_sgd(w_global: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: dict[str, Any], k: int,
              server_round: int) -> np.ndarray:
    rng = np.random.default_rng([int(cfg["seed"]), k, server_round - 1])
    batch, lr, alpha = int(cfg["batch_size"]), float(cfg["learning_rate"]), float(cfg["alpha"])
    w = w_global.copy()
    for _ in range(int(cfg["local_epochs"])):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            rows = order[start:start + batch]
            Xb = X[rows]
            error = probability(w, Xb) - y[rows]
            grad = np.append(Xb.T @ error, error.sum()) / len(rows)
            grad[:-1] += alpha * w[:-1]
            w -= lr * grad
    return w


def metrics(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = np.clip(probability(w, X), 1e-15, 1 - 1e-15)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {"loss": loss, "auc": float(roc_auc_score(y, p)), "accuracy": float(np.mean((p >= 0.5) == y))}


# -- Flower apps ------------------------------------------------------------------------------------
def flower_apps(cfg: dict[str, Any], rounds: int, clients: int, out: dict[str, Any]) -> tuple[Any, Any]:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        conf = dict(msg.content["config"])
        k = int(context.node_config["partition-id"])
        X, y = client_data(conf, k)
        w = local_sgd(msg.content["arrays"].to_numpy_ndarrays()[0], X, y, conf, k, int(conf["server-round"]))
        reply = RecordDict({"arrays": ArrayRecord([w]), "metrics": MetricRecord({"num-examples": len(y)})})
        return Message(content=reply, reply_to=msg)

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        conf = dict(msg.content["config"])
        X, y = test_data(conf)
        values = metrics(msg.content["arrays"].to_numpy_ndarrays()[0], X, y)
        reply = RecordDict({"metrics": MetricRecord({**values, "num-examples": len(y)})})
        return Message(content=reply, reply_to=msg)

    TimedFedAvg = timed_fedavg(FedAvg, out)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        evaluates = cfg["kind"] != "random"
        strategy = TimedFedAvg(fraction_train=1.0, fraction_evaluate=1.0 if evaluates else 0.0,
                               min_train_nodes=clients, min_evaluate_nodes=clients if evaluates else 0,
                               min_available_nodes=clients)
        size = int(cfg["size"])
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(size)]), num_rounds=rounds,
                                train_config=ConfigRecord(dict(cfg)), evaluate_config=ConfigRecord(dict(cfg)))
        out["weights"] = result.arrays.to_numpy_ndarrays()[0]

    return server_app, client_app


def simulate(apps: Any, cfg: dict[str, Any], rounds: int, clients: int, result: str) -> tuple[dict, float, np.ndarray]:
    """Flower's Ray simulation of `apps(cfg, rounds, clients, out)`: (out, seconds, seconds of each round);
    `out[result]` must hold the final model when all rounds are done."""
    from flwr.simulation import run_simulation

    out: dict[str, Any] = {}
    server_app, client_app = apps(cfg, rounds, clients, out)
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"log_to_driver": False}}
    started = time.perf_counter()
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients, backend_config=backend)
    seconds = time.perf_counter() - started
    if result not in out or len(out.get("ends", [])) != rounds:
        raise RuntimeError(f"Flower's simulation of {cfg['name']} did not finish its {rounds} rounds")
    return out, seconds, np.array(out["ends"]) - np.array(out["starts"])


def run(cfg: dict[str, Any], rounds: int, clients: int) -> dict[str, Any]:
    out, seconds, per_round = simulate(flower_apps, cfg, rounds, clients, "weights")
    if cfg["kind"] == "random":
        parts = [client_data(cfg, k) for k in range(clients)]
        X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        auc_on = "train"
    else:
        (X, y), auc_on = test_data(cfg), "test"
    return {"config": cfg["name_out"], "clients": clients, "rounds": rounds, "parameters": int(cfg["size"]),
            "seconds": round(seconds, 3), "round_s": round(float(per_round.mean()), 4),
            "round_s_after_first": round(float(per_round[1:].mean()), 4) if rounds > 1 else None,
            "strategy_s": round(float(out["ends"][-1] - out["starts"][0]), 3),
            "rounds_s": [round(float(s), 4) for s in per_round], "auc": metrics(out["weights"], X, y)["auc"],
            "auc_on": auc_on}


def configurations(args: argparse.Namespace) -> list[tuple[dict[str, Any], int, int]]:
    base = {"data": str(args.data), "learning_rate": LEARNING_RATE, "alpha": ALPHA, "local_epochs": LOCAL_EPOCHS,
            "seed": SEED, "rows": 0}
    found = []
    for name, (parties, batch) in DATASETS.items():
        size = pd.read_csv(args.data / f"{name}_test.csv.gz", nrows=1).shape[1] - 2 + 1
        found.append(({**base, "kind": "clients", "name": name, "name_out": name, "batch_size": batch,
                       "clients": len(parties), "size": size}, args.rounds, len(parties)))
    size = found[0][0]["size"]
    found.append(({**base, "kind": "split", "name": "default_credit_homo",
                   "name_out": f"default_credit_homo_x{args.clients}", "batch_size": 64, "clients": args.clients,
                   "size": size}, args.timing_rounds, args.clients))
    for size in args.sizes:
        found.append(({**base, "kind": "random", "name": "random", "name_out": f"random_{size}", "batch_size": 64,
                       "clients": args.clients, "size": size, "rows": args.rows}, args.timing_rounds, args.clients))
    return [c for c in found if not args.only or c[0]["name_out"] in args.only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the example data (default: the package's)")
    parser.add_argument("--clients", type=int, default=10, help="clients of the timing rows")
    parser.add_argument("--timing-rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="parameters")
    parser.add_argument("--rows", type=int, default=16, help="random rows per client in the random_<P> rows")
    parser.add_argument("--only", nargs="*", default=[], help="configuration names to run (default: all)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import flwr

    logging.getLogger("flwr").setLevel(logging.WARNING)
    for cfg, rounds, clients in configurations(args):
        row = run(cfg, rounds, clients)
        print(json.dumps({**row, "engine": "flower", "version": flwr.__version__,
                          "api": "flwr.simulation.run_simulation (Ray backend)"}), flush=True)


def timed_fedavg(fedavg: type, out: dict[str, list[float]]) -> type:
    """Flower's FedAvg, noting in `out` when each round starts (configure_train) and ends (after
    aggregate_evaluate). A factory, because flwr is imported inside the functions that use it."""

    class TimedFedAvg(fedavg):
        def configure_train(self, server_round: int, *args: Any) -> Any:
            out.setdefault("starts", []).append(time.perf_counter())
            return super().configure_train(server_round, *args)

        def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
            result = super().aggregate_evaluate(server_round, replies)
            out.setdefault("ends", []).append(time.perf_counter())
            return result

    return TimedFedAvg


if __name__ == "__main__":
    main()

