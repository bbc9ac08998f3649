"""A party's part of a trained vertical model, loaded for online use, computed with the batch code itself.

Why: online predictions must equal batch predictions exactly, so this module does not re-implement the
models' math. It feeds the batch functions (`joint_predict.predict_host / predict_guest / transform` for
SecureBoost, hetero_lr's partial and joint scores) a one-shot stand-in for their `Context` whose
`send` keeps what a host would send and whose `recv` returns what the hosts answered over HTTP.

What leaves a host is exactly what the batch protocol sends: routing bits of its own tree nodes
(SecureBoost) or its partial scores X_h·w_h + offset (hetero LR), for the requested rows only.
Single-output SecureBoost models go through `fastpath`, vectorised forms of the same two loops that give
the same bits and sums (`fast=False` uses the batch functions themselves).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.artifacts import ArtifactError, PartyArtifacts
from ..ml.linear.hetero import glm_transform, joint_scores, send_scores
from ..ml.tree.joint_predict import predict_guest, predict_host, transform
from ..net.serialization import SerializationError, loads
from .errors import ServeConfigError
from .fastpath import GuestForest, HostSplits

TREE, LINEAR = "tree", "linear"
_TAG = "serve"


def load_model(location: dict[str, str], party: str, base_dir: Path = Path(".")) -> dict[str, Any]:
    """A party's saved model part: `{artifacts, job, task}` (a trained job's outputs at this party) or
    `{path}` (an exported task folder, e.g. from `sharedml node export`, or its `model.msgpack`)."""
    try:
        if "path" in location:
            path = (base_dir / location["path"]).resolve()
            file = path / "model.msgpack" if path.is_dir() else path
            if path.is_dir() and not (path / "_SUCCESS").exists():
                raise ServeConfigError(f"model part {path} has no _SUCCESS marker: the task did not finish")
            return loads(file.read_bytes())  # type: ignore[return-value]
        root = (base_dir / location["artifacts"]).resolve()
        return PartyArtifacts(root, location["job"], party).load(location["task"], "model")  # type: ignore[return-value]
    except (OSError, ArtifactError, SerializationError) as exc:
        raise ServeConfigError(f"cannot load the model part of party {party!r} from {location}: {exc}") from exc


def model_kind(model: dict[str, Any], where: str) -> str:
    if "trees" in model or "splits" in model:
        return TREE
    if "coef" in model:
        return LINEAR
    raise ServeConfigError(f"{where}: not a hetero_secureboost or hetero_lr/linr/poisson model part (it has keys "
                           f"{sorted(model)[:8]})")


@dataclass
class _OneShot:
    """Just enough of `Context` for one batch prediction call: a guest, its hosts, and answers by host."""

    party: str
    guest: str
    hosts: list[str]
    answers: dict[str, Any] = field(default_factory=dict)
    sent: Any = None

    def parties_with_role(self, role: str) -> list[str]:
        return [self.guest] if role == "guest" else list(self.hosts)

    def send(self, peer: str, tag: str, obj: Any) -> None:
        self.sent = obj

    def recv(self, peer: str, tag: str, timeout: float | None = None) -> Any:
        return self.answers[peer]

    def gather(self, tag: str, peers: Iterable[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        return {p: self.answers[p] for p in (self.hosts if peers is None else peers)}


class HostPart:
    """A host's part: answers the guest for a batch of rows with what the batch protocol would send."""

    def __init__(self, model: dict[str, Any], party: str, where: str, fast: bool = True) -> None:
        if model.get("role") != "host":
            raise ServeConfigError(f"{where}: a {model.get('role')!r} model part, but party {party!r} serves as a "
                                   "host; load this party's own part of the model")
        self.model, self.party, self.kind = model, party, model_kind(model, where)
        self.features: list[str] = list(model["features"])
        self._splits = HostSplits(model) if fast and self.kind == TREE else None

    def answer(self, X: np.ndarray) -> dict[str, Any]:
        """Routing bits {rows, keys, bits} of this host's tree nodes, or {scores} (n, K) partial scores."""
        if self._splits is not None:
            return self._splits.message(X)
        ctx = _OneShot(self.party, "guest", [self.party])
        if self.kind == TREE:
            predict_host(ctx, self.model, X, tag=_TAG)  # type: ignore[arg-type]
            return ctx.sent
        send_scores(ctx, _TAG, X, self.model)  # type: ignore[arg-type]
        return {"scores": np.asarray(ctx.sent, dtype=np.float64)}


class GuestPart:
    """The guest's part: combines its own features with the hosts' answers into scores and labels."""

    def __init__(self, model: dict[str, Any], party: str, hosts: list[str], where: str, fast: bool = True) -> None:
        if model.get("role") != "guest":
            raise ServeConfigError(f"{where}: a {model.get('role')!r} model part, but party {party!r} serves as the "
                                   "guest; load this party's own part of the model")
        self.model, self.party, self.kind = model, party, model_kind(model, where)
        self.hosts = list(model["hosts"]) if self.kind == TREE else list(hosts)
        absent = [h for h in self.hosts if h not in hosts]
        if absent:
            raise ServeConfigError(f"{where}: the model needs host(s) {absent}, which serve.yaml does not list under "
                                   "`hosts` (and no registry is set)")
        self.features: list[str] = list(model["features"])
        exposure = model.get("exposure")
        self.columns = self.features + ([exposure] if exposure else [])
        self._forest = GuestForest(model) if fast and self.kind == TREE and GuestForest.supports(model) else None

    def host_free(self) -> bool:
        """Whether the model scores without any host (a guest-only fallback): LR always (host features at
        their training mean, as the hosts' offsets centre their partial scores), trees only without host nodes."""
        return self.kind == LINEAR or all(not owner for tree in self.model["trees"] for owner in tree["owner"])

    def neutral_answer(self, rows: int) -> dict[str, Any]:
        """What a host contributes when it is left out (fallback models only)."""
        if self.kind == TREE:
            return {"rows": rows, "keys": [], "bits": np.zeros((0, (rows + 7) // 8), dtype=np.uint8)}
        width = np.asarray(self.model["coef"]).shape[1]
        return {"scores": np.zeros((rows, width))}

    def combine(self, X: np.ndarray, answers: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(score, label) per row: score (n,) or class probabilities (n, K)."""
        n = len(self.features)
        if self._forest is not None:
            return transform(self.model, self._forest.margin(X[:, :n], answers))
        ctx = _OneShot(self.party, self.party, self.hosts,
                       {h: a if self.kind == TREE else a["scores"] for h, a in answers.items()})
        if self.kind == TREE:
            return transform(self.model, predict_guest(ctx, self.model, X[:, :n], tag=_TAG))  # type: ignore[arg-type]
        z = joint_scores(ctx, _TAG, X[:, :n], self.model)  # type: ignore[arg-type]
        exposure = X[:, n] if self.model.get("exposure") else np.ones(len(X))
        return glm_transform(self.model, z, exposure)
