"""What a finished job left for people to read, task by task and party by party: its state, the metrics
the component logged, its `report` (JSON) and a feature-importance table, from the job store and the
parties' artifact folders on this machine. `sharedml show` prints it and `sharedml report` draws it.

Only files that exist are read: a party sees its own outputs (a deployment's node keeps its own), and
the local runner's work folder holds every party's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import SUCCESS, PartyArtifacts
from .spec import JobSpecError, parse_job
from .store import JobRecord, JobStore


@dataclass
class TaskResult:
    task: str
    party: str
    state: str
    error: str | None
    seconds: float | None
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {name, value, step} as logged
    report: dict[str, Any] | None = None
    importance: pd.DataFrame | None = None

    def scalars(self) -> dict[str, Any]:
        """The last value of every metric logged without a step (a task's final figures)."""
        return {r["name"]: r["value"] for r in self.metrics if r.get("step") is None}

    def numbers(self) -> dict[str, Any]:
        """What a page shows as a task's figures: its scalars and the report's top-level numbers and words."""
        return {**self.scalars(),
                **{k: v for k, v in (self.report or {}).items() if isinstance(v, int | float | str)}}


class JobNotFound(LookupError):
    pass


def collect(workdir: Path, store: JobStore, job_id: str) -> tuple[JobRecord, list[TaskResult]]:
    """The job's record and one TaskResult per (task, party), in the job's task order (then the store's)."""
    job = store.job(job_id)
    if job is None:
        known = ", ".join(j.id for j in store.jobs(5)) or "none"
        raise JobNotFound(f"no job {job_id!r} in {workdir}; latest: {known}")
    results = []
    for record in store.tasks(job_id):
        seconds = None
        if record.started_at and record.finished_at:
            seconds = (record.finished_at - record.started_at).total_seconds()
        result = TaskResult(record.task, record.party, record.state, record.error, seconds)
        folder = PartyArtifacts(workdir, job_id, record.party).task_dir(record.task)
        if (folder / SUCCESS).exists():
            _read_outputs(folder, result)
        results.append(result)
    return job, sorted(results, key=_task_order(job))


def _task_order(job: JobRecord) -> Callable[[TaskResult], int]:
    try:
        order = {task: i for i, task in enumerate(parse_job(job.spec).topological_order())}
    except JobSpecError:  # a spec that no longer parses keeps the store's order
        order = {}
    return lambda result: order.get(result.task, len(order))


def _read_outputs(folder: Path, result: TaskResult) -> None:
    metrics = folder / "metrics.json"
    if metrics.exists():
        result.metrics = json.loads(metrics.read_bytes())["metrics"]
    report = folder / "report.json"
    if report.exists():
        result.report = json.loads(report.read_bytes())
    importance = folder / "importance.parquet"
    if importance.exists():
        result.importance = pd.read_parquet(importance)
