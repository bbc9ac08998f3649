"""The guest's prediction engine: batches concurrent requests, asks the hosts once per batch, combines.

Why batching: at hundreds of requests per second most of the cost is per call (an HTTPS round trip per
host, a pass over every tree), not per row. Requests that arrive while `workers` batches are in flight
queue up and go together in the next one (no timer: at low load a batch is one request, so waiting adds
no latency). Each request keeps its own outcome: an id unknown to one party fails only its request.

Why on the event loop: everything here is either waiting for hosts or well under a millisecond of numpy,
so the HTTP server's loop runs it directly; handing each request to a thread and back cost more CPU than
the prediction. Only a feature source that blocks (SQL) runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
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
    future: asyncio.Future


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
        self.party, self.book, self.source, self.fanout = party, book, source, fanout
        self.workers, self.max_batch = workers, max_batch
        self._waiting: deque[_Query] = deque()
        self._running: set[asyncio.Task] = set()

    async def predict(self, name: str, version: int, ids: list, given: list[dict[str, Any]] | None) -> Outcome:
        """The request's Outcome, or its ServingError, once a batch carrying it is answered."""
        if given is None and self.source is None:
            raise BadRequest(f"guest {self.party!r} has no feature source: give `features` with the request")
        query = _Query(name, version, ids, given, asyncio.get_running_loop().create_future())
        self._waiting.append(query)
        self._dispatch()
        return await query.future

    def _dispatch(self) -> None:
        """Start batches from the waiting requests while fewer than `workers` are in flight."""
        while self._waiting and len(self._running) < self.workers:
            batch, rows = [], 0
            while self._waiting and (not batch or rows + len(self._waiting[0].ids) <= self.max_batch):
                query = self._waiting.popleft()
                batch.append(query)
                rows += len(query.ids)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._dispatch()

    async def _run(self, batch: list[_Query]) -> None:
        groups: dict[tuple[str, int], list[_Query]] = defaultdict(list)
        for query in batch:
            groups[(query.name, query.version)].append(query)
        for (name, version), queries in groups.items():
            try:
                await self._predict(name, version, queries)
            except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
                for query in queries:
                    _settle(query.future, exception=exc)

    async def _guest_rows(self, part: GuestPart, queries: list[_Query]) -> tuple[np.ndarray, list[_Query]]:
        """Rows of the queries whose ids the guest knows (the others fail with 404 here, unseen by hosts)."""
        lookup = [q for q in queries if q.given is None]
        found: dict[int, np.ndarray] = {}
        for query in queries:
            if query.given is not None:
                try:
                    found[id(query)] = feature_rows(part, query.ids, query.given)
                except BadRequest as exc:
                    _settle(query.future, exception=exc)
        if lookup:
            assert self.source is not None
            wanted = [i for q in lookup for i in q.ids]
            if self.source.blocking:
                X, unknown = await asyncio.to_thread(self.source.rows, wanted, part.columns)
            else:
                X, unknown = self.source.rows(wanted, part.columns)
            start, bad = 0, set(unknown)
            for query in lookup:
                end = start + len(query.ids)
                missing = [query.ids[p - start] for p in range(start, end) if p in bad]
                if missing:
                    _settle(query.future, exception=UnknownIds(self.party, missing))
                else:
                    found[id(query)] = X[start:end]
                start = end
        alive = [q for q in queries if not q.future.done()]
        rows = [found[id(q)] for q in alive]
        return (np.vstack(rows) if rows else np.empty((0, len(part.columns)))), alive

    async def _predict(self, name: str, version: int, queries: list[_Query]) -> None:
        model = self.book.get(name, version)
        X, alive = await self._guest_rows(model.part, queries)
        if not alive:
            return
        ids = [i for q in alive for i in q.ids]
        note, unknown = None, {}
        try:
            answers = await self.fanout.ask(model.part.hosts, name, version, ids)
        except HostUnavailable as exc:
            if model.fallback is None:
                raise
            note = f"guest-only fallback model: {exc}"
            X, alive = await self._guest_rows(model.fallback, alive)
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
                _settle(query.future, exception=failed)
            else:
                _settle(query.future, Outcome(name, version, query.ids, score[start:end], label[start:end], note))
            start = end


def _settle(future: asyncio.Future, outcome: Outcome | None = None, exception: Exception | None = None) -> None:
    """Answer a waiting request, unless its caller went away meanwhile (a cancelled future)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(outcome)


def _unknown_at_hosts(ids: list, start: int, unknown: dict[str, set[int]]) -> ServingError | None:
    for host, positions in unknown.items():
        missing = [sample_id for offset, sample_id in enumerate(ids) if start + offset in positions]
        if missing:
            return UnknownIds(host, missing)
    return None
