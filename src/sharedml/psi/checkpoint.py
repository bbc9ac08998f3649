"""Finished buckets of a bucketed PSI run, kept on disk so a crashed run resumes where it stopped.

A bucket's result is final at a party once written; a rerun keeps only the buckets that every party
finished (they agree on that list first), because a bucket redone at one party alone would come
out in a different order there. The fingerprint ties the files to the same input and settings: a
changed input starts afresh. The files hold this party's intersection row positions: they are written
like every output, owner-only and durably (`write_bytes_atomic`).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

from ..private_files import make_private_dirs, write_bytes_atomic

_MANIFEST = "manifest.json"


class BucketCheckpoint:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._fingerprint: str | None = None

    def open(self, fingerprint: str) -> set[int]:
        """Bind to `fingerprint`; returns the buckets already finished for it (none if it changed)."""
        self._fingerprint = fingerprint
        manifest = self.dir / _MANIFEST
        if manifest.exists() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
            return {int(p.stem.split("-")[1]) for p in self.dir.glob("bucket-*.npz")}
        if self.dir.exists():
            shutil.rmtree(self.dir)
        make_private_dirs(self.dir)
        write_bytes_atomic(manifest, json.dumps({"fingerprint": fingerprint}).encode())
        return set()

    def keep_only(self, buckets: set[int]) -> None:
        for path in self.dir.glob("bucket-*.npz"):
            if int(path.stem.split("-")[1]) not in buckets:
                path.unlink()

    def save(self, bucket: int, rows: np.ndarray | None, size: int | None) -> None:
        saved = io.BytesIO()
        np.savez(saved, rows=np.asarray([] if rows is None else rows, dtype=np.int64),
                 has_rows=rows is not None, size=-1 if size is None else size)
        write_bytes_atomic(self.dir / f"bucket-{bucket:06d}.npz", saved.getvalue())

    def load(self, bucket: int) -> tuple[np.ndarray | None, int | None]:
        with np.load(self.dir / f"bucket-{bucket:06d}.npz") as saved:
            rows = saved["rows"] if bool(saved["has_rows"]) else None
            size = int(saved["size"])
        return rows, (None if size < 0 else size)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def fingerprint(points: np.ndarray, settings: object) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(points).tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()
