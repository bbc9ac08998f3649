"""A factory module that must never be imported unless allowed: tests check it stays out of sys.modules."""

from __future__ import annotations

from torch import nn


def build(inputs: int, outputs: int) -> nn.Module:
    return nn.Linear(inputs, outputs)
