"""Vertical logistic and linear regression trained entirely on secret shares (SecureML-style SGD).

Rows are aligned across the computing parties (the guest, who holds the label, and one or more
hosts). Every party secret-shares its own feature columns once, the guest also the label; the
weights start as shares of zero and stay shared. One mini-batch step, all on shares:

    z = X_b @ w                        one matrix triple
    p = sigmoid(z)  (logistic)         the MPC engine's piecewise polynomial; p = z for linear
    g = X_bᵀ @ (p − y_b)               one matrix triple
    w ← w − lr·(g / B + α·w)           public multipliers: one truncation

Batches are the same rows at every party: each epoch permutes the row indices with a generator
seeded by a value the parties agree on. At the end every party receives its own slice of the
weights in the clear (the guest also the intercept), nothing else.

What is opened on the way is only masked: every opening is a share minus a triple value (uniform),
the engine's comparisons open words XORed with fresh triple words, truncations open values masked
by a uniform r. The exceptions, on purpose: with a `validate` set and early stopping, the guest
learns the validation margins X_v @ w after each epoch (to score them with its labels), and the
hosts learn one bit per epoch (whether the validation loss improved, so that every party keeps the
same best weights).

Rounds: the sigmoid's input z is left untruncated (the sigmoid's own first scaling truncates once
for both), so a step costs the two matrix products' openings, the sigmoid's rounds and two
truncations (three with momentum).

Tuples: from a trusted dealer (a party of its own), or dealer-free for one guest and one host
(`he`/`ot`, see mpc/two_party.py). Either way each epoch's tuples are had before the epoch, timed
apart from its online phase: dealer-free ones are made in an interactive offline phase
(`TwoPartySource.prepare`), a dealer's are fetched in a few batched requests while the previous
epoch runs (ss_tuples.py). How many is counted by a dry run of one step (ss_tuples.demand).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...mpc import MPCSession, SharedTensor, concatenate, stack
from ...mpc import functions as F
from ...runtime.context import Context
from .ss_tuples import add_demand, demand

_LAYOUT_TAG, _SEED_TAG, _STOP_TAG = "ss_linear/layout", "ss_linear/seed", "ss_linear/early_stop"


@dataclass(frozen=True)
class SGDConfig:
    """How to train (validated by the component's parameters)."""

    objective: str  # "logistic" or "linear"
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 0.1
    momentum: float = 0.0  # heavy ball: v ← momentum·v + lr·(gradient + α·w), w ← w − v
    schedule: str = "constant"  # or "inverse_sqrt": lr / √(epoch + 1)
    penalty: str = "l2"  # or "none"
    alpha: float = 0.0  # on the mean loss: (1/n) Σ loss + (α/2)·‖w‖², intercept unpenalised
    fit_intercept: bool = True
    sigmoid: str = "minimax"
    early_stopping_rounds: int | None = None
    seed: int | None = None

    def rate(self, epoch: int) -> float:
        return self.learning_rate / (math.sqrt(epoch + 1) if self.schedule == "inverse_sqrt" else 1.0)


@dataclass
class Fitted:
    """One party's result: its own weights (features in its column order), the guest's intercept,
    and per epoch the seconds and bytes of the offline and online phases."""

    weights: np.ndarray
    intercept: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


# -- training ------------------------------------------------------------------------------------
def _sent(ctx: Context) -> int:
    """Bytes this party sent so far, plus those a dealer sent it (the dealer's traffic, counted where it lands)."""
    stats = ctx.channel.stats.snapshot()
    dealers = ctx.parties_with_role("dealer")
    return sum(s["bytes_sent"] for s in stats.values()) + sum(stats.get(d, {}).get("bytes_recv", 0) for d in dealers)


class _Trainer:
    """The shared state of one training run at one computing party."""

    def __init__(self, mpc: MPCSession, config: SGDConfig, guest: str) -> None:
        self.mpc, self.config, self.guest = mpc, config, guest

    def layout(self, X: np.ndarray, X_valid: np.ndarray | None) -> dict[str, tuple[int, int, int]]:
        """Every computing party's (rows, columns, validation rows), checked to line up."""
        ctx, mine = self.mpc.ctx, (X.shape[0], X.shape[1], 0 if X_valid is None else X_valid.shape[0])
        for peer in self.mpc.peers:
            ctx.send(peer, _LAYOUT_TAG, list(mine))
        layout = {p: mine if p == ctx.party else tuple(ctx.recv(p, _LAYOUT_TAG)) for p in self.mpc.parties}
        rows, valid = layout[self.guest][0], layout[self.guest][2]
        for party, (n, _, nv) in layout.items():
            if n != rows:
                raise ValueError(f"party {party!r} has {n} training rows, guest {self.guest!r} has {rows}: rows must "
                                 "be aligned across parties (run a `psi` task first and train on its `data`)")
            if nv != valid:
                raise ValueError(f"party {party!r} has {nv} validation rows, guest {self.guest!r} has {valid}: give "
                                 "every party a `validate` input aligned like `train` (or none at all)")
        return layout

    def share_columns(self, X: np.ndarray | None, parties: list[str]) -> SharedTensor:
        """Every party's own columns, shared and side by side in `parties` order."""
        ctx = self.mpc.ctx
        return concatenate([self.mpc.share(X if p == ctx.party else None, owner=p) for p in parties], axis=1)

    def agree_seed(self) -> int:
        """The guest's seed (its `seed` setting or fresh randomness) for the batch order, sent to every party."""
        ctx = self.mpc.ctx
        if ctx.party == self.guest:
            seed = self.config.seed if self.config.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
            for peer in self.mpc.peers:
                ctx.send(peer, _SEED_TAG, seed)
            return seed
        return int(ctx.recv(self.guest, _SEED_TAG))

    def step(self, X: SharedTensor, y: SharedTensor, w: SharedTensor, velocity: SharedTensor | None, rate: float,
             decay: np.ndarray | None) -> tuple[SharedTensor, SharedTensor | None]:
        """One SGD step on a batch: the new weights and velocity (None without momentum). `decay` is lr·α
        per weight (0 for the intercept), None without a penalty."""
        if self.config.objective == "logistic":  # the sigmoid scales its input first: one truncation for both
            residual = F.sigmoid(_unscaled_matmul(X, w), self.config.sigmoid) - y
        else:
            residual = X @ w - y
        gradient = X.T @ residual
        step_size = np.full(w.shape, rate / X.shape[0])
        if decay is None:
            change = gradient * step_size
        else:  # both public products in one truncation (the multiplier's precision follows the larger one)
            change = (stack([gradient, w]) * np.stack([step_size, decay])).sum(axis=0)
        if velocity is None:
            return w - change, None
        velocity = velocity * self.config.momentum + change  # heavy ball: one more truncation round
        return w - velocity, velocity

    def batches(self, n: int, epoch: int, seed: int) -> list[np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        size = self.config.batch_size
        return [np.sort(order[start:start + size]) for start in range(0, n, size)]


def _unscaled_matmul(x: SharedTensor, y: SharedTensor) -> SharedTensor:
    """x @ y left at x.frac + y.frac fractional bits, saving the truncation round that `@` ends with.

    For the sigmoid's input: its first step multiplies by a public 1/scale and truncates, which then
    removes both scales at once. Its comparisons are exact for |z| < 2^(62 - 2f) (2^26 at f = 18).
    The scaled value z/8 of `minimax` carries 2f + f + 3 fractional bits and overflows the truncation
    for |z| ≥ 256 (at f = 18), but there z lies in a constant region, whose exact 0/1 indicator
    discards the polynomial's value."""
    labelled = x @ SharedTensor(y.session, y.share, 0)  # frac x.frac: nothing to truncate
    return SharedTensor(x.session, labelled.share, x.frac + y.frac)


def fit(ctx: Context, mpc: MPCSession, config: SGDConfig, X: np.ndarray, y: np.ndarray | None,
        X_valid: np.ndarray | None = None, y_valid: np.ndarray | None = None) -> Fitted:
    """Train at one computing party (`y`, `y_valid` at the guest only; None elsewhere).

    `X` is this party's own feature matrix, already scaled as it wants; the guest's gets the
    intercept column here. Returns this party's own weights and, at the guest, the intercept.
    """
    guest = next(p for p in mpc.parties if ctx.roles[p] == "guest")
    trainer = _Trainer(mpc, config, guest)
    is_guest = ctx.party == guest
    if is_guest and config.fit_intercept:
        X = np.column_stack([X, np.ones(len(X))])
        X_valid = None if X_valid is None else np.column_stack([X_valid, np.ones(len(X_valid))])
    layout = trainer.layout(X, X_valid)
    n, d = layout[guest][0], sum(cols for _, cols, _ in layout.values())
    order = [guest] + [p for p in mpc.parties if p != guest]  # the guest's columns first, intercept last of them
    shared_X = trainer.share_columns(X, order)
    # column vectors: the dealer's matrix triples are for 2-D operands
    shared_y = mpc.share(None if y is None else y.reshape(-1, 1), owner=guest)
    validate = layout[guest][2] > 0
    shared_Xv = trainer.share_columns(X_valid, order) if validate else None
    seed = trainer.agree_seed()
    if config.objective == "logistic":
        F.sigmoid_plan(config.sigmoid)  # fitted once per process (~0.2 s): not an epoch's cost
    penalised = np.ones((d, 1))
    if config.fit_intercept:
        penalised[layout[guest][1] - 1, 0] = 0.0
    w = SharedTensor(mpc, np.zeros((d, 1), np.uint64), mpc.fxp.frac_bits)
    velocity = SharedTensor(mpc, np.zeros((d, 1), np.uint64), mpc.fxp.frac_bits) if config.momentum else None
    best_w, best_loss, best_epoch, waited = w, math.inf, 0, 0
    history = []

    def plan(epoch: int) -> _Epoch:
        rate = config.rate(epoch)
        decay = rate * config.alpha * penalised if config.penalty == "l2" and config.alpha > 0 else None
        return _Epoch(trainer.batches(n, epoch, seed), rate, decay)

    offline = _Offline(mpc, trainer, d, shared_Xv.shape if validate else None)
    following = plan(0)
    for epoch in range(config.epochs):
        current, following = following, plan(epoch + 1) if epoch + 1 < config.epochs else None
        prepared = offline.ready(current, following)
        sent, started = _sent(ctx), time.perf_counter()
        for rows in current.batches:
            w, velocity = trainer.step(shared_X[rows], shared_y[rows], w, velocity, current.rate, current.decay)
        record = {"epoch": epoch, "online_s": time.perf_counter() - started, "online_bytes": _sent(ctx) - sent,
                  **prepared}
        if validate:
            margin = (shared_Xv @ w).reshape(-1)
            loss, improved, stop = _early_stopping(ctx, mpc, config, guest, margin, y_valid, best_loss, waited)
            record["validation_loss"] = loss
            if improved:
                best_w, best_loss, best_epoch, waited = w, loss, epoch, 0
            else:
                waited += 1
            if stop:
                history.append(record)
                break
        else:
            best_w, best_epoch = w, epoch
        history.append(record)
        ctx.progress(epoch + 1, config.epochs, f"epoch {epoch + 1}")
    offline.finish()
    return _reveal_own(ctx, mpc, best_w, layout, order, config.fit_intercept and is_guest, history, best_epoch)


@dataclass(frozen=True)
class _Epoch:
    """What an epoch's tuples depend on: its batch sizes and its public multipliers."""

    batches: list[np.ndarray]
    rate: float
    decay: np.ndarray | None


class _Offline:
    """Each epoch's tuples, made or fetched before the epoch and timed apart from its online phase.

    Dealer-free sources make them in an interactive offline phase (`prepare`). A prefetched dealer
    source (ss_tuples.py) sends the requests for the next epoch before this epoch's online phase
    and collects the answers after it, so that the dealer computes while the parties do.
    """

    def __init__(self, mpc: MPCSession, trainer: _Trainer, d: int, validate: tuple[int, ...] | None) -> None:
        self.mpc, self.trainer, self.d, self.validate = mpc, trainer, d, validate
        self.requested = False

    def demand(self, epoch: _Epoch) -> dict[str, Any]:
        """The epoch's tuples, counted by dry runs of one step per batch size (and the validation margins)."""
        momentum = self.trainer.config.momentum > 0

        def step(X: SharedTensor, y: SharedTensor, w: SharedTensor, velocity: SharedTensor) -> None:
            self.trainer.step(X, y, w, velocity if momentum else None, epoch.rate, epoch.decay)

        d = self.d
        per_size = {size: demand(self.mpc, step, (size, d), (size, 1), (d, 1), (d, 1))
                    for size in {len(rows) for rows in epoch.batches}}
        total = {"mul": 0, "matmul": [], "and_words": 0, "dabits": 0, "trunc": {}}
        for rows in epoch.batches:
            total = add_demand(total, per_size[len(rows)])
        if self.validate is not None:
            total = add_demand(total, demand(self.mpc, lambda Xv, w: Xv @ w, self.validate, (d, 1)))
        return total

    def ready(self, epoch: _Epoch, following: _Epoch | None) -> dict[str, float]:
        """Have `epoch`'s tuples at hand (and ask for the `following` one's, where that overlaps)."""
        source = self.mpc.triples
        if not hasattr(source, "prepare"):  # tuples on demand: nothing ahead
            return {}
        sent, started = _sent(self.mpc.ctx), time.perf_counter()
        if hasattr(source, "request"):
            if not self.requested:
                source.request(**self.demand(epoch))
            source.collect()
            self.requested = following is not None
            if following is not None:
                source.request(**self.demand(following))
        else:
            source.prepare(**self.demand(epoch))
        return {"offline_s": time.perf_counter() - started, "offline_bytes": _sent(self.mpc.ctx) - sent}

    def finish(self) -> None:
        """Collect what was asked for an epoch that early stopping skipped (the answers are on their way)."""
        if self.requested:
            self.mpc.triples.collect()


def _early_stopping(ctx: Context, mpc: MPCSession, config: SGDConfig, guest: str, margin: SharedTensor,
                    y_valid: np.ndarray | None, best: float, waited: int) -> tuple[float, bool, bool]:
    """(validation loss, improved, stop): the guest scores the margins revealed to it, tells the others."""
    revealed = margin.reveal(to=guest)
    if ctx.party != guest:
        decision = ctx.recv(guest, _STOP_TAG)
        return math.nan, bool(decision["improved"]), bool(decision["stop"])
    loss = validation_loss(config.objective, y_valid, revealed)
    improved = loss < best - 1e-9
    stop = not improved and waited + 1 >= (config.early_stopping_rounds or math.inf)
    for peer in mpc.peers:
        ctx.send(peer, _STOP_TAG, {"improved": improved, "stop": stop})
    return loss, improved, stop


def validation_loss(objective: str, y: np.ndarray, margin: np.ndarray) -> float:
    """Mean log-loss (logistic) or mean squared error (linear) of margins against labels."""
    if objective == "logistic":
        return float(np.mean(np.logaddexp(0.0, margin) - y * margin))
    return float(np.mean((margin - y) ** 2))


def _reveal_own(ctx: Context, mpc: MPCSession, w: SharedTensor, layout: dict[str, tuple[int, int, int]],
                order: list[str], intercept: bool, history: list[dict[str, float]], best_epoch: int) -> Fitted:
    """Each party's slice of the weights, opened to that party alone."""
    mine, start = None, 0
    for party in order:
        cols = layout[party][1]
        value = w[start:start + cols, 0].reveal(to=party)
        if party == ctx.party:
            mine = value
        start += cols
    if intercept:
        return Fitted(mine[:-1], float(mine[-1]), history, best_epoch)
    return Fitted(mine, None, history, best_epoch)
