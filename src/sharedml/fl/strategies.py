"""Server-side aggregation strategies for horizontal federated learning: FedAvg, FedProx, FedAdam, FedYogi.

Why small classes: a strategy is the only thing that differs between these algorithms on the server,
so each one is a class with two methods. `configure_fit` says what the clients need to know for
local training (FedProx's proximal term), and `step` turns the averaged client delta into the next
global weights, keeping whatever optimiser state it needs. The average itself is computed outside
the strategy (`weighted_mean`), because under secure aggregation the server never sees individual
updates, only their weighted sum, and must be able to call `step` with that alone.

Clients return deltas, w_local - w_global. FedAdam and FedYogi follow Reddi et al., "Adaptive
Federated Optimization" (ICLR 2021), Algorithm 2: the averaged delta is treated as a pseudo-gradient
(with the sign that makes adding it a descent step), no bias correction, v initialised to tau^2.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

StrategyName = Literal["fedavg", "fedprox", "fedadam", "fedyogi"]


def weighted_mean(updates: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Sum_k n_k delta_k / sum_k n_k: the sample-weighted average of the clients' deltas."""
    if not updates:
        raise ValueError("no client updates to aggregate")
    total = sum(float(n) for _, n in updates)
    if total <= 0:
        raise ValueError(f"the clients' sample counts sum to {total}; each answering client must have rows")
    return sum(np.asarray(delta, dtype=np.float64) * float(n) for delta, n in updates) / total


class FedAvg:
    """McMahan et al. 2017: the new global model is the old one plus the sample-weighted mean delta."""

    def __init__(self, server_lr: float = 1.0) -> None:
        if not server_lr > 0:
            raise ValueError(f"server_lr must be positive, got {server_lr}")
        self.server_lr = server_lr

    def configure_fit(self) -> dict[str, Any]:
        """Settings sent to every sampled client with the global weights."""
        return {}

    def step(self, weights: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        return weights + self.server_lr * mean_delta

    def aggregate(self, weights: np.ndarray, updates: list[tuple[np.ndarray, float]]) -> np.ndarray:
        """New global weights from the clients' (delta, num_samples) pairs."""
        return self.step(weights, weighted_mean(updates))


class FedProx(FedAvg):
    """Li et al. 2020: FedAvg on the server; clients add mu/2 ||w - w_global||^2 to their local loss."""

    def __init__(self, proximal_mu: float, server_lr: float = 1.0) -> None:
        super().__init__(server_lr)
        if not proximal_mu > 0:
            raise ValueError(f"fedprox needs proximal_mu > 0 (got {proximal_mu}); with 0 it is fedavg")
        self.proximal_mu = proximal_mu

    def configure_fit(self) -> dict[str, Any]:
        return {"proximal_mu": self.proximal_mu}


class FedAdam(FedAvg):
    """Server Adam on the averaged delta: m = b1 m + (1-b1) d, v = b2 v + (1-b2) d^2, w += lr m / (sqrt v + tau)."""

    def __init__(self, server_lr: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3) -> None:
        super().__init__(server_lr)
        if not (0 <= beta_1 < 1 and 0 <= beta_2 < 1 and tau > 0):
            raise ValueError(f"need 0 <= beta_1, beta_2 < 1 and tau > 0; got {beta_1}, {beta_2}, {tau}")
        self.beta_1, self.beta_2, self.tau = beta_1, beta_2, tau
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def _second_moment(self, v: np.ndarray, squared: np.ndarray) -> np.ndarray:
        return self.beta_2 * v + (1 - self.beta_2) * squared

    def step(self, weights: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        if self.m is None or self.v is None:
            self.m = np.zeros_like(weights)
            self.v = np.full_like(weights, self.tau**2)
        self.m = self.beta_1 * self.m + (1 - self.beta_1) * mean_delta
        self.v = self._second_moment(self.v, mean_delta**2)
        return weights + self.server_lr * self.m / (np.sqrt(self.v) + self.tau)


class FedYogi(FedAdam):
    """Server Yogi: like FedAdam but v moves towards d^2 additively, v -= (1-b2) d^2 sign(v - d^2)."""

    def _second_moment(self, v: np.ndarray, squared: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta_2) * squared * np.sign(v - squared)


def make_strategy(name: StrategyName, *, server_lr: float | None = None, proximal_mu: float = 0.0,
                  beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3) -> FedAvg:
    """The strategy called `name`; server_lr defaults to 1 for fedavg/fedprox and 0.1 for the adaptive ones."""
    if name in ("fedavg", "fedprox"):
        lr = 1.0 if server_lr is None else server_lr
        return FedAvg(lr) if name == "fedavg" else FedProx(proximal_mu, lr)
    if name in ("fedadam", "fedyogi"):
        cls = FedAdam if name == "fedadam" else FedYogi
        return cls(0.1 if server_lr is None else server_lr, beta_1, beta_2, tau)
    raise ValueError(f"unknown strategy {name!r}; choose fedavg, fedprox, fedadam or fedyogi")
