"""A federation of parties and the tables they bring, for the Python API.

Why a thin layer: a model trained from Python must be the same job, run by the same engine, as one written
in YAML, so nothing here computes. `Federation` keeps each party's catalog entries (the paths of its
tables, with their data contract: ID columns and label) and runs `JobSpec`s with the job engine; the
estimators (`estimators.py`) only build those specs. A table given as a DataFrame is written, private, to
its party's own folder first, as a party would keep its own file.

`Federation.local` runs every party on this machine: as threads (in-memory messages, the quickest) or as
one OS process per party talking gRPC with mutual TLS over loopback (the path a deployment takes).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..jobs.artifacts import write_table_atomic
from ..jobs.catalog import Catalog
from ..jobs.runner import MODES, JobResult, LocalRunner
from ..jobs.spec import JobSpec
from ..private_files import make_private_dirs

ROLES = ("guest", "host", "arbiter", "dealer", "client", "aggregator")
DATA_ROLES = ("guest", "host", "client")  # roles whose party brings a table
DEFAULT_TIMEOUT = 3600.0  # seconds a job may wait on any one peer's message


class JobFailed(RuntimeError):
    """A job the API ran did not succeed; the message is the failing party's root cause."""

    def __init__(self, result: JobResult) -> None:
        super().__init__(f"job {result.job_id} {result.state}: {result.error}")
        self.result = result


Table = str | Path | pd.DataFrame


@dataclass(frozen=True)
class FederatedData:
    """Tables of several parties that a job reads as one input: `vertical` (the same people, different
    columns, the label at the guest) or `horizontal` (different people, the same columns and the label)."""

    federation: Federation
    kind: str  # vertical | horizontal
    entries: dict[str, dict[str, Any]]  # party -> its catalog entry for this data (path and contract)
    id_columns: tuple[str, ...]
    label: str | None

    @property
    def parties(self) -> list[str]:
        return list(self.entries)


@dataclass
class Federation:
    """The parties of a federation, their roles, and where their files and the job database live."""

    roles: dict[str, str]
    mode: str = "threads"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sharedml-")))
    timeout: float = DEFAULT_TIMEOUT
    _names: itertools.count = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        unknown = {p: r for p, r in self.roles.items() if r not in ROLES}
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; a party's role is one of {', '.join(ROLES)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        self.workdir = make_private_dirs(Path(self.workdir).resolve())
        self.runner = LocalRunner(self.workdir / "runs")

    @classmethod
    def local(cls, roles: Mapping[str, str], mode: str = "threads", workdir: str | Path | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> Federation:
        """Every party on this machine: `roles` maps party names to roles (guest, host, client, aggregator,
        arbiter, dealer); `mode` "threads" or "processes"; `workdir` keeps files and runs (default: a new
        private temporary folder)."""
        extra = {} if workdir is None else {"workdir": Path(workdir)}
        return cls(dict(roles), mode, timeout=timeout, **extra)

    def vertical(self, tables: Mapping[str, Table], id_columns: str | list[str] = "id",
                 label: str = "y") -> FederatedData:
        """Each party's columns of the same people (a PSI aligns them first); the guest's table holds `label`."""
        guests = [p for p in tables if self.roles.get(p) == "guest"]
        if len(guests) != 1:
            raise ValueError(f"vertical data needs exactly one party with role 'guest' (the label holder) among "
                             f"{', '.join(tables)}; roles: {self.roles}")
        return self._data("vertical", tables, _columns(id_columns), label, label_at=guests)

    def horizontal(self, tables: Mapping[str, Table], id_columns: str | list[str] = "id",
                   label: str | None = "y") -> FederatedData:
        """Each party's own rows with the same columns (the label too, when training)."""
        return self._data("horizontal", tables, _columns(id_columns), label, label_at=list(tables))

    def _data(self, kind: str, tables: Mapping[str, Table], id_columns: tuple[str, ...], label: str | None,
              label_at: list[str]) -> FederatedData:
        if not tables:
            raise ValueError("no tables: give {party: file or DataFrame}")
        strangers = [p for p in tables if p not in self.roles]
        if strangers:
            raise ValueError(f"party(ies) {strangers} are not in this federation ({', '.join(self.roles)})")
        without = [p for p in tables if self.roles[p] not in DATA_ROLES]
        if without:
            raise ValueError(f"party(ies) {without} have a role that holds no data ({self.roles}); data belongs to "
                             f"parties with role {', '.join(DATA_ROLES)}")
        name = f"data_{next(self._names)}"
        entries = {}
        for party, table in tables.items():
            entry: dict[str, Any] = {"path": str(self._store(party, name, table)), "id_columns": list(id_columns)}
            if label is not None and party in label_at:
                entry["label"] = label
            entries[party] = entry
        return FederatedData(self, kind, entries, id_columns, label)

    def _store(self, party: str, name: str, table: Table) -> Path:
        """A file path as given (resolved), or a DataFrame written to the party's private folder."""
        if isinstance(table, pd.DataFrame):
            path = make_private_dirs(self.workdir / "parties" / party) / f"{name}.parquet"
            write_table_atomic(table, path)
            return path
        path = Path(table).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"party {party!r}: no file {path}")
        return path

    def run(self, spec: JobSpec, entries: Mapping[str, Mapping[str, dict[str, Any]]]) -> JobResult:
        """Run `spec` with each party's catalog made of `entries` ({party: {dataset name: entry}}); a job that
        does not succeed raises JobFailed with its root cause."""
        catalogs = {party: Catalog.from_mapping({"datasets": dict(entries.get(party, {}))}, party, self.workdir)
                    for party in spec.parties}
        result = self.runner.run(spec, catalogs, mode=self.mode, spec_text=spec.to_yaml())
        if result.state != "succeeded":
            raise JobFailed(result)
        return result


def _columns(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)
