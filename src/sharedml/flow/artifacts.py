"""Each party's task outputs on its own disk: `<root>/<job id>/<party>/<task>/`.

Tables are Parquet, everything else (models, small results) uses the project's safe
serialization, metrics are JSON. A task directory counts as complete only once its `_SUCCESS`
marker exists, written last; a failed task gets `_FAILED` with the error instead, so a partial
output can never be mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..net.serialization import dumps_bytes, loads
from .catalog import read_table, write_table_atomic

SUCCESS = "_SUCCESS"
FAILED = "_FAILED"


class ArtifactError(RuntimeError):
    """An upstream output is missing or incomplete."""


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class PartyArtifacts:
    """Outputs of one party in one job."""

    def __init__(self, root: Path, job_id: str, party: str) -> None:
        self.dir = root / job_id / party

    def task_dir(self, task: str) -> Path:
        return self.dir / task

    def begin(self, task: str) -> Path:
        """Start a task afresh: earlier (partial) outputs of the same task are removed."""
        path = self.task_dir(task)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def save(self, task: str, outputs: dict[str, Any], metrics: list[dict[str, Any]],
             traffic: dict[str, dict[str, int]]) -> dict[str, Path]:
        """Write every output, then metrics, then the success marker; returns output paths."""
        path = self.task_dir(task)
        written: dict[str, Path] = {}
        for name, value in outputs.items():
            if isinstance(value, pd.DataFrame):
                target = path / f"{name}.parquet"
                write_table_atomic(value, target)
            else:
                target = path / f"{name}.msgpack"
                write_bytes_atomic(target, dumps_bytes(value))
            written[name] = target
        summary = {"metrics": metrics, "traffic": traffic}
        write_bytes_atomic(path / "metrics.json", json.dumps(summary, indent=2, default=str).encode())
        write_bytes_atomic(path / SUCCESS, b"")
        return written

    def fail(self, task: str, error: str) -> None:
        path = self.task_dir(task)
        path.mkdir(parents=True, exist_ok=True)
        (path / SUCCESS).unlink(missing_ok=True)
        write_bytes_atomic(path / FAILED, error.encode())

    def load(self, task: str, output: str) -> Any:
        path = self.task_dir(task)
        if not (path / SUCCESS).exists():
            raise ArtifactError(f"task {task!r} has no complete outputs in {path}")
        for candidate, reader in ((path / f"{output}.parquet", read_table),
                                  (path / f"{output}.msgpack", lambda p: loads(p.read_bytes()))):
            if candidate.exists():
                return reader(candidate)
        produced = sorted(p.stem for p in path.iterdir() if p.suffix in (".parquet", ".msgpack"))
        raise ArtifactError(f"task {task!r} produced no output {output!r}; it produced: {', '.join(produced)}")
