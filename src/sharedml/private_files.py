"""Files only their owner can read, written so that a crash never leaves half of one: the one way the
project writes a file it keeps (artifacts, checkpoints, configs, logs, the job store).

Standard library only, below every other module, so that any layer (psi checkpoints, the job engine,
the services) writes its files the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077  # for processes that only write the project's files: workers and services


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Let `write` fill a private file (0600) under a temporary name, fsync it, rename it, fsync the folder:
    readers see the old file or the whole new one, and after a crash the new one is either there complete
    or absent. The one way the project writes a file it keeps."""
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=2, default=str).encode())


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (files created or renamed in it) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(path: Path) -> Path:
    """`mkdir -p` whose every new folder is 0700 (mkdir's own `mode` applies to the last one only)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def open_log(path: Path | str) -> int:
    """A process's log: a private file (0600) opened for appending; returns the descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
