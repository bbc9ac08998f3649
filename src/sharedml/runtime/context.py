"""What a component sees of the world: who it is, who its peers are, and how to talk to them."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net.channel import Channel


class MetricsTracker:
    """Metrics a component logs (`ctx.metrics.log("loss", 0.3, step=5)`), kept in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def log(self, name: str, value: float | int | str, step: int | None = None) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        self.records.append({"name": name, "value": value, "step": step, "time": time.time()})

    def latest(self) -> dict[str, Any]:
        return {r["name"]: r["value"] for r in self.records}


@dataclass
class Context:
    """One party's view of one task of a job."""

    party: str
    roles: dict[str, str]  # every party of this task -> its role
    job_id: str
    task: str
    channel: Channel
    workdir: Path
    metrics: MetricsTracker = field(default_factory=MetricsTracker)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sharedml.component"))
    on_progress: Callable[[str, float, float, str], None] | None = None
    # Survives a failed run of this task (same job id, task and party: a rerun), for work that can resume.
    resume_dir: Path | None = None
    # The code references (`package.module:function`) this party's operator allows a job to name.
    allowed_code: frozenset[str] = frozenset()

    @property
    def role(self) -> str:
        return self.roles[self.party]

    @property
    def parties(self) -> list[str]:
        """All parties of the task, in a fixed order every party agrees on."""
        return sorted(self.roles)

    @property
    def peers(self) -> list[str]:
        return [p for p in self.parties if p != self.party]

    def parties_with_role(self, role: str) -> list[str]:
        return [p for p in self.parties if self.roles[p] == role]

    def send(self, peer: str, tag: str, obj: Any) -> None:
        self.channel.send(peer, tag, obj)

    def recv(self, peer: str, tag: str, timeout: float | None = None) -> Any:
        return self.channel.recv(peer, tag, timeout)

    def broadcast(self, tag: str, obj: Any, peers: Iterable[str] | None = None) -> None:
        self.channel.broadcast(tag, obj, peers)

    def gather(self, tag: str, peers: Iterable[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self.channel.gather(tag, peers, timeout)

    def progress(self, done: float, total: float, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(self.task, done, total, message)
