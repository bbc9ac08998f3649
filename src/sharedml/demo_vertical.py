"""The vertical half of `sharedml demo`: a bank (labels and its own columns) and an insurer (other
columns of partly the same clients) align their rows by PSI, rank every column by information value
(binning on encrypted labels), train SecureBoost, score, and evaluate.

The bank holds the first `rows` clients of FATE's default-of-credit-card guest file, the insurer
the last `rows` of the host file, so only the middle overlap is shared: PSI finds it without either
side showing the other any client outside it. The demo alone (never a party) then trains xgboost on
the joined plaintext with the same bins and parameters, to print its AUC beside ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import datasets
from .jobs.catalog import Catalog
from .jobs.runner import JobResult, LocalRunner
from .jobs.spec import load_job
from .ml.metrics import roc_auc
from .ml.preprocess import QuantileBinner

PARTS = {"bank": "guest", "insurer": "host"}  # their parts of default_credit_hetero

JOB_YAML = """\
job: demo-vertical
timeout: {timeout}
parties:
  bank:    {{role: guest, data: {{clients: clients}}}}
  insurer: {{role: host,  data: {{clients: clients}}}}
tasks:
  align: {{component: psi, inputs: {{data: $clients}}}}
  bins:  {{component: hetero_binning, inputs: {{data: align.data}}, params: {{bins: 10}}}}
  boost: {{component: hetero_secureboost, inputs: {{train: align.data}},
          params: {{n_estimators: {trees}, max_depth: {depth}, max_bin: 32, learning_rate: 0.3}}}}
  score: {{component: hetero_secureboost_predict, inputs: {{model: boost.model, data: align.data}}}}
  report: {{component: evaluate, inputs: {{predictions: score.predictions}}, parties: [bank]}}
"""

CATALOG_YAML = """\
# {party}'s local catalog: the names this party offers to jobs, and where the data lives on its machine.
datasets:
  clients: {{path: clients.csv, description: "this party's columns of its credit-card clients"}}
"""


@dataclass
class VerticalOutcome:
    result: JobResult
    job_path: Path
    catalog_paths: dict[str, Path]
    shared: int  # clients both parties hold (what PSI should find)
    auc: float  # SecureBoost's, at the bank, on the aligned rows
    reference_auc: float  # xgboost (or the plaintext reference) on the joined plaintext
    reference: str


def run_vertical(workdir: Path, mode: str, timeout: float, rows: int, trees: int, depth: int) -> VerticalOutcome:
    frames = {party: datasets.load("default_credit_hetero", part) for party, part in PARTS.items()}
    total = len(frames["bank"])
    rows = min(rows, total)
    frames["bank"] = frames["bank"].iloc[:rows]
    frames["insurer"] = frames["insurer"].iloc[total - rows:]
    catalog_paths = {}
    for party, frame in frames.items():
        folder = workdir / "parties" / party
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / "clients.csv", index=False)
        catalog_paths[party] = folder / "catalog.yaml"
        catalog_paths[party].write_text(CATALOG_YAML.format(party=party))
    job_path = workdir / "demo-vertical-job.yaml"
    job_path.write_text(JOB_YAML.format(timeout=timeout, trees=trees, depth=depth))
    catalogs = {party: Catalog.load(path) for party, path in catalog_paths.items()}
    result = LocalRunner(workdir / "runs").run(load_job(job_path), catalogs, mode=mode,
                                               spec_text=job_path.read_text())
    shared = len(set(frames["bank"]["id"]) & set(frames["insurer"]["id"]))
    if result.state != "succeeded":
        return VerticalOutcome(result, job_path, catalog_paths, shared, float("nan"), float("nan"), "")
    scored = result.output("bank", "score", "predictions")
    reference_auc, reference = plaintext_reference(frames, trees, depth)
    return VerticalOutcome(result, job_path, catalog_paths, shared, roc_auc(scored["y"], scored["score"]),
                           reference_auc, reference)


def plaintext_reference(frames: dict[str, pd.DataFrame], trees: int, depth: int) -> tuple[float, str]:
    """AUC of xgboost on the joined plaintext, binned per party as the parties bin (what no party can do)."""
    bank = frames["bank"].rename(columns=lambda c: c if c in ("id", "y") else f"bank_{c}")
    insurer = frames["insurer"].rename(columns=lambda c: c if c == "id" else f"insurer_{c}")
    joined = bank.merge(insurer, on="id")
    blocks = [joined[[c for c in joined.columns if c.startswith(f"{party}_")]] for party in ("bank", "insurer")]
    codes = np.hstack([QuantileBinner(32).fit_transform(b.to_numpy(np.float64)) for b in blocks])
    y = joined["y"].to_numpy(np.float64)
    try:
        import xgboost as xgb
    except ImportError:
        from .ml.tree import BoostParams, PlainBoost
        model = PlainBoost(BoostParams(n_estimators=trees, max_depth=depth, max_bin=32)).fit(codes, y)
        return roc_auc(y, model.predict_proba(codes)), "plaintext reference (xgboost not installed)"
    threads = int(os.environ.get("SHAREDML_DEMO_THREADS", "1"))
    booster = xgb.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth, "eta": 0.3,
                         "max_bin": 33, "nthread": threads}, xgb.DMatrix(codes.astype(np.float32), label=y), trees)
    return roc_auc(y, booster.predict(xgb.DMatrix(codes.astype(np.float32)))), "xgboost on the joined plaintext"
