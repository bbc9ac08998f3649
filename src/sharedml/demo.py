"""`sharedml demo`: a whole three-party job on the example data shipped in the package.

Three institutions — a bank, an insurer and a shop — each with its own catalog, run one job:
1. `secure_sum`: they hold 10, 15 and 20 (in a private one-row table each) and learn only 45.
2. `federated_stats`: each holds a third of the UCI default-of-credit-card clients (FATE's
   horizontal split); together they learn count/mean/std/min/max of every column, and nobody's
   own figures. The result is checked against pandas on the pooled rows, which only the demo
   can do — no party could.
The job and catalog files are written to the work directory, so `sharedml run` can replay them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import datasets
from .jobs.catalog import Catalog
from .jobs.runner import JobResult, LocalRunner
from .jobs.spec import load_job

PARTY_PARTS = {"bank": "guest", "insurer": "host_1", "shop": "host_2"}  # default_credit_homo's thirds
PRIVATE_VALUES = {"bank": 10, "insurer": 15, "shop": 20}

JOB_YAML = """\
job: demo
timeout: {timeout}
parties:
  bank:    {{role: member, data: {{wealth: wealth, credit: credit}}}}
  insurer: {{role: member, data: {{wealth: wealth, credit: credit}}}}
  shop:    {{role: member, data: {{wealth: wealth, credit: credit}}}}
tasks:
  total: {{component: secure_sum,      inputs: {{data: $wealth}}, params: {{columns: [value]}}}}
  stats: {{component: federated_stats, inputs: {{data: $credit}}, params: {{exclude: [id, y]}}}}
"""

CATALOG_YAML = """\
# {party}'s local catalog: names this party offers to jobs, and where the data lives on its machine.
datasets:
  wealth: {{path: wealth.csv, description: "the one private number this party holds"}}
  credit: {{path: {credit}, description: "this party's rows of the credit-card clients data"}}
"""


@dataclass
class DemoOutcome:
    result: JobResult
    job_path: Path
    catalog_paths: dict[str, Path]
    pooled: pd.DataFrame


def prepare(workdir: Path, timeout: float) -> tuple[Path, dict[str, Path]]:
    """Give each party its own files (its private value, its third of the example data, its catalog) and
    write the job file; return their paths."""
    catalogs = {}
    for party, part in PARTY_PARTS.items():
        party_dir = workdir / "parties" / party
        party_dir.mkdir(parents=True, exist_ok=True)
        (party_dir / "wealth.csv").write_text(f"value\n{PRIVATE_VALUES[party]}\n")
        credit = shutil.copyfile(datasets.path("default_credit_homo", part), party_dir / "credit.csv.gz")
        catalogs[party] = party_dir / "catalog.yaml"
        catalogs[party].write_text(CATALOG_YAML.format(party=party, credit=credit.name))
    job_path = workdir / "demo-job.yaml"
    job_path.write_text(JOB_YAML.format(timeout=timeout))
    return job_path, catalogs


def run_demo(workdir: Path, mode: str = "processes", timeout: float = 60.0) -> DemoOutcome:
    workdir = workdir.resolve()
    job_path, catalog_paths = prepare(workdir, timeout)
    spec = load_job(job_path)
    catalogs = {party: Catalog.load(path) for party, path in catalog_paths.items()}
    result = LocalRunner(workdir / "runs").run(spec, catalogs, mode=mode, spec_text=job_path.read_text())
    pooled = pd.concat([datasets.load("default_credit_homo", part) for part in PARTY_PARTS.values()],
                       ignore_index=True)
    return DemoOutcome(result, job_path, catalog_paths, pooled)


def plaintext_check(stats: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    """Relative difference between the secure statistics and pandas on the pooled rows."""
    columns = list(stats["column"])
    reference = pd.DataFrame({
        "count": pooled[columns].count().to_numpy(), "mean": pooled[columns].mean().to_numpy(),
        "std": pooled[columns].std().to_numpy(), "min": pooled[columns].min().to_numpy(),
        "max": pooled[columns].max().to_numpy(),
    })
    out = {}
    for name in reference.columns:
        ours = stats[name].to_numpy(dtype=np.float64)
        theirs = reference[name].to_numpy(dtype=np.float64)
        out[name] = [float(np.max(np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs))))]
    return pd.DataFrame(out)
