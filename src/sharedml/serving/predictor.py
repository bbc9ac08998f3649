"""The guest's prediction engine: batches concurrent requests, asks the hosts once per batch, combines.

Why batching: at hundreds of requests per second most of the cost is per call (an HTTPS round trip per
host, a Python walk over every tree node), not per row. Requests that arrive while a batch is in flight
queue up and go together in the next one (no timer: at low load a batch is one request, so waiting adds
no latency). Each request keeps its own outcome: an id unknown to one party fails only its request.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BadRequest, HostUnavailable, ServingError, UnknownIds
from .fanout import HostFanout
from .features import FeatureSource
from .parts import GuestPart
from .versions import ModelBook


@dataclass(frozen=True)
class GuestModel:
    """A model version at the guest: its part, and an optional guest-only fallback part."""

    part: GuestPart
    fallback: GuestPart | None = None


@dataclass
class Outcome:
    name: str
    version: int
    ids: list
    score: np.ndarray
    label: np.ndarray
    fallback: str | None


@dataclass
class _Query:
    name: str
    version: int
    ids: list
    given: list[dict[str, Any]] | None  # the guest's features as given in the request, else looked up
    future: Future


def feature_rows(part: GuestPart, ids: list, given: list[dict[str, Any]]) -> np.ndarray:
    """The request's guest features in the model's column order (null = missing), or BadRequest naming
    the id and the columns it lacks."""
    X = np.empty((len(ids), len(part.columns)))
    for row, (sample_id, values) in enumerate(zip(ids, given, strict=True)):
        absent = [c for c in part.columns if c not in values]
        if absent:
            raise BadRequest(f"`features` of id {sample_id!r} lack column(s) {absent}; give every column the "
                             "model uses, or leave `features` out to read them from the guest's feature source")
        X[row] = [np.nan if values[c] is None else values[c] for c in part.columns]
    return X


class GuestPredictor:
    def __init__(self, party: str, book: ModelBook[GuestModel], source: FeatureSource | None, fanout: HostFanout,
                 workers: int = 4, max_batch: int = 256) -> None:
        self.party, self.book, self.source, self.fanout, self.max_batch = party, book, source, fanout, max_batch
        self._queue: queue.Queue[_Query | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"predict-{i}") for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def submit(self, name: str, version: int, ids: list, given: list[dict[str, Any]] | None) -> Future:
        """Queue a request; the future holds its Outcome or its ServingError."""
        future: Future = Future()
        if given is None and self.source is None:
            raise BadRequest(f"guest {self.party!r} has no feature source: give `features` with the request")
        self._queue.put(_Query(name, version, ids, given, future))
        return future

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, rows = [first], len(first.ids)
            while rows < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
                rows += len(more.ids)
            groups: dict[tuple[str, int], list[_Query]] = defaultdict(list)
            for query in batch:
                groups[(query.name, query.version)].append(query)
            for (name, version), queries in groups.items():
                try:
                    self._predict(name, version, queries)
                except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
                    for query in queries:
                        if not query.future.done():
                            query.future.set_exception(exc)

    def _guest_rows(self, part: GuestPart, queries: list[_Query]) -> tuple[np.ndarray, list[_Query]]:
        """Rows of the queries whose ids the guest knows (the others fail with 404 here, unseen by hosts)."""
        lookup = [q for q in queries if q.given is None]
        found: dict[int, np.ndarray] = {}
        for query in queries:
            if query.given is not None:
                try:
                    found[id(query)] = feature_rows(part, query.ids, query.given)
                except BadRequest as exc:
                    query.future.set_exception(exc)
        if lookup:
            assert self.source is not None
            X, unknown = self.source.rows([i for q in lookup for i in q.ids], part.columns)
            start, bad = 0, set(unknown)
            for query in lookup:
                end = start + len(query.ids)
                missing = [query.ids[p - start] for p in range(start, end) if p in bad]
                if missing:
                    query.future.set_exception(UnknownIds(self.party, missing))
                else:
                    found[id(query)] = X[start:end]
                start = end
        alive = [q for q in queries if not q.future.done()]
        rows = [found[id(q)] for q in alive]
        return (np.vstack(rows) if rows else np.empty((0, len(part.columns)))), alive

    def _predict(self, name: str, version: int, queries: list[_Query]) -> None:
        model = self.book.get(name, version)
        X, alive = self._guest_rows(model.part, queries)
        if not alive:
            return
        ids = [i for q in alive for i in q.ids]
        note, unknown = None, {}
        try:
            answers = self.fanout.ask(model.part.hosts, name, version, ids)
        except HostUnavailable as exc:
            if model.fallback is None:
                raise
            note = f"guest-only fallback model: {exc}"
            X, alive = self._guest_rows(model.fallback, alive)
            neutral = model.fallback.neutral_answer(len(X))
            score, label = model.fallback.combine(X, {h: neutral for h in model.fallback.hosts})
        else:
            score, label = model.part.combine(X, answers)
            unknown = {host: set(answer["unknown"]) for host, answer in answers.items()}
        start = 0
        for query in alive:
            end = start + len(query.ids)
            failed = None if note else _unknown_at_hosts(query.ids, start, unknown)
            if failed is not None:
                query.future.set_exception(failed)
            else:
                query.future.set_result(Outcome(name, version, query.ids, score[start:end], label[start:end], note))
            start = end


def _unknown_at_hosts(ids: list, start: int, unknown: dict[str, set[int]]) -> ServingError | None:
    for host, positions in unknown.items():
        missing = [sample_id for offset, sample_id in enumerate(ids) if start + offset in positions]
        if missing:
            return UnknownIds(host, missing)
    return None
