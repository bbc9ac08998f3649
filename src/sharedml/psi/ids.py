"""From a table's ID column(s) to one canonical byte string per row, and from those to curve points.

Every party must turn the same ID into the same bytes, whatever type its file gave the column:
integers (and integral floats, which is what a CSV column of integers with a gap becomes) are
written in decimal, text as UTF-8, bytes as they are. A composite key joins its parts with the
unit separator U+001F. Normalisation (trim, lower case) is optional and must be the same at every
party; the component checks that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

POINT_BYTES = 32
HASH_DOMAIN = b"sharedml/psi/v1/x25519-u\x00"
_SEPARATOR = "\x1f"
_CHUNK = 1 << 18


class PsiInputError(ValueError):
    """A party's ID column(s) cannot be used: missing, null, duplicated or of an unusable type."""


@dataclass(frozen=True)
class Normalisation:
    trim: bool = False
    lower: bool = False


def id_strings(frame: pd.DataFrame, columns: list[str], party: str, norm: Normalisation,
               null_ids: str = "error") -> tuple[list[str | bytes], np.ndarray]:
    """Canonical IDs of `frame` and the row positions they came from (rows with null IDs may be skipped)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PsiInputError(f"party {party!r}: ID column(s) {missing} not in its data; it has columns "
                            f"{[str(c) for c in frame.columns]}. Set the task's `id_columns` parameter.")
    null = frame[columns].isna().any(axis=1).to_numpy()
    rows = np.arange(len(frame), dtype=np.int64)
    if null.any():
        if null_ids != "skip":
            first = int(np.flatnonzero(null)[0])
            raise PsiInputError(f"party {party!r}: {int(null.sum())} row(s) have a null ID in {columns} "
                                f"(first at row {first}); clean the data or set `null_ids: skip` to leave them out")
        rows = rows[~null]
    parts = [_column_text(frame[c].iloc[rows], c, party, norm) for c in columns]
    if len(parts) == 1:
        return parts[0], rows
    return [_SEPARATOR.join(p) for p in zip(*parts, strict=True)], rows


def _column_text(col: pd.Series, name: str, party: str, norm: Normalisation) -> list[str | bytes]:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise PsiInputError(f"party {party!r}: ID column {name!r} is boolean; IDs must be text or integers")
    if pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy()
        if not np.all(np.isfinite(values) & (values == np.round(values))):
            raise PsiInputError(f"party {party!r}: ID column {name!r} holds non-integer numbers; "
                                "store IDs as text or integers")
        col = pd.Series(values.astype(np.int64))
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.astype(str).tolist()
    values = col.tolist()
    if any(isinstance(v, float) for v in values):  # an object column that mixes floats in
        raise PsiInputError(f"party {party!r}: ID column {name!r} mixes numbers with text; store IDs as text")
    text = [v if isinstance(v, bytes) else str(v) for v in values]
    if norm.trim:
        text = [v.strip() for v in text]
    if norm.lower:
        text = [v if isinstance(v, bytes) else v.lower() for v in text]
    return text


def hash_to_points(ids: list[str | bytes]) -> np.ndarray:
    """(n, 32) uint8: each ID hashed to an X25519 u-coordinate (SHA-256 with a domain tag, top bit cleared).

    Every 255-bit string is the u-coordinate of a point on Curve25519 or on its twist; X25519 is
    defined on both, and both have large prime-order subgroups (twist security), so the
    commutative blinding k_a·k_b·H(id) is sound for every hash value.
    """
    out = np.empty((len(ids), POINT_BYTES), dtype=np.uint8)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        digests = b"".join(hashlib.sha256(HASH_DOMAIN + (v if isinstance(v, bytes) else v.encode())).digest()
                           for v in chunk)
        out[start:start + len(chunk)] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, POINT_BYTES)
    out[:, -1] &= 0x7F
    return out


def first_duplicates(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of rows whose ID equals an earlier row's (by hash), and of the earlier row for each."""
    keys = points.view(f"V{POINT_BYTES}").ravel()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if not same.size:
        return same, same
    # the first occurrence of each run of equal keys is the earliest row (stable sort)
    run_start = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]], np.arange(len(keys)), 0))
    return order[same], order[run_start[same]]
