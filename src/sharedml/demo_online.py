"""The demo's third part: the SecureBoost model the vertical job trained answers online.

Why in the demo: it shows the whole path a user takes after training (each party serves its own part
of the model from its own feature file, the guest asks the host once per request over mutual TLS) and
checks it on the spot: online scores must equal the batch job's, bit for bit.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .jobs.runner import JobResult
from .serving import Client
from .serving.loopback import LocalCluster

MODEL = "credit"


@dataclass
class OnlineOutcome:
    ids: list[int]
    equal: int  # online scores equal to the batch job's, of len(ids)
    single_ms: float  # median latency of a one-id request, client to answer
    batch_ms: float  # latency of one request carrying every id


def run_online(workdir: Path, result: JobResult, features: dict[str, Path], count: int = 100) -> OnlineOutcome:
    """Start a host (insurer) and a guest (bank) replica on the job's model parts, ask for `count` ids."""
    part = {"artifacts": str(result.workdir), "job": result.job_id, "task": "boost"}
    models = [{"name": MODEL, "version": 1, "part": part}]
    batch = result.output("bank", "score", "predictions").set_index("id")["score"]
    ids = [int(i) for i in batch.index[:count]]
    with LocalCluster(workdir, ["bank", "insurer"]) as cluster:
        host = cluster.start("insurer-1", {"role": "host", "party": "insurer", "guest": "bank", "models": models,
                                           "features": {"path": str(features["insurer"])}})
        guest = cluster.start("bank-1", {"role": "guest", "party": "bank", "hosts": {"insurer": [host.url]},
                                         "models": models, "features": {"path": str(features["bank"])}})
        with Client(cluster.tls(), "bank", [guest.url], timeout=10.0) as client:
            client.predict(id=ids[0], model=MODEL)  # the first request opens the connections (TLS handshakes)
            began = time.perf_counter()
            together = client.predict(ids=ids, model=MODEL)["predictions"]
            batch_ms = 1000 * (time.perf_counter() - began)
            single = []
            for sample_id in ids:
                began = time.perf_counter()
                client.predict(id=sample_id, model=MODEL)
                single.append(1000 * (time.perf_counter() - began))
    equal = sum(p["score"] == float(batch.loc[p["id"]]) for p in together)
    return OnlineOutcome(ids, equal, statistics.median(single), batch_ms)
