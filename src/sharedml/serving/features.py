"""Where a party reads its own features for a sample id at prediction time: pluggable feature sources.

Why: online prediction gets ids, not rows; each party looks its rows up locally, so features never travel.
`SnapshotSource` indexes a CSV/Parquet snapshot in memory (microseconds per lookup); `SqlSource` asks a
database through SQLAlchemy on every request (the rows stay fresh, at a query's cost). Both return a float
matrix in the model's column order, with a row of NaN and the position listed for every unknown id, so one
unknown id fails only the request that carried it, not a whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..jobs.catalog import Catalog, DatasetError
from .errors import ServeConfigError

SampleId = int | str


class FeatureSource(Protocol):
    """A party's rows by sample id."""

    blocking: bool  # True when a lookup waits on I/O (keep it off an event loop)

    def rows(self, ids: Sequence[SampleId], columns: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """(len(ids) x len(columns) float64 matrix, positions of ids the source does not hold)."""
        ...


def _key(sample_id: object) -> str:
    """Ids compare as text, so 133 in a JSON request finds 133 read from a CSV (and '133' does too)."""
    return str(sample_id)


class SnapshotSource:
    """A table read once (CSV, Parquet, or any catalog entry) and indexed by its id column in memory."""

    blocking = False

    def __init__(self, table: pd.DataFrame, id_column: str, what: str) -> None:
        if id_column not in table.columns:
            raise ServeConfigError(f"feature source {what}: id column {id_column!r} not found; columns are: "
                                   f"{', '.join(map(str, table.columns))}; set `id_column`")
        keys = [_key(v) for v in table[id_column].tolist()]
        self._index = {key: i for i, key in enumerate(keys)}
        if len(self._index) != len(keys):
            seen: set[str] = set()
            duplicate = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise ServeConfigError(f"feature source {what}: id {duplicate!r} appears more than once in column "
                                   f"{id_column!r}; a snapshot needs one row per id")
        self._table, self._what = table, what
        self._matrices: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def from_file(cls, path: Path, id_column: str, file_format: str | None = None) -> SnapshotSource:
        """Read with the catalog's reader, so values parse exactly as they did for the training job."""
        entry = {"path": str(path), **({"format": file_format} if file_format else {})}
        try:
            table = Catalog.from_mapping({"datasets": {"features": entry}}, str(path), path.parent).read("features")
        except DatasetError as exc:
            raise ServeConfigError(f"feature source {path}: {exc}") from exc
        return cls(table, id_column, str(path))

    def _matrix(self, columns: Sequence[str]) -> np.ndarray:
        key = tuple(columns)
        if key not in self._matrices:
            missing = [c for c in columns if c not in self._table.columns]
            if missing:
                raise ServeConfigError(f"feature source {self._what} lacks the model's column(s) {missing}")
            self._matrices[key] = self._table[list(columns)].to_numpy(dtype=np.float64)
        return self._matrices[key]

    def rows(self, ids: Sequence[SampleId], columns: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        matrix = self._matrix(columns)
        positions = [self._index.get(_key(i), -1) for i in ids]
        unknown = [p for p, row in enumerate(positions) if row < 0]
        out = matrix[np.asarray(positions, dtype=np.int64)] if positions else np.empty((0, len(columns)))
        if unknown:
            out[unknown] = np.nan
        return out, unknown


class SqlSource:
    """Rows fetched per request from a table of a SQLAlchemy database: `SELECT cols WHERE id IN (...)`.

    Put the driver's connect/statement timeout in the URL (e.g. `?connect_timeout=2` for PostgreSQL)."""

    blocking = True

    def __init__(self, url: str, table: str, id_column: str) -> None:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        self._what = f"{shown} table {table!r}"
        try:
            self._engine = sa.create_engine(url, pool_pre_ping=True)
            self._table = sa.Table(table, sa.MetaData(), autoload_with=self._engine)
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise ServeConfigError(f"feature source {self._what}: cannot open it: {exc}") from exc
        if id_column not in self._table.c:
            raise ServeConfigError(f"feature source {self._what}: id column {id_column!r} not found; columns are: "
                                   f"{', '.join(self._table.c.keys())}; set `id_column`")
        self._id = self._table.c[id_column]
        self._numeric_ids = self._python_type(self._id) is int

    @staticmethod
    def _python_type(column: sa.Column) -> type | None:
        try:
            return column.type.python_type
        except NotImplementedError:
            return None

    def _bind(self, sample_id: SampleId) -> SampleId | None:
        if not self._numeric_ids:
            return str(sample_id)
        try:
            return int(sample_id)
        except (TypeError, ValueError):
            return None  # cannot match an integer id column: reported as unknown

    def rows(self, ids: Sequence[SampleId], columns: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        missing = [c for c in columns if c not in self._table.c]
        if missing:
            raise ServeConfigError(f"feature source {self._what} lacks the model's column(s) {missing}")
        bound = [b for b in (self._bind(i) for i in ids) if b is not None]
        query = sa.select(self._id, *[self._table.c[c] for c in columns]).where(
            self._id.in_(sa.bindparam("ids", expanding=True)))
        with self._engine.connect() as connection:
            fetched = {_key(row[0]): row[1:] for row in connection.execute(query, {"ids": bound})} if bound else {}
        out = np.full((len(ids), len(columns)), np.nan)
        unknown = []
        for position, sample_id in enumerate(ids):
            row = fetched.get(_key(sample_id))
            if row is None:
                unknown.append(position)
            else:
                out[position] = [np.nan if v is None else float(v) for v in row]
        return out, unknown

    def close(self) -> None:
        self._engine.dispose()
