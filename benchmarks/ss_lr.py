"""ss_lr benchmark: our secret-shared logistic regression beside sklearn on the joined plaintext, SPU
SEMI2K simulation training the same mini-batch LR, and (optionally) SecretFlow's SSRegression.

    python benchmarks/ss_lr.py [--epochs 10] [--batch-size 1024] [--learning-rate 0.1] [--alpha 1e-4]
        [--sigmoid minimax] [--also-linear] [--dealer-free ot he] [--dealer-free-rows 2048] [--skip-grpc]
        [--skip-dealer-free] [--spu /tmp/spuvenv/bin/python] [--secretflow /tmp/sfvenv/bin/python]

Data: default_credit_hetero (30,000 rows, guest 13 + host 10 features, label y). Run it with the
project's venv (with sklearn); the SPU row runs in a Python with spu (this one, or `--spu PYTHON`).

Ours, how (the `ss_lr` component itself, each party's function called with its own Context):
- dealer: guest, host and a trusted dealer (role dealer); `triples: dealer`. Before each epoch the
  parties fetch that epoch's tuples from the dealer in a few batched requests (ss_tuples.py); the
  online phase then sends nothing to the dealer.
- dealer-free (`--dealer-free ot` (default) and/or `he`: the component's `triples`): guest and host.
  Before each epoch an offline phase makes that epoch's tuples (matrix triples by Gilboa products over
  correlated OT, elementwise triples from OT (Gilboa) or OU-2048 HE, AND triples, daBits and
  truncation pairs from OT extension); the online phase then draws from the pools. With `ot` that
  takes about a minute per epoch (2-core machine), with `he` about ten (its HE elementwise triples
  dominate), so by default this runs one epoch on the first `--dealer-free-rows` rows and scales
  seconds and bytes to 30,000 rows (every batch costs the same; marked PROJECTED).
  `--dealer-free-rows 0`: all rows.
- sim: every party a thread of one process, in-memory transport (`simulate`).
- grpc: every party (the dealer too) its own OS process, gRPC with mutual TLS over loopback, as the
  `sharedml.jobs.worker` parties of a job talk (benchmarks/mpc.py's process runner and certificates).

Columns: s/epoch: the online phase of an epoch (the slowest party; mean over the epochs after the
first, as SecretFlow's figure, whose first epoch also shares the data and compiles; the note has the
mean of all, the first and the fastest); offline s: per epoch (same epochs), the tuples fetched from
the dealer (dealer rows) or made (dealer-free rows) before it;
MB/epoch: bytes sent by all parties in an epoch's online phase (the dealer's answers included, none
online with prefetching); AUC on the training rows after the last epoch; ratio: s/epoch over
SecretFlow's (when run) else SPU's. sklearn: LogisticRegression (lbfgs, C = 1/(alpha·rows)) on the
joined, standardised columns: its fit seconds in the s/epoch column. SPU: the same mini-batch SGD
(same batch size, lr, L2, an intercept column; sigmoid `jax.lax.logistic`, SPU's DEFAULT mode; the
batches in row order) compiled once, an epoch per `Runtime.run` on two simulated parties (threads,
in-memory link); s/epoch the mean over epochs after the first.

Bars: ours, grpc with a dealer: s/epoch (online + the dealer fetch) <= SecretFlow's SSRegression
(same data, batch, lr; its epochs after the first) and <= 2 s; AUC >= sklearn's - 0.005.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mpc import in_grpc_processes, in_processes, log

from sharedml import datasets
from sharedml.ml.linear.ss_component import SSLRParams, ss_lr
from sharedml.ml.metrics import roc_auc
from sharedml.runtime.context import Context
from sharedml.runtime.simulate import simulate

DATA = datasets.folder()
TIMEOUT = 7200.0
FULL_ROWS = 30_000


@dataclass
class Row:
    engine: str
    where: str
    seconds: float | None = None  # per epoch, online
    offline: float | None = None  # per epoch, dealer-free offline phase
    mb: float | None = None  # per epoch, online, all parties
    auc: float | None = None
    note: str = ""
    ratio: float | None = None


def load(data_dir: Path) -> dict[str, pd.DataFrame]:
    return {"guest": pd.read_csv(data_dir / "default_credit_hetero_guest.csv.gz"),
            "host": pd.read_csv(data_dir / "default_credit_hetero_host.csv.gz")}


# -- ours -----------------------------------------------------------------------------------------
def party_program(ctx: Context, params: SSLRParams, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The component at one party; what it measured (its metrics) and, at the guest, the training AUC."""
    outputs = ss_lr(ctx, params, frames.get(ctx.party))
    records = ctx.metrics.records
    per_epoch = {name: [r["value"] for r in records if r["name"] == name]
                 for name in ("online_s", "online_bytes", "offline_s", "offline_bytes")}
    dealer_sent = sum(s["bytes_sent"] for s in ctx.channel.stats.snapshot().values()) if ctx.role == "dealer" else 0
    auc = None
    if "predictions" in outputs:
        table = outputs["predictions"]
        auc = roc_auc(table[params.label].to_numpy(), table["score"].to_numpy())
    return {"per_epoch": per_epoch, "auc": auc, "dealer_sent": dealer_sent}


