"""The horizontal federated learning round loop: one `aggregator` (no data) and several `client`s.

Why one loop for every model: sampling clients, waiting for them with a deadline, secure
aggregation, client-level DP and per-round evaluation do not depend on the model, only on a flat
weight vector. A model plugs in as a `LocalModel` (local training and evaluation on the client's own
rows) and a strategy from `strategies.py` moves the global weights on the aggregator.

One round r:
1. The aggregator samples m = max(min_clients, ceil(fraction_fit * N)) of the N clients (from `seed`,
   or the OS CSPRNG) and sends the sampled ones the global weights and the strategy's settings.
2. Each sampled client trains locally and contributes (n_k * delta_k, n_k): its update weighted by its
   row count. In the clear the aggregator sums what arrives within `round_timeout`; with
   `secure_aggregation` the vectors go through `secagg.secure_aggregate` among the sampled clients
   (with `round_timeout` as its dropout timeout and `min_clients` as its threshold) and the
   aggregator learns only the two sums. Either way the round fails, naming the missing clients,
   when fewer than `min_clients` answered. The mean delta is sum(n_k delta_k) / sum(n_k).
3. The strategy turns the mean delta into the new global weights, which go to every client; clients
   with validation rows evaluate them and the aggregator logs the row-weighted mean of each metric
   (it sees each client's figures in the clear, or only their sums under secure aggregation).

Client-level DP (`dp`): each client clips its delta to L2 norm `clip_norm` and contributes it with
weight 1 instead of n_k (row weighting would make one client's influence n_k * clip_norm), so
adding or removing a client changes the sum by at most `clip_norm`. Central DP (in the clear): the
aggregator adds N(0, (z * clip_norm)^2) to the sum. Distributed DP (with secure aggregation): each of
the m sampled clients adds N(0, (z * clip_norm)^2 / m) before masking, so the unmasked sum carries the
full noise; this assumes honest clients (one that skips its noise weakens everyone's guarantee) and
a client that drops out takes its share of noise with it. After each round the aggregator composes a
Poisson-sampled Gaussian event with rate m / N (`PrivacyAccountant`, RDP) and logs epsilon at
`delta`; the sampling here picks a fixed-size subset, so the figure is the usual approximation.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..crypto.dp import PrivacyAccountant, clip_by_l2_norm, gaussian_noise
from ..net.errors import PeerTimeout, TransportError
from ..runtime.context import Context
from ..runtime.peer_values import BadPeerValue, peer_int
from .secagg import AGGREGATOR, CLIENT, secure_aggregate
from .strategies import FedAvg, make_strategy

MAX_WEIGHTS = 1 << 27  # model size a client may announce: 1 GiB of float64 at the aggregator per array


@dataclass(frozen=True)
class ClientDP:
    """Client-level DP: clip each client's delta to `clip_norm`, noise sigma = noise_multiplier * clip_norm."""

    noise_multiplier: float
    clip_norm: float
    delta: float

    def __post_init__(self) -> None:
        if not (self.noise_multiplier > 0 and self.clip_norm > 0 and 0 < self.delta < 1):
            raise ValueError(f"dp needs noise_multiplier > 0, clip_norm > 0 and 0 < delta < 1; got {self}")


