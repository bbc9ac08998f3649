"""Where encrypted files live: a local path, or an fsspec URL (s3://, gs://, ...) when fsspec is installed.

Why: owners upload to whatever the enclave operator's storage is; only ciphertext goes there, so the
storage is untrusted. A local write goes to `<name>.partial` and is renamed when complete, so a failed
upload never leaves a file that looks whole (a truncated upload would be refused anyway).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import StorageError


def is_url(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise StorageError("storage URLs need fsspec (and s3fs for s3://): pip install fsspec s3fs; "
                           "or give a local folder/file path") from None
    return fsspec


def _local(location: str | Path) -> Path:
    return Path(str(location).removeprefix("file://"))


@contextlib.contextmanager
def open_input(location: str | Path) -> Iterator[BinaryIO]:
    """Open a stored file for reading."""
    if is_url(location):
        try:
            with _fsspec().open(str(location), "rb") as handle:
                yield handle
        except FileNotFoundError:
            raise StorageError(f"{location}: not found in storage") from None
        return
    path = _local(location)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise StorageError(f"{path}: file not found") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    with handle:
        yield handle


@contextlib.contextmanager
def open_output(location: str | Path) -> Iterator[BinaryIO]:
    """Open a stored file for writing; a local file appears under its name only once complete."""
    if is_url(location):
        with _fsspec().open(str(location), "wb") as handle:
            yield handle
        return
    path = _local(location)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = partial.open("wb")
    except OSError as exc:
        raise StorageError(f"{path}: cannot write: {exc}") from None
    with handle:
        yield handle
    os.replace(partial, path)
