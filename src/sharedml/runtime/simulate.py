"""Run one function as every party at once, as threads over the in-memory transport.

This is how tests and notebooks try a protocol: `simulate(fn, {"a": "guest", "b": "host"})` calls
`fn(ctx)` once per party and returns each party's result. The same function runs unchanged over
gRPC in separate processes; only the transport differs.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..net.channel import Channel, WireRecord
from ..net.errors import JobAborted
from ..net.memory import MemoryHub
from .context import Context


class SimulationError(RuntimeError):
    """A party's function raised; `party` failed first, `errors` holds every party's exception."""

    def __init__(self, party: str, errors: dict[str, BaseException]):
        super().__init__(f"party {party!r} failed: {type(errors[party]).__name__}: {errors[party]}")
        self.party = party
        self.errors = errors


def simulate(fn: Callable[[Context], Any], roles: dict[str, str] | list[str], *, timeout: float = 30.0,
             job: str = "simulation", task: str = "main",
             recorder: Callable[[WireRecord], None] | None = None,
             allowed_code: Collection[str] = ()) -> dict[str, Any]:
    """Call fn(ctx) as each party concurrently; return {party: result} or raise SimulationError.
    `allowed_code`: the code references (`package.module:function`) every party allows a job to name."""
    roles = dict(roles) if isinstance(roles, dict) else {p: "party" for p in roles}
    hub = MemoryHub()
    transports = {p: hub.transport(p) for p in roles}
    if recorder is not None:
        for transport in transports.values():
            transport.recorder = recorder
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}
    lock = threading.Lock()

    with tempfile.TemporaryDirectory(prefix="sharedml-sim-") as workdir:
        def run(party: str) -> None:
            channel = Channel(transports[party], job, task, roles, timeout)
            ctx = Context(party, roles, job, task, channel, Path(workdir) / party,
                          allowed_code=frozenset(allowed_code))
            try:
                value = fn(ctx)
                with lock:
                    results[party] = value
            except BaseException as err:  # noqa: BLE001 - reported to the caller below
                with lock:
                    errors[party] = err
                transports[party].abort_job(job, f"{type(err).__name__}: {err}", channel.peers)

        threads = [threading.Thread(target=run, args=(p,), name=f"party-{p}") for p in roles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        first = next((p for p, e in errors.items() if not isinstance(e, JobAborted)), next(iter(errors)))
        raise SimulationError(first, errors) from errors[first]
    return results