@dataclass(frozen=True)
class RoundConfig:
    """Settings every party must agree on (the job gives all of them the same params).

    Clients wait for the aggregator with their channel's timeout, which must exceed a whole round: up to
    4 x round_timeout for a secure aggregation of updates, as much again for the evaluation, plus training.
    """

    rounds: int
    fraction_fit: float = 1.0
    min_clients: int = 2
    round_timeout: float = 60.0
    seed: int | None = None
    secure_aggregation: bool = False
    secagg_clip: float = 2.0**20
    secagg_frac_bits: int = 24
    dp: ClientDP | None = None
    secagg_neighbours: int | None = None  # SecAgg+: k neighbours per client instead of all

    @property
    def threshold(self) -> int:
        """Secure aggregation's threshold: at least min_clients (and 2) sampled clients must stay to the end;
        under SecAgg+ it counts holders among one client's k neighbours and itself, so at most k/2 + 1."""
        if self.secagg_neighbours is not None:
            return max(2, min(self.min_clients, self.secagg_neighbours // 2 + 1))
        return max(2, self.min_clients)

    def sample_size(self, n_clients: int) -> int:
        """m = max(min_clients, ceil(fraction_fit * N)), or an error if there are too few clients."""
        if n_clients < self.min_clients:
            raise ValueError(f"min_clients is {self.min_clients} but the task has only {n_clients} clients; "
                             "lower min_clients or add clients")
        return min(n_clients, max(self.min_clients, math.ceil(self.fraction_fit * n_clients - 1e-9)))


class DPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    noise_multiplier: float = Field(gt=0, description="sigma / clip_norm of the Gaussian noise on the summed update")
    clip_norm: float = Field(gt=0, description="L2 bound on each client's update (delta)")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta at which epsilon is reported")


class FederationParams(BaseModel):
    """The round loop's parameters, shared by every model on it: a model's params subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(10, ge=1)
    strategy: Literal["fedavg", "fedprox", "fedadam", "fedyogi"] = "fedavg"
    proximal_mu: float = Field(0.0, ge=0, description="fedprox: weight of mu/2 ||w - w_global||^2")
    server_lr: float | None = Field(None, gt=0, description="default 1 (fedavg/fedprox), 0.1 (fedadam/fedyogi)")
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.99, ge=0, lt=1)
    tau: float = Field(1e-3, gt=0, description="fedadam/fedyogi: adaptivity (epsilon of Adam)")
    fraction_fit: float = Field(1.0, gt=0, le=1, description="share of clients sampled each round")
    min_clients: int = Field(2, ge=1, description="a round fails if fewer sampled clients answer")
    round_timeout: float = Field(60.0, gt=0, description="seconds the aggregator waits for updates")
    seed: int | None = Field(None, ge=0, description="client sampling and local training (default: fresh)")
    secure_aggregation: bool = Field(False, description="the aggregator learns only sums (SecAgg)")
    secagg_clip: float = Field(2.0**20, gt=0, description="bound on each coordinate of n_k * update")
    secagg_frac_bits: int = Field(24, ge=1, le=40)
    secagg_neighbours: int | None = Field(None, ge=2, description="SecAgg+: masks and shares with k (even) random "
                                          "neighbours instead of every client, so O(k) work per client")
    dp: DPParams | None = Field(None, description="client-level DP: central, or distributed under secure_aggregation")

    @model_validator(mode="after")
    def _federation_consistent(self) -> FederationParams:  # a name subclasses' validators do not shadow
        if self.strategy == "fedprox" and self.proximal_mu <= 0:
            raise ValueError("strategy fedprox needs proximal_mu > 0")
        if self.secagg_neighbours is not None and self.secagg_neighbours % 2:
            raise ValueError(f"secagg_neighbours must be even (k/2 on each side of a ring), "
                             f"got {self.secagg_neighbours}")
        return self

    def round_config(self) -> RoundConfig:
        dp = None if self.dp is None else ClientDP(self.dp.noise_multiplier, self.dp.clip_norm, self.dp.delta)
        return RoundConfig(self.rounds, self.fraction_fit, self.min_clients, self.round_timeout, self.seed,
                           self.secure_aggregation, self.secagg_clip, self.secagg_frac_bits, dp,
                           self.secagg_neighbours)

    def make_strategy(self) -> FedAvg:
        return make_strategy(self.strategy, server_lr=self.server_lr, proximal_mu=self.proximal_mu,
                             beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau)


class LocalModel(Protocol):
    """A client's model: local training and evaluation on its own rows, weights as one flat vector."""

    metric_names: tuple[str, ...]
    size: int  # length of the weight vector
    num_samples: int  # training rows
    validates: bool  # whether it has validation rows

    def fit(self, weights: np.ndarray, settings: dict[str, Any], round_: int) -> np.ndarray:
        """Train from `weights` on the local rows; return the delta (local weights - `weights`)."""
        ...

    def evaluate(self, weights: np.ndarray) -> tuple[np.ndarray, int]:
        """Each of `metric_names` on the validation rows, and how many rows that was."""
        ...


def signature(names: Iterable[str]) -> str:
    """SHA-256 of the feature names in order: lets the aggregator check that all clients agree on them."""
    return hashlib.sha256("\0".join(names).encode()).hexdigest()


class _Among:
    """A view of `ctx` in which only `parties` take part, so that a secure aggregation runs among them alone."""

    def __init__(self, ctx: Context, parties: Iterable[str]) -> None:
        chosen = set(parties)
        self._ctx = ctx
        self.roles = {p: r for p, r in ctx.roles.items() if p in chosen}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def parties_with_role(self, role: str) -> list[str]:
        return [p for p in sorted(self.roles) if self.roles[p] == role]


def _secure_sum(ctx: Context, parties: Iterable[str], vector: np.ndarray | None, config: RoundConfig,
                tag: str, threshold: int) -> Any:
    """Secure aggregation among `parties`; a client first checks that secagg_clip will not clip its vector."""
    largest = 0.0 if vector is None else float(np.max(np.abs(vector)))
    if largest > config.secagg_clip:
        raise ValueError(f"client {ctx.party!r}: its row-weighted vector reaches {largest:.4g}, above secagg_clip = "
                         f"{config.secagg_clip:g}, so secure aggregation would clip it; raise secagg_clip")
    return secure_aggregate(cast(Context, _Among(ctx, parties)), vector, threshold=threshold,
                            clip=config.secagg_clip, frac_bits=config.secagg_frac_bits,
                            graph="complete" if config.secagg_neighbours is None else "sparse",
                            neighbours=config.secagg_neighbours, dropout_timeout=config.round_timeout, tag=tag)


def run_aggregator(ctx: Context, config: RoundConfig, strategy: FedAvg,
                   initial: Callable[[int], np.ndarray] = np.zeros) -> np.ndarray:
    """The aggregator's side of the whole training; returns the final global weights."""
    clients = ctx.parties_with_role(CLIENT)
    m = config.sample_size(len(clients))
    if config.secure_aggregation and m < 2:
        raise ValueError("secure_aggregation needs at least 2 sampled clients per round; raise min_clients")
    hello = ctx.gather("fl/hello", clients)
    size, metric_names = check_hello(hello)
    validators = [c for c in clients if hello[c]["validates"]]
    ctx.broadcast("fl/start", {"validators": validators}, clients)
    sampler = secrets.SystemRandom() if config.seed is None else random.Random(config.seed)
    accountant = PrivacyAccountant() if config.dp else None
    weights = np.asarray(initial(size), dtype=np.float64)
    for r in range(config.rounds):
        ctx.progress(r, config.rounds, f"round {r + 1} of {config.rounds}")
        started = time.perf_counter()
        sampled = sorted(sampler.sample(clients, m))
        for c in clients:
            _send(ctx, c, f"fl/{r}/fit", {"fit": True, "sampled": sampled, "weights": weights,
                                          "settings": strategy.configure_fit()} if c in sampled else {"fit": False})
        total, answered = _collect_updates(ctx, config, sampled, r, size)
        if config.dp and not config.secure_aggregation:
            total[:-1] += gaussian_noise(size, config.dp.noise_multiplier * config.dp.clip_norm)
        weights = strategy.step(weights, total[:-1] / total[-1])
        epsilon = None
        if accountant is not None and config.dp is not None:
            accountant.compose_gaussian(config.dp.noise_multiplier, sampling_rate=m / len(clients))
            epsilon = accountant.epsilon(config.dp.delta)
            ctx.metrics.log("epsilon", epsilon, step=r)
        for c in clients:
            _send(ctx, c, f"fl/{r}/global", {"weights": weights, "epsilon": epsilon})
        ctx.metrics.log("clients", len(answered), step=r)
        if validators:
            _log_evaluation(ctx, config, validators, metric_names, r)
        ctx.metrics.log("round_seconds", round(time.perf_counter() - started, 4), step=r)
    ctx.progress(config.rounds, config.rounds, f"{config.rounds} rounds")
    return weights


def _send(ctx: Context, client: str, tag: str, message: dict[str, Any]) -> None:
    """Send, treating an unreachable client like a silent one: the round's deadline deals with it."""
    try:
        ctx.send(client, tag, message)
    except TransportError as err:
        ctx.log.warning("client %r unreachable (%s); it misses this round", client, err)


def check_hello(hello: dict[str, dict[str, Any]]) -> tuple[int, list[str]]:
    """All clients must have the same feature columns (by hash), weight size and metrics."""
    groups: dict[tuple[str, int, tuple[str, ...]], list[str]] = {}
    for client, h in sorted(hello.items()):
        groups.setdefault(_hello_fields(client, h), []).append(client)
    if len(groups) > 1:
        majority = max(groups.values(), key=len)
        odd = sorted(c for members in groups.values() if members is not majority for c in members)
        raise ValueError(f"client(s) {odd} have different feature columns (names, order or count) from "
                         f"client(s) {majority}; give every client the same feature columns in the same order")
    (_, size, metric_names), = groups
    return size, list(metric_names)


def _hello_fields(client: str, hello: Any) -> tuple[str, int, tuple[str, ...]]:
    """(signature, size, metric names) of a client's hello, checked: the size becomes the aggregator's arrays."""
    if not (isinstance(hello, dict) and isinstance(hello.get("signature"), str)
            and isinstance(hello.get("metrics"), list | tuple) and all(isinstance(m, str) for m in hello["metrics"])):
        raise BadPeerValue(f"party {client!r} sent a malformed hello (signature, size, metrics)")
    size = peer_int(hello.get("size"), client, "model size", 1, MAX_WEIGHTS)
    return hello["signature"], size, tuple(hello["metrics"])


def _collect_updates(ctx: Context, config: RoundConfig, sampled: list[str], r: int,
                     size: int) -> tuple[np.ndarray, list[str]]:
    """(sum of the weighted updates with the sum of weights appended, who is in it), clear or secure."""
    if config.secure_aggregation:
        try:
            result = _secure_sum(ctx, [ctx.party, *sampled], None, config, f"fl/{r}/secagg",
                                 config.threshold)
        except RuntimeError as err:
            raise RuntimeError(f"round {r}: secure aggregation over {len(sampled)} sampled clients failed "
                               f"(min_clients = {config.min_clients} is its threshold): {err}") from err
        return result.total, result.included
    deadline = time.monotonic() + config.round_timeout
    total = np.zeros(size + 1)
    answered = []
    for c in sampled:
        try:
            update = ctx.recv(c, f"fl/{r}/update", timeout=max(0.0, deadline - time.monotonic()))
        except PeerTimeout:
            continue
        vector = np.asarray(update, dtype=np.float64)
        if vector.shape != (size + 1,) or not np.all(np.isfinite(vector)):
            raise ValueError(f"client {c!r} sent an update of shape {vector.shape} (or with NaN/inf) in round {r}; "
                             f"expected {size + 1} finite values")
        total += vector
        answered.append(c)
    if len(answered) < config.min_clients:
        raise RuntimeError(f"round {r}: only {len(answered)} of {len(sampled)} sampled clients answered within "
                           f"round_timeout = {config.round_timeout:g} s, below min_clients = {config.min_clients}; "
                           f"missing: {sorted(set(sampled) - set(answered))}. Bring them back, lower min_clients "
                           "or raise round_timeout")
    return total, answered


def _log_evaluation(ctx: Context, config: RoundConfig, validators: list[str], names: list[str], r: int) -> None:
    """Row-weighted mean of each validation metric over the validating clients that answered."""
    if config.secure_aggregation and len(validators) >= 2:
        total = _secure_sum(ctx, [ctx.party, *validators], None, config, f"fl/{r}/eval",
                            min(max(2, config.min_clients), len(validators))).total
    else:
        got = ctx.gather(f"fl/{r}/eval", validators, timeout=config.round_timeout)
        total = np.sum([np.asarray(v, dtype=np.float64) for v in got.values()], axis=0)
    if total[-1] > 0:
        for name, value in zip(names, total[:-1] / total[-1], strict=True):
            ctx.metrics.log(name, float(value), step=r)


def run_client(ctx: Context, config: RoundConfig, model: LocalModel, features: str) -> np.ndarray:
    """A client's side of the whole training; returns the final global weights.

    `features` is `signature(feature names)`; the aggregator refuses to start unless all clients agree.
    """
    server = aggregator_of(ctx)
    ctx.send(server, "fl/hello", {"signature": features, "size": model.size, "validates": model.validates,
                                  "metrics": list(model.metric_names)})
    validators = ctx.recv(server, "fl/start")["validators"]
    weights = np.zeros(model.size)
    for r in range(config.rounds):
        ctx.progress(r, config.rounds, f"round {r + 1} of {config.rounds}")
        task = ctx.recv(server, f"fl/{r}/fit")
        if task["fit"]:
            _contribute(ctx, config, model, task, server, r)
        news = ctx.recv(server, f"fl/{r}/global")
        weights = np.asarray(news["weights"], dtype=np.float64)
        if news["epsilon"] is not None:
            ctx.metrics.log("epsilon", news["epsilon"], step=r)
        if ctx.party in validators:
            values, n = model.evaluate(weights)
            vector = np.append(values * n, float(n))
            if config.secure_aggregation and len(validators) >= 2:
                _secure_sum(ctx, [server, *validators], vector, config, f"fl/{r}/eval",
                            min(max(2, config.min_clients), len(validators)))
            else:
                ctx.send(server, f"fl/{r}/eval", vector)
    ctx.progress(config.rounds, config.rounds, f"{config.rounds} rounds")
    return weights


def require_client_copy(ctx: Context, model: dict, component: str) -> None:
    """Local prediction needs a client's copy of a model: the aggregator's has no feature names."""
    if model.get("features") is None:
        raise ValueError(f"party {ctx.party!r}: this {component} model is the aggregator's copy, without feature "
                         "names; predict with a client's `model` output")


def aggregator_of(ctx: Context) -> str:
    found = ctx.parties_with_role(AGGREGATOR)
    if len(found) != 1:
        raise ValueError(f"horizontal FL needs exactly one {AGGREGATOR!r} party; task {ctx.task} has {found}")
    return found[0]


def _contribute(ctx: Context, config: RoundConfig, model: LocalModel, task: dict[str, Any], server: str,
                r: int) -> None:
    """Train, weight (or clip and noise) the update, and send it in the clear or into secure aggregation."""
    weights = np.asarray(task["weights"], dtype=np.float64)
    delta = model.fit(weights, task["settings"], r)
    sampled = list(task["sampled"])
    if config.dp is None:
        weight = float(model.num_samples)
        vector = np.append(delta * weight, weight)
    else:
        vector = np.append(clip_by_l2_norm(delta, config.dp.clip_norm), 1.0)
        if config.secure_aggregation:
            sigma = config.dp.noise_multiplier * config.dp.clip_norm / math.sqrt(len(sampled))
            vector[:-1] += gaussian_noise(model.size, sigma)
    if not config.secure_aggregation:
        ctx.send(server, f"fl/{r}/update", vector)
        return
    try:
        _secure_sum(ctx, [server, *sampled], vector, config, f"fl/{r}/secagg",
                    config.threshold)
    except PeerTimeout:
        ctx.log.warning("client %r: left out of round %d's secure aggregation (too slow)", ctx.party, r)
