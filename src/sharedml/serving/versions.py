"""Model versions side by side at one replica, and which version a request uses (gray release).

Why here and not per party: the guest picks the version once per request and sends it to every host, so
one request never mixes versions. The pick is a stable hash of the request's first sample id, so one id
keeps getting the same version while the split stays put; shifting traffic or rolling back is one call.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Generic, TypeVar

from .errors import BadRequest, UnknownModel

P = TypeVar("P")


def bucket(sample_id: object) -> float:
    """A stable number in [0, 100) for an id (the same at every replica and after restarts)."""
    digest = hashlib.blake2b(str(sample_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


class ModelBook(Generic[P]):
    """Loaded model parts by name and version, plus each name's traffic split; thread-safe."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._parts: dict[tuple[str, int], P] = {}
        self._traffic: dict[str, list[tuple[int, float]]] = {}  # name -> [(version, percent)], percent > 0
        self._lock = threading.Lock()

    def add(self, name: str, version: int, part: P) -> None:
        """Load a version beside the others; it gets traffic only once `set_traffic` gives it some (or it is
        the name's first version)."""
        with self._lock:
            self._parts[(name, version)] = part
            self._traffic.setdefault(name, [(version, 100.0)])

    def remove(self, name: str, version: int) -> None:
        with self._lock:
            if any(v == version for v, _ in self._traffic.get(name, [])):
                raise BadRequest(f"model {name}:{version} still gets traffic at party {self.party!r}; shift its "
                                 "traffic to another version first")
            if self._parts.pop((name, version), None) is None:
                raise UnknownModel(f"model {name}:{version} is not loaded at party {self.party!r}")

    def get(self, name: str, version: int) -> P:
        part = self._parts.get((name, version))
        if part is None:
            raise UnknownModel(f"model {name}:{version} is not loaded at party {self.party!r}; loaded: "
                               f"{', '.join(self.keys()) or 'none'}")
        return part

    def keys(self) -> list[str]:
        with self._lock:
            return [f"{n}:{v}" for n, v in sorted(self._parts)]

    def traffic(self) -> dict[str, dict[int, float]]:
        with self._lock:
            return {name: dict(split) for name, split in self._traffic.items()}

    def set_traffic(self, name: str, split: dict[int, float]) -> None:
        """Give each version of `name` its percent of requests (they must be loaded and sum to 100)."""
        chosen = [(int(v), float(p)) for v, p in sorted(split.items()) if float(p) > 0]
        with self._lock:
            absent = [v for v, _ in chosen if (name, v) not in self._parts]
            if absent:
                raise UnknownModel(f"model {name}: version(s) {absent} are not loaded at party {self.party!r}; load "
                                   "them first")
            if any(p < 0 for p in split.values()) or abs(sum(p for _, p in chosen) - 100) > 1e-9:
                raise BadRequest(f"traffic for model {name!r} must be percents >= 0 summing to 100, got {split}")
            self._traffic[name] = chosen

    def choose(self, name: str | None, version: int | None, sample_id: object) -> tuple[str, int]:
        """The (name, version) a request uses: as asked, else by the traffic split."""
        with self._lock:
            names = sorted({n for n, _ in self._parts})
        if name is None:
            if len(names) != 1:
                raise BadRequest(f"several models are served here ({', '.join(names)}): name one in `model`")
            name = names[0]
        if version is not None:
            self.get(name, version)
            return name, version
        split = self._traffic.get(name)  # replaced whole by set_traffic, never mutated: safe to read unlocked
        if not split:
            raise UnknownModel(f"model {name!r} is not served at party {self.party!r}; served: {', '.join(names)}")
        point, total = bucket(sample_id), 0.0
        for chosen, percent in split:
            total += percent
            if point < total:
                return name, chosen
        return name, split[-1][0]
