"""A party's LOCAL dataset catalog: the names a job spec may use, mapped to files or SQL queries.

Besides tables, an entry may name a saved model part (`.msgpack`, an earlier job's `model` output):
a later job then scores new rows with it (`inputs: {model: $model}`), and each party still decides
which of its own model files it offers.

Job specs never carry paths, so the same spec runs unchanged at every party; each party resolves names
through its own catalog. Relative paths (and relative SQLite database files) are resolved against the
catalog file's folder, so a catalog means the same thing whatever directory the runtime starts in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from sharedml.jobs.contract import DataContract, declared_columns, prepare, require_columns
from sharedml.jobs.spec import SafeName
from sharedml.jobs.yaml_errors import YamlDocument, read_yaml
from sharedml.net.serialization import SerializationError, loads

FileFormat = Literal["csv", "parquet", "model"]
_SUFFIX_FORMATS: dict[str, FileFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                                           ".msgpack": "model"}
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # CSV compressions Arrow undoes by the file's suffix
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class DatasetError(ValueError):
    """A catalog that cannot be loaded, or a dataset that cannot be found or read."""


class DatasetEntry(DataContract):
    """One dataset: a CSV/Parquet ``path`` or a SQLAlchemy ``url`` plus ``query``, and its data contract."""

    path: NonEmpty | None = None
    format: FileFormat | None = None
    url: NonEmpty | None = None
    query: NonEmpty | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check_source(self) -> DatasetEntry:
        problem = self._source_problem()
        if problem is not None:
            field, message = problem
            error = PydanticCustomError("catalog_entry", "{reason}", {"reason": message})
            raise ValidationError.from_exception_data(
                type(self).__name__, [{"type": error, "loc": (field,) if field else (), "input": None}]
            )
        return self

    def _source_problem(self) -> tuple[str | None, str] | None:
        """(offending field or None for the whole entry, message), or None when the entry is usable."""
        if (self.path is None) == (self.url is None):
            return None, "give exactly one of 'path' (a CSV/Parquet file) or 'url' + 'query' (a SQL database)"
        if self.url is not None:
            if self.query is None:
                return "url", "a 'url' dataset needs a 'query'"
            if self.format is not None:
                return "format", "'format' applies to 'path' datasets only"
            try:
                make_url(self.url)
            except ArgumentError as exc:
                return "url", f"not a SQLAlchemy URL: {exc}"
            return None
        if self.query is not None:
            return "query", "'query' needs a 'url'; a 'path' dataset is read whole"
        if self.format is None and _implied_format(self.path or "") is None:
            return (
                "path",
                "cannot infer the file format from the suffix; add 'format: csv' or 'format: parquet'",
            )
        if self.file_format == "model" and declared_columns(self):
            return None, "a model entry takes no data contract (id_columns, label, ...): declare it on the data"
        return None

    @property
    def file_format(self) -> FileFormat:
        """Explicit ``format``, else the one implied by the path suffix (only for ``path`` entries)."""
        implied = _implied_format(self.path or "")
        assert self.format is not None or implied is not None, "checked by _source_problem"
        return self.format or implied


def _implied_format(path: str) -> FileFormat | None:
    """The format a file's suffix names: `.csv` (also compressed: `.csv.gz`, `.csv.zst`, ...), `.parquet`."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED and suffixes[-2] == ".csv":
        return "csv"
    return _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


class CatalogFile(BaseModel):
    """The catalog YAML document: a ``datasets`` mapping of name -> entry."""

    model_config = ConfigDict(extra="forbid", strict=True)

    datasets: dict[SafeName, DatasetEntry] = Field(default_factory=dict)


