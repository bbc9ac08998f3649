"""Owners' tables inside the enclave: parsed straight from decrypted chunks, then joined on their ids.

Why: the plaintext of a dataset never exists as one byte string in enclave memory. `ChunkStream` feeds
pandas' CSV parser one decrypted chunk at a time, so decryption adds one chunk (default 1 MiB) to the
memory that parsing needs anyway; the parsed columns are what training needs. A gzip-compressed CSV (an
owner's `.csv.gz`) is recognised by its first bytes and decompressed on the way, chunk by chunk too, and
refused if it expands beyond what an honest CSV does (a decompression bomb).

Joined columns are named `<dataset id>.<column>` (owners' column names may collide); rows are the inner
join on each owner's id column, in the order of the first table, under the key column `_id`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from .errors import TrainingError

KEY = "_id"
GZIP_MAGIC = b"\x1f\x8b"
MAX_INFLATION = 200  # CSV compresses 3-20x, very regular columns ~100x; a gzip bomb ~1000x
INFLATION_SLACK = 64 << 20  # bytes: small files may expand more without being a threat


class ChunkStream(io.RawIOBase):
    """A read-only binary stream over an iterator of byte chunks; `consumed` counts the bytes read so far."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._current = memoryview(chunk)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        self.consumed += size
        return size


class BoundedInflation(io.RawIOBase):
    """Decompressed bytes of a gzip stream, refused once they outgrow what the compressed bytes read so far
    could honestly hold (MAX_INFLATION times, plus INFLATION_SLACK): a gzip bomb stops the training with a
    clear error instead of filling the enclave's memory."""

    def __init__(self, inflated: io.BufferedIOBase, source: ChunkStream, dataset_id: str) -> None:
        self._inflated, self._source, self._dataset_id = inflated, source, dataset_id
        self._produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = self._inflated.readinto(buffer)
        self._produced += size
        if self._produced > MAX_INFLATION * self._source.consumed + INFLATION_SLACK:
            raise TrainingError(f"dataset {self._dataset_id!r}: the gzip file expands more than {MAX_INFLATION} "
                                "times its size; refused as a decompression bomb (send it uncompressed)")
        return size


@dataclass(frozen=True)
class OwnerTable:
    """One owner's parsed table and the id column its policy names."""

    dataset_id: str
    id_column: str
    frame: pd.DataFrame


def read_csv_chunks(chunks: Iterator[bytes], dataset_id: str, id_column: str) -> OwnerTable:
    """Parse a CSV (plain or gzip-compressed) arriving as decrypted chunks."""
    source = ChunkStream(chunks)
    stream: io.BufferedIOBase = io.BufferedReader(source, buffer_size=1 << 20)
    if stream.peek(len(GZIP_MAGIC)).startswith(GZIP_MAGIC):
        stream = io.BufferedReader(BoundedInflation(gzip.GzipFile(fileobj=stream, mode="rb"), source, dataset_id),
                                   buffer_size=1 << 20)
    try:
        frame = pd.read_csv(stream)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError,
            zlib.error) as exc:
        raise TrainingError(f"dataset {dataset_id!r}: not a readable CSV file: {exc}") from None
    return OwnerTable(dataset_id, id_column, frame)


def join(tables: Sequence[OwnerTable]) -> pd.DataFrame:
    """Inner join on the owners' id columns; every other column becomes `<dataset id>.<column>`."""
    if not tables:
        raise TrainingError("training needs at least one dataset")
    ids = [table.dataset_id for table in tables]
    if len(set(ids)) != len(ids):
        raise TrainingError(f"a dataset is given twice: {ids}")
    joined = _keyed(tables[0])
    for table in tables[1:]:
        joined = joined.merge(_keyed(table), on=KEY, how="inner", sort=False)
    if joined.empty:
        raise TrainingError(f"the datasets {ids} share no id: the inner join is empty")
    return joined


def _keyed(table: OwnerTable) -> pd.DataFrame:
    """The table with its id column renamed to `_id` and every other column qualified by the dataset id."""
    frame = table.frame
    if table.id_column not in frame.columns:
        raise TrainingError(f"dataset {table.dataset_id!r}: id column {table.id_column!r} not found; columns "
                            f"are: {', '.join(map(str, frame.columns))}")
    if frame[table.id_column].duplicated().any():
        raise TrainingError(f"dataset {table.dataset_id!r}: id column {table.id_column!r} has duplicate ids; "
                            "the join needs one row per id")
    names = {c: f"{table.dataset_id}.{c}" for c in frame.columns if c != table.id_column}
    return frame.rename(columns={**names, table.id_column: KEY})
