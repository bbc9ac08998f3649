"""Networks for homo_nn's factory tests (`model: {type: factory, factory: "plugins.tiny_nets:..."}`)."""

from __future__ import annotations

from torch import nn


def two_layer(inputs: int, outputs: int) -> nn.Module:
    """What a user's factory looks like: it builds its network for the width and output count it is given."""
    return nn.Sequential(nn.Linear(inputs, 8), nn.Tanh(), nn.Linear(8, outputs))


def fixed_width(inputs: int, outputs: int) -> nn.Module:
    """A factory that ignores the input width, for the error it must give."""
    return nn.Linear(7, outputs)
