"""Flower's simulation of the same PyTorch MLP and FedAvg rounds as sharedml's `homo_nn` (benchmarks/homo_nn.py).

    /tmp/flwrvenv/bin/python benchmarks/flower_homo_nn.py [--rounds 10] [--data DIR]
        [--hidden 32 16] [--learning-rate 0.01] [--seed 0] [--only NAME ...]

Standalone (it does not import sharedml): run it in a venv with `flwr[simulation]` (Ray), torch, numpy, pandas
and scikit-learn, or through `benchmarks/homo_nn.py --flower PYTHON`. As in flower_homo_lr.py, each dataset is
one `flwr.simulation.run_simulation` call (a `ServerApp` running `flwr.serverapp.strategy.FedAvg`, a `ClientApp`
on virtual SuperNodes in Ray actors, 1 CPU each) and prints one JSON line with the same fields.

The network and its training are homo_nn's, so both sides compute the same models up to FedAvg's float
rounding: an MLP (Linear, ReLU per hidden width, then a Linear head with one logit) built right after
torch.manual_seed(seed); each round every client loads the global weights, seeds torch from numpy's
SeedSequence([seed, client index, round - 1]), makes a fresh Adam and runs one epoch over torch.randperm
batches of the mean BCE-with-logits loss, with one torch thread; FedAvg averages the weights by row count. Every
client then evaluates the new global model on the test rows (federated evaluation); the AUC is the final
global model's on the test rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flower_homo_lr import DATASETS, simulate, timed_fedavg, xy
from sklearn.metrics import roc_auc_score
from torch import nn

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"  # no sharedml in this venv

_CACHE: dict[tuple, Any] = {}


def mlp(inputs: int, hidden: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


def data(cfg: dict[str, Any], k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Client k's rows (the test rows if k is None), cached per Ray actor."""
    key = (cfg["data"], cfg["name"], k)
    if key not in _CACHE:
        part = "test" if k is None else DATASETS[cfg["name"]][0][k]
        X, y = xy(pd.read_csv(Path(cfg["data"]) / f"{cfg['name']}_{part}.csv.gz"))
        _CACHE[key] = (torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.float32)))
    return _CACHE[key]


def load(net: nn.Module, arrays: list[np.ndarray]) -> None:
    with torch.no_grad():
        for value, array in zip(net.state_dict().values(), arrays, strict=True):
            value.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))


def local_training(arrays: list[np.ndarray], cfg: dict[str, Any], k: int, server_round: int) -> list[np.ndarray]:
    torch.set_num_threads(1)
    X, y = data(cfg, k)
    net = mlp(X.shape[1], json.loads(cfg["hidden"]), 0)
    seed = int(np.random.SeedSequence([int(cfg["seed"]), k, server_round - 1]).generate_state(1, np.uint64)[0] >> 1)
    torch.manual_seed(seed)
    load(net, arrays)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg["learning_rate"]))
    for _ in range(int(cfg["local_epochs"])):
        for rows in torch.randperm(len(y)).split(int(cfg["batch_size"])):
            optimizer.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(net(X[rows])[:, 0], y[rows]).backward()
            optimizer.step()
    return [v.detach().numpy().copy() for v in net.state_dict().values()]


def test_auc(arrays: list[np.ndarray], cfg: dict[str, Any]) -> float:
    X, y = data(cfg, None)
    net = mlp(X.shape[1], json.loads(cfg["hidden"]), 0)
    load(net, arrays)
    net.eval()
    with torch.no_grad():
        return float(roc_auc_score(y.numpy(), torch.sigmoid(net(X)[:, 0]).numpy()))


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
        arrays = local_training(msg.content["arrays"].to_numpy_ndarrays(), conf, k, int(conf["server-round"]))
        reply = RecordDict({"arrays": ArrayRecord(arrays),
                            "metrics": MetricRecord({"num-examples": len(data(conf, k)[1])})})
        return Message(content=reply, reply_to=msg)

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        conf = dict(msg.content["config"])
        auc = test_auc(msg.content["arrays"].to_numpy_ndarrays(), conf)
        reply = RecordDict({"metrics": MetricRecord({"auc": auc, "num-examples": len(data(conf, None)[1])})})
        return Message(content=reply, reply_to=msg)

    TimedFedAvg = timed_fedavg(FedAvg, out)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = TimedFedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=clients,
                               min_evaluate_nodes=clients, min_available_nodes=clients)
        initial = mlp(int(cfg["inputs"]), json.loads(cfg["hidden"]), int(cfg["seed"]))
        arrays = ArrayRecord([v.detach().numpy().copy() for v in initial.state_dict().values()])
        result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=rounds,
                                train_config=ConfigRecord(dict(cfg)), evaluate_config=ConfigRecord(dict(cfg)))
        out["arrays"] = result.arrays.to_numpy_ndarrays()

    return server_app, client_app


def run(cfg: dict[str, Any], rounds: int, clients: int) -> dict[str, Any]:
    out, seconds, per_round = simulate(flower_apps, cfg, rounds, clients, "arrays")
    return {"config": cfg["name"], "clients": clients, "rounds": rounds, "parameters": int(cfg["parameters"]),
            "seconds": round(seconds, 3), "round_s": round(float(per_round.mean()), 4),
            "round_s_after_first": round(float(per_round[1:].mean()), 4) if rounds > 1 else None,
            "rounds_s": [round(float(s), 4) for s in per_round], "auc": test_auc(out["arrays"], cfg)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the example data (default: the package's)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[32, 16])
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=[], help="dataset names to run (default: all)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import flwr

    logging.getLogger("flwr").setLevel(logging.WARNING)
    for name, (parties, batch) in DATASETS.items():
        if args.only and name not in args.only:
            continue
        inputs = pd.read_csv(args.data / f"{name}_test.csv.gz", nrows=1).shape[1] - 2
        parameters = sum(p.numel() for p in mlp(inputs, args.hidden, 0).parameters())
        cfg = {"data": str(args.data), "name": name, "inputs": inputs, "hidden": json.dumps(args.hidden),
               "learning_rate": args.learning_rate, "local_epochs": 1, "batch_size": batch, "seed": args.seed,
               "parameters": parameters}
        row = run(cfg, args.rounds, len(parties))
        print(json.dumps({**row, "engine": "flower", "version": flwr.__version__,
                          "api": "flwr.simulation.run_simulation (Ray backend)"}), flush=True)


if __name__ == "__main__":
    main()