class Catalog:
    """Dataset names a party offers to jobs, and how to read each one."""

    def __init__(self, entries: dict[str, DatasetEntry], source: str, base_dir: Path) -> None:
        self.entries = dict(entries)
        self.source = source
        self.base_dir = Path(base_dir)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Load a catalog file; errors name the file, line and field path."""
        return cls._from_document(read_yaml(path, DatasetError), Path(path).resolve().parent)

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any], source: str, base_dir: Path) -> Catalog:
        """Build from an already-parsed catalog document (``{"datasets": {...}}``)."""
        return cls._from_document(YamlDocument(data=mapping, source=source), base_dir)

    @classmethod
    def _from_document(cls, document: YamlDocument, base_dir: Path) -> Catalog:
        try:
            parsed = CatalogFile.model_validate(document.data)
        except ValidationError as exc:
            raise DatasetError(document.explain(exc, CatalogFile)) from exc
        return cls(parsed.datasets, document.source, base_dir)

    def names(self) -> list[str]:
        """Dataset names in catalog order."""
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def entry(self, name: str) -> DatasetEntry:
        """The entry for ``name``; an unknown name lists what the catalog holds."""
        if name not in self.entries:
            held = ", ".join(self.entries) or "nothing"
            raise DatasetError(f"dataset '{name}' is not in catalog {self.source}; it holds: {held}")
        return self.entries[name]

    def resolve_path(self, name: str) -> Path:
        """Absolute location of a ``path`` dataset (relative paths are relative to the catalog)."""
        entry = self.entry(name)
        if entry.path is None:
            raise DatasetError(f"dataset '{name}' in catalog {self.source} is a SQL query, not a file")
        return self.base_dir / Path(entry.path).expanduser()

    def read(self, name: str, party: str | None = None) -> Any:
        """Read a dataset as its contract describes it (see contract.py), or a model entry's saved model part;
        every failure names the dataset (and `party`, when given), and a contract failure also the file and
        the column."""
        entry = self.entry(name)
        if entry.path is not None and entry.file_format == "model":
            return _read_model(self.resolve_path(name), f"{'party ' + repr(party) + ', ' if party else ''}"
                                                        f"model {name!r}")
        if entry.url is not None and entry.query is not None:
            table = self._read_sql(name, self._resolve_url(entry.url), entry.query)
            source = entry.url
        else:
            path = self.resolve_path(name)
            table = _read_file(path, entry.file_format, f"dataset '{name}'")
            source = str(path)
        where = f"{'party ' + repr(party) + ', ' if party else ''}dataset {name!r} ({source})"
        return prepare(table, entry, where)

    def check_columns(self, name: str, party: str) -> None:
        """The columns a file dataset's contract declares are in its header (read without the rows, so a
        node can check at approval); a SQL dataset is checked when a task reads it."""
        entry = self.entry(name)
        declared = declared_columns(entry)
        if entry.path is None or not declared:
            return
        path = self.resolve_path(name)
        try:
            if entry.file_format == "csv":
                with pa_csv.open_csv(path) as reader:
                    columns = reader.schema.names
            else:
                columns = pq.read_schema(path).names
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DatasetError(f"party {party!r}, dataset {name!r}: cannot read {path}: {exc}") from exc
        require_columns(columns, declared, f"party {party!r}, dataset {name!r} ({path})")

    def _resolve_url(self, url: str) -> URL:
        """Anchor a relative SQLite database file at the catalog folder, like file paths."""
        parsed = make_url(url)
        database = _sqlite_file(parsed)
        if database is None:
            return parsed
        return parsed.set(database=str(self.base_dir / Path(database).expanduser()))

    @staticmethod
    def _read_sql(name: str, url: URL, query: str) -> pd.DataFrame:
        shown = url.render_as_string(hide_password=True)
        database = _sqlite_file(url)
        if database is not None and not Path(database).is_file():
            # Connecting would silently create an empty database file instead of failing.
            raise DatasetError(f"dataset '{name}': database file not found: {database}")
        try:
            engine = sqlalchemy.create_engine(url)
        except (SQLAlchemyError, ImportError) as exc:
            raise DatasetError(f"dataset '{name}': cannot open database {shown}: {exc}") from exc
        try:
            return pd.read_sql_query(sqlalchemy.text(query), engine)
        except (SQLAlchemyError, pd.errors.DatabaseError, ImportError) as exc:
            raise DatasetError(f"dataset '{name}': query failed on {shown}: {exc}") from exc
        finally:
            engine.dispose()


def _sqlite_file(url: URL) -> str | None:
    """The database file of a SQLite URL; None for other backends, in-memory and ``file:`` URI databases."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else database


def _read_file(path: Path, file_format: FileFormat, what: str) -> pd.DataFrame:
    if not path.exists():
        raise DatasetError(f"{what}: file not found: {path}")
    try:
        if file_format == "csv":
            return pa_csv.read_csv(path).to_pandas()
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{what}: cannot read {file_format} file {path}: {exc}") from exc


def _read_model(path: Path, what: str) -> Any:
    if not path.exists():
        raise DatasetError(f"{what}: file not found: {path}")
    try:
        return loads(path.read_bytes())
    except (SerializationError, OSError) as exc:
        raise DatasetError(f"{what}: {path} is not a saved model part: {exc}") from exc


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file (e.g. one written by :func:`write_table_atomic`)."""
    return _read_file(Path(path), "parquet", "table")
