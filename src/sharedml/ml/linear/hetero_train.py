"""Training loop of the vertical GLMs: mini-batches, the optimiser, stopping; each party runs its own part.

Why here and not in the protocol: what crosses the wire per batch is `hetero_protocol`'s business;
this module decides which rows form a batch (the same shuffled order at every party, from a seed the
guest sends), how each party updates *its own* weights from its own gradient (SGD with an optional
inverse-square-root decay, L2 on the gradient, L1 as a proximal soft-threshold step, the intercept
never penalised) and when to stop. Weights never leave their party during training.

Per epoch each host reports to the guest only what stopping needs: ‖ΔW_h‖² when `tol` > 0 (one
number, FATE's weight-diff convergence) and, with validation rows, its partial scores on them (the
same disclosure as prediction). The guest decides and tells everyone whether to go on, and whether
this epoch's weights are the best so far (early stopping keeps them).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...runtime.context import Context
from . import steps
from .hetero_messages import CONTROL, READY, REPORT, SETUP
from .hetero_params import AUTO_EPOCHS, HeteroGLMParams
from .hetero_protocol import BatchProtocol, Objective, check_hosts, exchange_keys

ADAM_BETAS = (0.9, 0.999)
CURVATURE = {"logistic": 0.25, "linear": 1.0, "poisson": 1.0}  # scale of the loss's second derivative in z


class Optimizer:
    """Mini-batch SGD, Adam, or SGD preconditioned by the party's own curvature, on one party's weights
    W (d, K), from its own gradients only; `free_row` (the intercept) is not regularised.

    "preconditioned" multiplies the gradient by (c·X_pᵀX_p/n + αI)⁻¹, X_p the party's own (standardised)
    columns and c the loss's curvature (1/4 logistic, 1 linear and Poisson): a block-diagonal Newton step,
    one block per party, computed locally, so nothing more crosses the wire. It removes the
    ill-conditioning *within* each party's columns (correlated features), the usual cause of slow GD, and
    converges to the same optimum as plain SGD.
    """

    def __init__(self, params: HeteroGLMParams, objective: Objective, free_row: int | None, X: np.ndarray) -> None:
        self.params = params
        self.free_row = free_row
        self.steps = 0
        self.moments: tuple[np.ndarray, np.ndarray] | None = None
        self.preconditioner = None
        if params.optimizer == "preconditioned":
            curvature = CURVATURE[objective.name] * (X.T @ X) / len(X)
            self.preconditioner = np.linalg.inv(curvature + max(params.alpha, 1e-6) * np.eye(X.shape[1]))

    def _penalised(self, W: np.ndarray) -> np.ndarray:
        out = W.copy()
        if self.free_row is not None:
            out[self.free_row] = 0.0
        return out

    def _direction(self, gradient: np.ndarray) -> np.ndarray:
        if self.preconditioner is not None:
            return self.preconditioner @ gradient
        if self.params.optimizer == "sgd":
            return gradient
        beta1, beta2 = ADAM_BETAS
        first, second = self.moments or (np.zeros_like(gradient), np.zeros_like(gradient))
        first, second = beta1 * first + (1 - beta1) * gradient, beta2 * second + (1 - beta2) * gradient**2
        self.moments = first, second
        return first / (1 - beta1**self.steps) / (np.sqrt(second / (1 - beta2**self.steps)) + 1e-8)

    def step(self, W: np.ndarray, gradient: np.ndarray, epoch: int) -> np.ndarray:
        c = self.params
        self.steps += 1
        lr = c.learning_rate / (np.sqrt(1.0 + epoch) if c.learning_rate_schedule == "inverse_sqrt" else 1.0)
        if c.penalty == "l2":
            gradient = gradient + c.alpha * self._penalised(W)
        W = W - lr * self._direction(gradient)
        if c.penalty == "l1":
            shrunk = np.sign(W) * np.maximum(np.abs(W) - lr * c.alpha, 0.0)
            if self.free_row is not None:
                shrunk[self.free_row] = W[self.free_row]
            W = shrunk
        return W


def arbiter_of(ctx: Context) -> str | None:
    arbiters = ctx.parties_with_role("arbiter")
    if len(arbiters) > 1:
        raise ValueError(f"at most one arbiter, got {arbiters}")
    return arbiters[0] if arbiters else None


def _agreed(params: HeteroGLMParams, objective: Objective) -> dict[str, object]:
    """The settings every party must share (the job gives all the same parameters; this catches mix-ups)."""
    return {"objective": objective.name, "taylor_point": objective.taylor_point,
            "exact_epochs": objective.exact_epochs,
            **{k: getattr(params, k) for k in ("epochs", "batch_size", "he_scheme", "key_bits", "tol")}}


def _setup(ctx: Context, guest: str, params: HeteroGLMParams, objective: Objective) -> dict:
    setup = SETUP.recv(ctx, guest)
    ours = _agreed(params, objective)
    differ = {k: (setup["agreed"][k], v) for k, v in ours.items() if setup["agreed"][k] != v}
    if differ:
        raise ValueError(f"party {ctx.party!r} and guest {guest!r} disagree on {differ} (guest's, ours): "
                         "give every party the same task parameters")
    return setup


def _check_batches(rows: int, batch_size: int, features: dict[str, int]) -> None:
    """Refuse batches no larger than a party's weight count (`features`, intercept included): a party that
    learns Xᵀd (its gradient) for a batch of at most d rows can solve it exactly for the batch's residuals
    (the guest: for the hosts' scores)."""
    smallest = min(batch_size, rows) if rows % batch_size == 0 or rows < batch_size else rows % batch_size
    party, width = max(features.items(), key=lambda item: item[1])
    if smallest <= width:
        raise ValueError(f"a batch of {smallest} rows (batch_size {batch_size}, {rows} rows) is no larger than the "
                         f"{width} weights of party {party!r}: its gradient would reveal the batch's residuals; choose "
                         f"a batch_size (and row count) that leaves every batch more than {width} rows")


def planned_epochs(params: HeteroGLMParams, rows: int) -> int:
    """`params.epochs`, or when it is None `AUTO_EPOCHS` passes with at least AUTO_MIN_STEPS steps (steps.py)."""
    return steps.planned_epochs(params.epochs, params.batch_size, rows, AUTO_EPOCHS)


def _batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def _order(seed: int, epoch: int, rows: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(rows)


@dataclass
class _Stopper:
    """The guest's stopping rule: early stopping on a validation score (lower is better) and `tol`."""

    params: HeteroGLMParams
    best: float = np.inf
    stale: int = 0

    def update(self, score: float | None, change: float | None) -> tuple[bool, bool]:
        """(go on, this epoch is the best so far)."""
        improved = score is None or score < self.best
        if score is not None:
            self.best, self.stale = (score, 0) if improved else (self.best, self.stale + 1)
        rounds = self.params.early_stopping_rounds
        stop = (rounds is not None and self.stale >= rounds) or (change is not None and change < self.params.tol)
        return not stop, improved


def fit_guest(ctx: Context, params: HeteroGLMParams, objective: Objective, X: np.ndarray, Y: np.ndarray,
              exposure: np.ndarray,
              intercept: tuple[int, np.ndarray] | None,
              valid: tuple[np.ndarray, Callable[[np.ndarray], float]] | None = None) -> np.ndarray:
    """The label holder's part: X (n, d) standardised, with the intercept column if `intercept` = (its row in
    W, its starting values (K,)); Y (n, K) targets. `valid`: validation X (same columns) and a metric of the
    joint validation scores (lower is better). Returns the guest's weights (d, K)."""
    hosts, arbiter = ctx.parties_with_role("host"), arbiter_of(ctx)
    check_hosts(objective, hosts)
    if params.early_stopping_rounds is not None and valid is None:
        raise ValueError(f"early_stopping_rounds needs validation rows: give guest {ctx.party!r} and every host a "
                         "`validate` input (aligned like `train`)")
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    n, K = Y.shape
    valid_rows = None if valid is None else len(valid[0])
    others = hosts + ([arbiter] if arbiter else [])
    SETUP.broadcast(ctx, {"rows": n, "classes": K, "seed": seed, "valid_rows": valid_rows,
                          "agreed": _agreed(params, objective)}, others)
    ready = READY.gather(ctx, hosts)
    for host, answer in ready.items():
        if answer["rows"] != n or answer["valid_rows"] != valid_rows:
            raise ValueError(f"host {host!r} has {answer['rows']} training and {answer['valid_rows']} validation rows, "
                             f"guest {ctx.party!r} {n} and {valid_rows}: align every party's rows first (a psi task) "
                             "and give all of them the same inputs")
    _check_batches(n, params.batch_size, {ctx.party: X.shape[1], **{h: a["features"] for h, a in ready.items()}})
    protocol = BatchProtocol(ctx, objective, exchange_keys(ctx, params.he_scheme, params.key_bits, arbiter), arbiter,
                             min(params.batch_size, n))
    protocol.prefetch(K, wait=True)
    optimizer = Optimizer(params, objective, None if intercept is None else intercept[0], X)
    stopper = _Stopper(params)
    W = np.zeros((X.shape[1], K))
    if intercept is not None:
        W[intercept[0]] = intercept[1]
    best = W
    epochs = planned_epochs(params, n)
    for epoch in range(epochs):
        started = time.perf_counter()
        before = W
        batches = _batches(_order(seed, epoch, n), params.batch_size)
        exact = objective.exact_in(epoch, epochs)
        protocol.prepare_epoch([len(rows) for rows in batches], K, exact)
        if exact:  # the exact residual's offline phase: this epoch's MPC tuples
            ctx.metrics.log("offline_seconds", round(time.perf_counter() - started, 3), step=epoch)
        for rows in batches:
            gradient = protocol.guest_gradient(X[rows], X[rows] @ W, Y[rows], exposure[rows]) / len(rows)
            W = optimizer.step(W, gradient, epoch)
        reports = REPORT.gather(ctx, hosts)
        ctx.metrics.log("epoch_seconds", round(time.perf_counter() - started, 3), step=epoch)
        change = None
        if params.tol > 0:
            change = float(np.sqrt(np.sum((W - before) ** 2) + sum(float(r["change"]) for r in reports.values())))
            ctx.metrics.log("weight_change", change, step=epoch)
        score = None
        if valid is not None:
            score = valid[1](valid[0] @ W + sum(np.asarray(r["valid"], dtype=np.float64) for r in reports.values()))
            ctx.metrics.log("validation", score, step=epoch)
        go, improved = stopper.update(score, change)
        go = go and epoch + 1 < epochs
        CONTROL.broadcast(ctx, {"go": go, "improved": improved}, others)
        ctx.progress(epoch + 1, epochs, f"epoch {epoch + 1}")
        if improved:
            best = W
        if not go:
            ctx.metrics.log("epochs", epoch + 1)
            break
    protocol.close()
    return best


def fit_host(ctx: Context, params: HeteroGLMParams, objective: Objective, X: np.ndarray,
             X_valid: np.ndarray | None) -> np.ndarray:
    """A feature holder's part; returns its weights (d, K) (K is set by the guest)."""
    guest, arbiter = ctx.parties_with_role("guest")[0], arbiter_of(ctx)
    setup = _setup(ctx, guest, params, objective)
    READY.send(ctx, guest, {"rows": len(X), "valid_rows": None if X_valid is None else len(X_valid),
                            "features": X.shape[1]})
    if setup["rows"] != len(X) or setup["valid_rows"] != (None if X_valid is None else len(X_valid)):
        raise ValueError(f"host {ctx.party!r} has {len(X)} training rows, guest {guest!r} {setup['rows']}: align "
                         "every party's rows first (a psi task) and give all of them the same inputs")
    n, K = len(X), int(setup["classes"])
    protocol = BatchProtocol(ctx, objective, exchange_keys(ctx, params.he_scheme, params.key_bits, arbiter),
                             arbiter, min(params.batch_size, n))
    protocol.prefetch(K, wait=True)
    optimizer = Optimizer(params, objective, None, X)
    W = np.zeros((X.shape[1], K))
    best = W
    epochs = planned_epochs(params, n)
    for epoch in range(epochs):
        before = W
        batches = _batches(_order(setup["seed"], epoch, n), params.batch_size)
        protocol.prepare_epoch([len(rows) for rows in batches], K, objective.exact_in(epoch, epochs))
        for rows in batches:
            W = optimizer.step(W, protocol.host_gradient(X[rows], X[rows] @ W) / len(rows), epoch)
        REPORT.send(ctx, guest, {"change": float(np.sum((W - before) ** 2)) if params.tol > 0 else None,
                                 "valid": None if X_valid is None else X_valid @ W})
        control = CONTROL.recv(ctx, guest)
        if control["improved"]:
            best = W
        if not control["go"]:
            break
    protocol.close()
    return best


def fit_arbiter(ctx: Context, params: HeteroGLMParams, objective: Objective) -> None:
    """The arbiter's part: hold the key and decrypt masked gradients, batch after batch."""
    guest = ctx.parties_with_role("guest")[0]
    setup = _setup(ctx, guest, params, objective)
    protocol = BatchProtocol(ctx, objective, exchange_keys(ctx, params.he_scheme, params.key_bits, ctx.party),
                             ctx.party, params.batch_size)
    batches = -(-int(setup["rows"]) // params.batch_size)
    for _ in range(planned_epochs(params, int(setup["rows"]))):
        for _ in range(batches):
            protocol.serve()
        if not CONTROL.recv(ctx, guest)["go"]:
            break
