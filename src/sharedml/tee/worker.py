"""The enclave worker process: publish the quote, then run training jobs dropped into a work folder.

Why: this is what runs inside Gramine (see examples/tee/sharedml-enclave.manifest.template). The worker
talks to the outside only through files, all of them either public (the quote) or ciphertext (inputs,
releases, sealed models), so the folder can live on untrusted storage:

    <workdir>/quote.json              written at start: owners encrypt to it
    <workdir>/jobs/<name>.yaml        a training job (fields of `JobSpec`), dropped in by the operator
    <workdir>/out/<name>/<recipient>.release   model releases, one per recipient
    <workdir>/jobs/<name>.done | .failed       the job's outcome (the error text for .failed)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..jobs.yaml_errors import read_yaml
from .enclave import Enclave
from .errors import TeeError
from .storage import is_url
from .train import TrainJob, train


class JobSpec(BaseModel):
    """A training job file; relative dataset and model paths are relative to the job file."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(min_length=1)
    label: str
    recipients: list[str] = Field(min_length=1)
    algorithm: str = "xgboost"
    params: dict[str, Any] = Field(default_factory=dict)
    model_location: str | None = None


def load_job(path: Path) -> TrainJob:
    """Read and validate a job file; errors name the file, line and field."""
    document = read_yaml(path, TeeError)
    try:
        spec = JobSpec.model_validate(document.data)
    except ValidationError as exc:
        raise TeeError(document.explain(exc, JobSpec)) from None

    def resolve(location: str) -> str:
        return location if is_url(location) else str(path.parent / location)

    return TrainJob(datasets=[resolve(d) for d in spec.datasets], label=spec.label, recipients=spec.recipients,
                    algorithm=spec.algorithm, params=spec.params,
                    model_location=resolve(spec.model_location) if spec.model_location else None)


def run_job(enclave: Enclave, job_path: Path, out: Path) -> None:
    """Run one job file and record its outcome next to it."""
    try:
        result = train(enclave, load_job(job_path))
    except TeeError as exc:
        job_path.with_suffix(".failed").write_text(f"{exc}\n")
    else:
        folder = out / job_path.stem
        folder.mkdir(parents=True, exist_ok=True)
        for name, release in result.releases.items():
            (folder / f"{name}.release").write_bytes(release)
        job_path.with_suffix(".done").write_text(f"model {result.model_id.hex()}: {result.rows} rows\n")
    job_path.unlink()


def publish(enclave: Enclave, workdir: Path) -> None:
    """Write the started enclave's quote where owners fetch it, and create the job folder."""
    (workdir / "jobs").mkdir(parents=True, exist_ok=True)
    (workdir / "quote.json").write_text(enclave.quote.to_json() + "\n")


def run_jobs(enclave: Enclave, workdir: Path, stop: threading.Event, poll: float = 1.0) -> None:
    """Run the job files dropped into `workdir/jobs`, in name order, until `stop` is set."""
    while not stop.is_set():
        for job_path in sorted((workdir / "jobs").glob("*.yaml")):
            run_job(enclave, job_path, workdir / "out")
        stop.wait(poll)


def serve(enclave: Enclave, workdir: Path, stop: threading.Event, poll: float = 1.0) -> None:
    """Start the enclave, publish its quote, and run jobs until `stop` is set."""
    enclave.start()
    publish(enclave, workdir)
    run_jobs(enclave, workdir, stop, poll)
