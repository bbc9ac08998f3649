"""`sharedml demo --board`: the board on a whole deployment on this machine, for a newcomer to look at.

A federation CA, two nodes (a bank with the labels, an insurer with more columns of the same clients) and a
coordinator with its board, each its own OS process over mutual TLS exactly as across institutions; then
two vertical jobs built from the board's own job forms and submitted through the API (SecureBoost and logistic
regression on the breast-cancer example data). The accounts get a fresh random password, printed once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import datasets
from .board.pipelines import PIPELINES
from .deploy.loopback import Deployment

USERS = {"bank-analyst": ("operator", "bank"), "insurer-analyst": ("operator", "insurer"),
         "auditor": ("viewer", None)}
JOBS = {"vertical-secureboost": {"boost": {"n_estimators": 5, "max_depth": 3}},
        "vertical-lr": {"train": {"epochs": 5}}}


@dataclass
class BoardDemo:
    deployment: Deployment
    password: str
    job_ids: list[str]

    @property
    def url(self) -> str:
        return f"{self.deployment.url}/ui/jobs"


def start_board_demo(workdir: Path, port: int | None = None) -> BoardDemo:
    """Start the deployment under `workdir` and submit the demo's jobs (they run on in the background)."""
    policy = {"peers": ["*"], "components": ["*"]}
    nodes = {"bank": {"datasets": {"clients": datasets.path("breast_hetero", "guest")},
                      "policy": {"datasets": {"clients": policy}}},
             "insurer": {"datasets": {"clients": datasets.path("breast_hetero", "host")},
                         "policy": {"datasets": {"clients": policy}}}}
    password = secrets.token_urlsafe(12)
    deployment = Deployment(Path(workdir), nodes, board_users=USERS, board_password=password,
                            coordinator_port=port).start()
    job_ids = []
    try:
        for name, params in JOBS.items():
            pipeline = PIPELINES[name]
            form = {f"param.{task}.{key}": str(value) for task, values in params.items()
                    for key, value in values.items()}
            document = pipeline.document(name, {"guest": ("bank", "clients"), "host": ("insurer", "clients")}, form)
            job_ids.append(deployment.client.submit(yaml.safe_dump(document, sort_keys=False)))
    except BaseException:
        deployment.stop()
        raise
    return BoardDemo(deployment, password, job_ids)