def roles(triples: str) -> dict[str, str]:
    base = {"guest": "guest", "host": "host"}
    return base | {"dealer": "dealer"} if triples == "dealer" else base


def sim_run(params: SSLRParams, frames: dict[str, pd.DataFrame]) -> dict[str, dict]:
    return simulate(partial(party_program, params=params, frames=frames), roles(params.triples), timeout=TIMEOUT)


def grpc_run(params: SSLRParams, frames: dict[str, pd.DataFrame]) -> dict[str, dict]:
    return in_grpc_processes(roles(params.triples), party_program, (params, frames), name="ss-lr-bench")


def ours(params: SSLRParams, frames: dict[str, pd.DataFrame], where: str, engine: str, scale: float = 1.0,
         note: str = "") -> Row:
    log(f"  {where:4} {engine}")
    results = in_processes([(sim_run, (params, frames))])[0] if where == "sim" else grpc_run(params, frames)
    computing = [results["guest"], results["host"]]
    epochs = len(computing[0]["per_epoch"]["online_s"])
    online = np.max([r["per_epoch"]["online_s"] for r in computing], axis=0)
    offline = np.max([r["per_epoch"]["offline_s"] or [0.0] * epochs for r in computing], axis=0)
    sent = np.sum([r["per_epoch"]["online_bytes"] for r in computing], axis=0)  # dealer's answers counted there
    steady = slice(1, None) if epochs > 1 else slice(None)  # as SecretFlow's figure: its first epoch compiles
    row = Row(engine, where, float(online[steady].mean()) * scale, float(offline[steady].mean()) * scale,
              float(sent.mean()) * scale / 1e6, results["guest"]["auc"], note)
    if computing[0]["per_epoch"]["offline_s"]:
        offline_mb = float(np.sum([r["per_epoch"]["offline_bytes"] for r in computing], axis=0).mean()) * scale / 1e6
        row.note += f"{'; ' if row.note else ''}offline {offline_mb:,.0f} MB/epoch"
    row.note += (f"{'; ' if row.note else ''}{epochs} epoch(s): mean of all {online.mean() * scale:.3f} s, first "
                 f"{online[0] * scale:.2f} s (+ {offline[0] * scale:.2f} s offline), "
                 f"fastest {online.min() * scale:.3f} s")
    return row


def dealer_free_row(params: SSLRParams, frames: dict[str, pd.DataFrame], where: str, source: str, rows: int) -> Row:
    """One dealer-free epoch on the first `rows` rows (0: all), scaled to all rows."""
    rows = rows or FULL_ROWS
    scale = FULL_ROWS / rows
    note = f"PROJECTED: 1 epoch of {rows:,} rows x {scale:.2f}" if scale != 1 else ""
    sliced = {p: f.iloc[:rows] for p, f in frames.items()}
    row = ours(params.model_copy(update={"triples": source, "epochs": 1}), sliced, where,
               f"ours dealer-free ({source}) {params.sigmoid}", scale, note)
    if scale != 1:  # an AUC of one epoch on a slice of the rows is no model quality figure
        row.note += f"; AUC on its {rows:,} rows {row.auc:.4f}"
        row.auc = None
    return row


