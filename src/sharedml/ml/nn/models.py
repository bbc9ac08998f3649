"""The PyTorch side of `homo_nn`: built-in networks, user factories, flat weights and local training.

Imported only when a homo_nn task runs, so that `import sharedml` needs no torch.

Why a flat vector: the round loop (`rounds.py`) aggregates one vector per client whatever the model,
so a network's floating-point state (parameters and float buffers, in `state_dict` order) is
flattened into one and loaded back from the global one after each round.

Determinism: torch's RNG is process-wide and in a simulation the clients are threads of one process,
so building a network and local training hold one lock and seed torch from (seed, client, round);
clients that share a process train one at a time. Each client uses one torch thread.

DP-SGD (opacus): per-sample gradients (`GradSampleModule`) clipped to `max_grad_norm` and noised by
`DPOptimizer`, over Poisson-sampled batches of expected size `batch_size`, ceil(rows / batch_size)
steps per epoch; opacus's RDP accountant composes every step of every round. Batch sampling and
noise come from a generator seeded by the OS CSPRNG, never from `seed`: a seed every party knows
would make the sampling public and the noise removable.
"""

from __future__ import annotations

import importlib
import math
import secrets
import threading
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...runtime.component import require_allowed
from ...runtime.context import Context
from ..metrics import accuracy, log_loss, mae, roc_auc
from .specs import CNNSpec, DPSGDParams, HomoNNParams, ModelSpec

METRICS = {"binary": ("loss", "auc", "accuracy"), "multiclass": ("loss", "accuracy"), "regression": ("loss", "mae")}
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
_RNG = threading.RLock()  # guards torch's process-wide RNG between seeding and the last draw that needs it


# --- networks -------------------------------------------------------------------------------------------


def build(spec: ModelSpec, inputs: int, outputs: int, seed: int | None = None, ctx: Context | None = None
          ) -> nn.Module:
    """The network `spec` describes, for rows of `inputs` features and `outputs` outputs, checked on a dry batch.

    Its initial weights come from `seed` (fresh if None): the aggregator's are the global model's start. A
    factory is imported only if `ctx`'s party allows it (no context: nothing is allowed).
    """
    if spec.type == "factory":
        require_allowed(spec.factory, ctx.allowed_code if ctx else (), ctx.party if ctx else "this process")
    with _RNG:
        torch.manual_seed(secrets.randbits(63) if seed is None else seed)
        if spec.type == "mlp":
            net = _mlp(spec.hidden, spec.activation, spec.dropout, inputs, outputs)
        elif spec.type == "cnn":
            net = ImageCNN(spec, inputs, outputs)
        else:
            net = _from_factory(spec.factory, inputs, outputs)
    _check_shapes(net, spec, inputs, outputs)
    return net


def _mlp(hidden: list[int], activation: str, dropout: float, inputs: int, outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers, nn.Linear(width, outputs))


