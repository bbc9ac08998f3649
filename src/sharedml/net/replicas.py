"""Replica health and selection, shared by the TEE cluster (in-process and networked, and its client SDK)
and online serving (the registry, the guest's fan-out and its client SDK).

Why: "which replicas may serve now" (seen within the heartbeat timeout, not marked down after a failure)
and "try them round robin, fail over on a fault but not on a refusal" are the same rules wherever the
replicas live, so they are written once here, below both users. A user passes its own error class (a
subclass of `ReplicaUnavailable`) so that its callers catch what they already catch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ReplicaUnavailable(Exception):
    """No healthy replica could serve a request, or a replica is unknown or registered twice."""


class RequestRefused(Exception):
    """A request refused for what it is (sender not allowed, altered, malformed), not because the replica
    failed: another replica would refuse it too, so there is no failover."""


class HealthTable(Generic[T]):
    """Members by name with the time each was last seen; healthy = seen within `timeout` seconds."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic,
                 error: type[ReplicaUnavailable] = ReplicaUnavailable) -> None:
        self.timeout, self.error = timeout, error
        self._clock = clock
        self._members: dict[str, T] = {}
        self._last_seen: dict[str, float] = {}
        self._down: set[str] = set()  # failed a request: skipped until its next heartbeat (works with timeout=inf)
        self._lock = threading.Lock()

    def put(self, name: str, member: T, replace: bool = True) -> None:
        """Add `member` (or replace it: a restarted replica registers again), seen now."""
        with self._lock:
            if not replace and name in self._members:
                raise self.error(f"a replica named {name!r} is already registered; give each replica its own name")
            self._members[name] = member
            self._last_seen[name] = self._clock()
            self._down.discard(name)

    def beat(self, name: str) -> T:
        """Record that `name` is alive; returns its member."""
        with self._lock:
            if name not in self._members:
                raise self.error(f"heartbeat from unknown replica {name!r}; register it first")
            self._last_seen[name] = self._clock()
            self._down.discard(name)
            return self._members[name]

    def mark_down(self, name: str) -> None:
        """Stop serving `name` until its next heartbeat (or registration)."""
        with self._lock:
            if name in self._members:
                self._down.add(name)

    def healthy(self, where: Callable[[T], bool] | None = None) -> list[T]:
        """Members seen within the timeout (and matching `where`), in registration order."""
        now = self._clock()
        with self._lock:
            return [member for name, member in self._members.items()
                    if name not in self._down and now - self._last_seen[name] <= self.timeout
                    and (where is None or where(member))]


class Balancer:
    """Round robin over the candidates of each call, failing over to the next one on any fault.

    A `RequestRefused` is the request's fault (sender not allowed, altered request), so it is raised at
    once: another replica would refuse it too.
    """

    def __init__(self, error: type[ReplicaUnavailable] = ReplicaUnavailable) -> None:
        self.error = error
        self._turn = itertools.count()

    def order(self, candidates: Sequence[T]) -> list[T]:
        """The candidates in the order to try them for the next call: the next in turn first."""
        if not candidates:
            raise self.error("no healthy replica to serve the request")
        start = next(self._turn) % len(candidates)
        return [*candidates[start:], *candidates[:start]]

    def call(self, candidates: Sequence[T], request: Callable[[T], R], name: Callable[[T], str],
             on_failure: Callable[[T], None]) -> R:
        failures = []
        for member in self.order(candidates):
            try:
                return request(member)
            except RequestRefused:
                raise
            except Exception as exc:  # any other fault is the replica's: try the next one
                on_failure(member)
                failures.append(f"{name(member)}: {exc}")
        raise self.error(f"every replica failed: {'; '.join(failures)}")