# -- references -----------------------------------------------------------------------------------
def joined(frames: dict[str, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Guest and host columns joined on id, standardised as each party standardises its own; and y."""
    table = frames["guest"].merge(frames["host"], on="id", suffixes=("_guest", "_host"))
    X = table.drop(columns=["id", "y"]).to_numpy(np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0), table["y"].to_numpy(np.float64)


def sklearn_row(frames: dict[str, pd.DataFrame], alpha: float) -> Row:
    from sklearn.linear_model import LogisticRegression

    X, y = joined(frames)
    started = time.perf_counter()
    model = LogisticRegression(C=1 / (alpha * len(y)), max_iter=1000).fit(X, y)
    return Row("sklearn LogisticRegression", "local", time.perf_counter() - started,
               auc=roc_auc(y, model.decision_function(X)), note="whole fit (lbfgs), not an epoch")


def spu_reference(args: argparse.Namespace) -> dict[str, float]:
    """The same mini-batch SGD in JAX, run by SPU SEMI2K (FM64, 18 fractional bits) on two simulated parties."""
    import jax
    import spu.api as spu_api
    from mpc_reference import _spu_run
    from spu import libspu
    from spu.utils import frontend

    X, y = joined(load(args.data_dir))
    X = np.column_stack([X, np.ones(len(X))])
    n, d = X.shape
    size = args.batch_size
    mask = np.ones((d, 1))
    mask[-1] = 0.0

    def epoch(x, labels, w):
        for start in range(0, n, size):
            xb, yb = x[start:start + size], labels[start:start + size]
            residual = jax.lax.logistic(xb @ w) - yb
            w = w - (xb.T @ residual) * (args.learning_rate / len(xb)) - w * (args.learning_rate * args.alpha * mask)
        return w

    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.SEMI2K, field=libspu.FieldType.FM64,
                                  fxp_fraction_bits=18)
    inputs = [X, y.reshape(-1, 1), np.zeros((d, 1))]
    executable, _ = frontend.compile(frontend.Kind.JAX, epoch, inputs, {}, ["x", "y", "w"],
                                     [libspu.Visibility.VIS_SECRET] * 3, lambda outputs: ["w_out"])
    io = spu_api.Io(2, config)
    x_shares, y_shares, w_shares = (io.make_shares(a, libspu.Visibility.VIS_SECRET) for a in inputs)
    seconds = []
    for _ in range(args.epochs):
        elapsed, w_shares = _spu_run(executable, [x_shares, y_shares, w_shares], config, 2)
        seconds.append(elapsed)
    w = np.asarray(io.reconstruct(w_shares), dtype=np.float64).reshape(-1)
    return {"seconds": float(np.mean(seconds[1:] or seconds)), "auc": roc_auc(y, X @ w)}


def spu_row(args: argparse.Namespace) -> Row:
    """The SPU reference in its own process: this interpreter if it has spu, else `--spu PYTHON`."""
    import importlib.util

    python = args.spu or (sys.executable if importlib.util.find_spec("spu") else None)
    if python is None:
        return Row("SPU SEMI2K (JAX)", "sim", note="spu not installed (pass --spu /tmp/spuvenv/bin/python)")
    log("  sim  SPU")
    command = [python, __file__, "--spu-reference", *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return Row("SPU SEMI2K (JAX)", "sim", note=f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(lines[-1])
    return Row("SPU SEMI2K (JAX)", "sim", result["seconds"], auc=result["auc"], note="sigmoid: lax.logistic, DEFAULT")


def secretflow_row(python: str, args: argparse.Namespace) -> Row:
    log("  grpc SecretFlow SSRegression")
    command = [python, str(Path(__file__).with_name("secretflow_lr.py")), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
               "--alpha", str(args.alpha),
               "--guest", str(args.data_dir / "default_credit_hetero_guest.csv.gz"),
               "--host", str(args.data_dir / "default_credit_hetero_host.csv.gz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return Row("SecretFlow SSRegression", "grpc", note=f"failed: {done.stderr.strip()[-300:]}")
    result = json.loads(lines[-1])
    return Row(f"SecretFlow {result['version']} SSRegression", "grpc", result["epoch_s_after_first"],
               auc=result["auc"], note=f"sig_type {result['sig_type']}; fastest epoch {result['epoch_s_min']:.3f} s; "
                                       f"epoch 1 (shares data, compiles) {result['epoch_times'][0]:.2f} s; whole fit "
                                       f"{result['fit_s']:.1f} s")


# -- output ---------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    print(f"{'engine':34} {'where':5} {'s/epoch':>8} {'ratio':>6} {'offline s':>9} {'MB/epoch':>9} {'AUC':>7}  note")
    for r in rows:
        print(f"{r.engine:34} {r.where:5} {fmt(r.seconds, '8.3f'):>8} {fmt(r.ratio, '6.2f'):>6} "
              f"{fmt(r.offline, '9.2f'):>9} {fmt(r.mb, '9.1f'):>9} {fmt(r.auc, '7.4f'):>7}  {r.note}")


def print_bars(rows: list[Row]) -> None:
    sk = next(r for r in rows if r.engine.startswith("sklearn"))
    sf = next((r for r in rows if r.engine.startswith("SecretFlow") and r.seconds), None)
    for r in rows:
        if not r.engine.startswith("ours") or r.auc is None:
            continue
        ok = r.auc >= sk.auc - 0.005
        print(f"bar AUC >= sklearn - 0.005: {r.engine} ({r.where}) {r.auc:.4f} vs {sk.auc:.4f} "
              f"{'PASS' if ok else 'FAIL'}")
        if r.engine.startswith("ours dealer") and r.where == "grpc":
            total = r.seconds + (r.offline or 0.0)  # the epoch's tuples fetched from the dealer count too
            print(f"bar s/epoch <= 2 s: {r.engine}: {total:.3f} (online {r.seconds:.3f} + fetch {r.offline:.3f}) "
                  f"{'PASS' if total <= 2 else 'FAIL'}")
            if sf:
                print(f"bar s/epoch <= SecretFlow's {sf.seconds:.3f}: {r.engine}: {total:.3f} "
                      f"{'PASS' if total <= sf.seconds else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--sigmoid", default="minimax", choices=["minimax", "accurate", "linear"])
    parser.add_argument("--also-linear", action="store_true",
                        help="also ours with a dealer and the `linear` sigmoid (piecewise linear, as SecretFlow's t1)")
    parser.add_argument("--dealer-free-rows", type=int, default=2048,
                        help="rows of the dealer-free run (one epoch, scaled to 30,000 rows); 0: all rows")
    parser.add_argument("--dealer-free", nargs="+", choices=["ot", "he"], default=["ot"],
                        help="dealer-free sources to run: elementwise triples by OT (faster) or HE (ss_lr's default)")
    parser.add_argument("--skip-grpc", action="store_true")
    parser.add_argument("--skip-dealer-free", action="store_true")
    parser.add_argument("--spu", metavar="PYTHON", help="a Python with spu installed (e.g. /tmp/spuvenv/bin/python) "
                        "for the SPU row, if this one has none")
    parser.add_argument("--secretflow", metavar="PYTHON", help="a Python with secretflow 1.14 (see secretflow_lr.py)")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--spu-reference", action="store_true", help="internal: run the SPU reference, print JSON")
    args = parser.parse_args()
    if args.spu_reference:
        print(json.dumps(spu_reference(args)))
        return
    frames = load(args.data_dir)
    params = SSLRParams(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                        alpha=args.alpha, sigmoid=args.sigmoid, triples="dealer", seed=7)
    log(f"ss_lr benchmark: default_credit {len(frames['guest']):,} rows, {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.learning_rate}, alpha {args.alpha}, sigmoid {args.sigmoid}")
    rows = [sklearn_row(frames, args.alpha), spu_row(args)]
    if args.secretflow:
        rows.append(secretflow_row(args.secretflow, args))
    for where in ("sim",) if args.skip_grpc else ("sim", "grpc"):
        rows.append(ours(params, frames, where, f"ours dealer {args.sigmoid}"))
        if args.also_linear and args.sigmoid != "linear":
            rows.append(ours(params.model_copy(update={"sigmoid": "linear"}), frames, where, "ours dealer linear"))
        for source in () if args.skip_dealer_free else args.dealer_free:
            rows.append(dealer_free_row(params, frames, where, source, args.dealer_free_rows))
    reference = next((r for r in rows if r.engine.startswith("SecretFlow") and r.seconds), None) or \
        next((r for r in rows if r.engine.startswith("SPU") and r.seconds), None)
    for r in rows:
        if reference and r.engine.startswith("ours") and r.seconds:
            r.ratio = r.seconds / reference.seconds
    print_table(rows)
    print_bars(rows)


if __name__ == "__main__":
    main()