class ImageCNN(nn.Module):
    """Rows of channels x height x width values as images: two (3x3 conv, ReLU, 2x2 max-pool) blocks, a linear head."""

    def __init__(self, spec: CNNSpec, inputs: int, outputs: int) -> None:
        super().__init__()
        pixels = spec.channels * spec.height * spec.width
        if pixels != inputs:
            raise ValueError(f"model cnn: channels x height x width = {spec.channels} x {spec.height} x {spec.width} "
                             f"= {pixels}, but the rows have {inputs} feature columns; set them so that their "
                             "product is the number of feature columns")
        self.shape = (spec.channels, spec.height, spec.width)
        first, second = spec.filters
        self.features = nn.Sequential(nn.Conv2d(spec.channels, first, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(first, second, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(second * (spec.height // 4) * (spec.width // 4), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(-1, *self.shape)).flatten(1))


def _from_factory(path: str, inputs: int, outputs: int) -> nn.Module:
    """Call `package.module:function`(inputs, outputs). Importing it runs that code with this node's rights, so
    installing it is each node's trust decision; every node of the job, aggregator included, needs the same code."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model factory {path!r}: cannot import {module_name!r} on this node ({err}); install that "
                         "code on every node of the job (importing it runs it: each node decides whether to trust it)"
                         ) from err
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"model factory {path!r}: module {module_name!r} has no function {name!r}")
    net = factory(inputs, outputs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model factory {path!r} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def _check_shapes(net: nn.Module, spec: ModelSpec, inputs: int, outputs: int) -> None:
    what = f"factory {spec.factory!r}" if spec.type == "factory" else spec.type
    try:
        shape = tuple(forward(net, np.zeros((2, inputs))).shape)
    except RuntimeError as err:
        raise ValueError(f"model {what} fails on rows of {inputs} feature columns ({err}); it must take as many "
                         "inputs as the table has feature columns (a factory gets that width as its first argument)"
                         ) from err
    if shape != (2, outputs):
        raise ValueError(f"model {what} maps 2 rows to shape {shape}, expected (2, {outputs}): one output for "
                         "binary and regression tasks, `classes` outputs for multiclass")


def forward(net: nn.Module, X: np.ndarray) -> torch.Tensor:
    """The network's raw outputs (logits or values) for rows X, in eval mode without gradients."""
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(np.array(X, dtype=np.float32)))


def predict(net: nn.Module, X: np.ndarray, task: str) -> np.ndarray:
    """P(y = 1) (binary), class probabilities (multiclass, one column each) or the predicted value (regression)."""
    out = forward(net, X)
    if task == "multiclass":
        return torch.softmax(out, dim=1).double().numpy()
    return (torch.sigmoid(out[:, 0]) if task == "binary" else out[:, 0]).double().numpy()


def metrics(task: str, score: np.ndarray, y: np.ndarray) -> np.ndarray:
    """METRICS[task] of predictions `score` (as `predict` returns them) against labels y."""
    if task == "binary":
        return np.array([log_loss(y, score), roc_auc(y, score), accuracy(y, score >= 0.5)])
    if task == "multiclass":
        picked = score[np.arange(len(y)), y.astype(np.int64)]
        return np.array([-np.mean(np.log(np.clip(picked, 1e-15, 1.0))), accuracy(y, score.argmax(axis=1))])
    return np.array([float(np.mean((score - y) ** 2)), mae(y, score)])


# --- weights: one flat vector for the round loop, named arrays for the saved model --------------------------


def _float_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if v.is_floating_point()}


def flatten(net: nn.Module) -> np.ndarray:
    """The float state as one float64 vector, in `state_dict` order."""
    return torch.cat([v.reshape(-1).double() for v in _float_state(net).values()]).numpy()


def load_flat(net: nn.Module, vector: np.ndarray) -> None:
    """Set the float state from a vector made by `flatten` (rounded to each tensor's dtype)."""
    flat = torch.tensor(vector, dtype=torch.float64)
    offset = 0
    with torch.no_grad():
        for value in _float_state(net).values():
            value.copy_(flat[offset:offset + value.numel()].view_as(value))
            offset += value.numel()


def state_arrays(net: nn.Module) -> dict[str, np.ndarray]:
    """The float state as named numpy arrays, for the saved model."""
    return {k: v.detach().cpu().numpy().copy() for k, v in _float_state(net).items()}


def load_arrays(net: nn.Module, arrays: dict[str, Any]) -> None:
    """Set the float state from saved arrays, refusing any missing, extra or misshapen one."""
    state = _float_state(net)
    if set(arrays) != set(state):
        raise ValueError(f"the saved weights {sorted(arrays)} do not fit the network, whose tensors are "
                         f"{sorted(state)}; was it saved from another architecture?")
    with torch.no_grad():
        for name, value in state.items():
            array = np.array(arrays[name])
            if array.shape != tuple(value.shape):
                raise ValueError(f"saved tensor {name!r} has shape {array.shape}, the network's {tuple(value.shape)}")
            value.copy_(torch.from_numpy(array))


# --- local training ---------------------------------------------------------------------------------------


def _loss(task: str, out: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out[:, 0], y, reduction=reduction)
    if task == "multiclass":
        return F.cross_entropy(out, y, reduction=reduction)
    return F.mse_loss(out[:, 0], y, reduction=reduction)


def _seed(seed: int | None, client: int, round_: int) -> int:
    if seed is None:
        return secrets.randbits(63)
    return int(np.random.SeedSequence([seed, client, round_]).generate_state(1, np.uint64)[0] >> 1)


class TorchClient:
    """A client's network as a `rounds.LocalModel`: local epochs from the global weights, validation metrics.

    Each round starts a fresh optimizer (momentum and Adam moments do not carry over between rounds).
    """

    def __init__(self, ctx: Context, params: HomoNNParams, net: nn.Module, X: np.ndarray, y: np.ndarray,
                 client: int, validation: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        torch.set_num_threads(1)  # one core per client: fair on small machines, and no oversubscription
        self.ctx, self.params, self.net, self.validation = ctx, params, net, validation
        self.metric_names = METRICS[params.task]
        self.size = len(flatten(net))
        self.num_samples = len(y)
        self.validates = validation is not None
        self._X = torch.from_numpy(np.array(X, dtype=np.float32))
        target = np.array(y, dtype=np.int64 if params.task == "multiclass" else np.float32)
        self._y = torch.from_numpy(target)
        self._client = client
        self._private = None if params.dp_sgd is None else PrivateSGD(net, params.dp_sgd, len(y), params.batch_size)

    def fit(self, weights: np.ndarray, settings: dict[str, Any], round_: int) -> np.ndarray:
        p = self.params
        with _RNG:
            torch.manual_seed(_seed(p.seed, self._client, round_))
            load_flat(self.net, weights)
            start = flatten(self.net)
            self.net.train()
            if p.optimizer == "sgd":
                optimizer: torch.optim.Optimizer = torch.optim.SGD(
                    self.net.parameters(), lr=p.learning_rate, momentum=p.momentum, weight_decay=p.weight_decay)
            else:
                optimizer = torch.optim.Adam(self.net.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
            if self._private is None:
                self._epochs(optimizer, float(settings.get("proximal_mu", 0.0)))
            else:
                epsilon = self._private.epochs(optimizer, self._X, self._y, p.task, p.local_epochs)
                self.ctx.metrics.log("dp_sgd_epsilon", epsilon, step=round_)
            return flatten(self.net) - start

    def _epochs(self, optimizer: torch.optim.Optimizer, mu: float) -> None:
        """Mini-batch training on shuffled rows; FedProx adds mu/2 ||w - w_global||^2 to the loss."""
        anchor = [w.detach().clone() for w in self.net.parameters()] if mu else []
        for _ in range(self.params.local_epochs):
            for rows in torch.randperm(self.num_samples).split(self.params.batch_size):
                optimizer.zero_grad()
                loss = _loss(self.params.task, self.net(self._X[rows]), self._y[rows], "mean")
                if mu:
                    pairs = zip(self.net.parameters(), anchor, strict=True)
                    loss = loss + mu / 2 * sum(((w - a) ** 2).sum() for w, a in pairs)
                loss.backward()
                optimizer.step()

    def evaluate(self, weights: np.ndarray) -> tuple[np.ndarray, int]:
        if self.validation is None:
            raise ValueError("this client has no validation rows")
        X, y = self.validation
        load_flat(self.net, weights)
        return metrics(self.params.task, predict(self.net, X, self.params.task), y), len(y)


class PrivateSGD:
    """DP-SGD over a client's rows with opacus; `epsilon` composes every step this client has taken so far."""

    def __init__(self, net: nn.Module, dp: DPSGDParams, rows: int, batch_size: int) -> None:
        try:
            from opacus import GradSampleModule
            from opacus.accountants import RDPAccountant
        except ImportError as err:
            raise ImportError(f"dp_sgd needs opacus ({err}); install it with: pip install 'sharedml[nn]'") from err
        try:
            self.module = GradSampleModule(net, loss_reduction="sum")
        except NotImplementedError as err:
            raise ValueError(f"dp_sgd: opacus cannot take per-sample gradients of this network ({err}); replace "
                             "those layers (BatchNorm by GroupNorm, for one) or leave dp_sgd out") from err
        self.dp, self.rows = dp, rows
        self.batch_size = min(batch_size, rows)
        self.sample_rate = self.batch_size / rows
        self.steps_per_epoch = math.ceil(rows / self.batch_size)
        self.accountant = RDPAccountant()
        self._generator = torch.Generator().manual_seed(secrets.randbits(63))

    def epochs(self, optimizer: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, task: str,
               epochs: int) -> float:
        """Train for `epochs` epochs; return epsilon at dp.delta after them."""
        from opacus.optimizers import DPOptimizer

        private = DPOptimizer(optimizer, noise_multiplier=self.dp.noise_multiplier,
                              max_grad_norm=self.dp.max_grad_norm, expected_batch_size=self.batch_size,
                              generator=self._generator)
        for _ in range(epochs * self.steps_per_epoch):
            rows = torch.rand(self.rows, generator=self._generator) < self.sample_rate
            private.zero_grad()
            _loss(task, self.module(X[rows]), y[rows], "sum").backward()
            private.step()
            self.accountant.step(noise_multiplier=self.dp.noise_multiplier, sample_rate=self.sample_rate)
        return float(self.accountant.get_epsilon(self.dp.delta))
