"""Each party's task outputs on its own disk: `<root>/<job id>/<party>/<task>/`.

Tables are Parquet; an output named `report` (evaluate's, or any component's record for people) is
JSON, so any tool can read it; everything else (models, small results) uses the project's safe
serialization; metrics are JSON. A task directory counts as complete only once its `_SUCCESS`
marker exists, written last; a failed task gets `_FAILED` with the error instead, so a partial
output can never be mistaken for a finished one.

Outputs can be private even when they are "only" intermediate (a PSI's row positions, the quantiles
of a host's features inside its model part), so everything the project writes is readable by its
owner only: files 0600 in folders 0700, whatever the caller's umask. Every write is also durable
(file and folder fsynced) before it counts, so a crash cannot leave a `_SUCCESS` over lost data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..net.serialization import dumps_bytes, loads
from ..private_files import make_private_dirs, write_atomic, write_bytes_atomic
from .catalog import read_table

SUCCESS = "_SUCCESS"
FAILED = "_FAILED"


class ArtifactError(RuntimeError):
    """An upstream output is missing or incomplete."""


def write_table_atomic(df: pd.DataFrame, path: Path) -> None:
    """A table as Parquet, written straight into the temporary file (no copy of it in memory)."""
    write_atomic(Path(path), lambda handle: pq.write_table(pa.Table.from_pandas(df), handle))


OUTPUT_SUFFIXES = (".parquet", ".json", ".msgpack")


JSON_OUTPUTS = ("report",)


def _json(name: str, value: Any) -> str:
    """`value` as JSON text (an ROC curve's first threshold, +inf, is written `Infinity`, as Python and pandas
    read it); a component whose report is not plain data has a bug."""
    try:
        return json.dumps(value, indent=1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"output {name!r} must be plain JSON (dicts, lists, str, numbers): {err}") from err


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
        return make_private_dirs(path)

    def save(self, task: str, outputs: dict[str, Any], metrics: list[dict[str, Any]],
             traffic: dict[str, dict[str, int]]) -> dict[str, Path]:
        """Write every output, then metrics, then the success marker; returns output paths.

        Each write is fsynced with its folder, so the marker can only exist on disk after everything it vouches for.
        """
        path = self.task_dir(task)
        written: dict[str, Path] = {}
        for name, value in outputs.items():
            if isinstance(value, pd.DataFrame):
                target = path / f"{name}.parquet"
                write_table_atomic(value, target)
            elif name in JSON_OUTPUTS:
                target = path / f"{name}.json"
                write_bytes_atomic(target, _json(name, value).encode())
            else:
                target = path / f"{name}.msgpack"
                write_bytes_atomic(target, dumps_bytes(value))
            written[name] = target
        summary = {"metrics": metrics, "traffic": traffic}
        write_bytes_atomic(path / "metrics.json", json.dumps(summary, indent=2, default=str).encode())
        write_bytes_atomic(path / SUCCESS, b"")
        return written

    def fail(self, task: str, error: str) -> None:
        path = make_private_dirs(self.task_dir(task))
        (path / SUCCESS).unlink(missing_ok=True)
        write_bytes_atomic(path / FAILED, error.encode())

    def load(self, task: str, output: str) -> Any:
        path = self.task_dir(task)
        if not (path / SUCCESS).exists():
            raise ArtifactError(f"task {task!r} has no complete outputs in {path}")
        for candidate, reader in ((path / f"{output}.parquet", read_table),
                                  (path / f"{output}.json", lambda p: json.loads(p.read_bytes())),
                                  (path / f"{output}.msgpack", lambda p: loads(p.read_bytes()))):
            if candidate.exists():
                return reader(candidate)
        produced = sorted(p.stem for p in path.iterdir() if p.suffix in OUTPUT_SUFFIXES)
        raise ArtifactError(f"task {task!r} produced no output {output!r}; it produced: {', '.join(produced)}")
