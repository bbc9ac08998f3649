"""The operator layer: secure computation on secret-shared tensors (see session.py to start)."""

from .fixed import DEFAULT_FRAC_BITS, FixedPoint64
from .session import MPCSession
from .tensor import SharedTensor, concatenate, stack
from .triples import DealerSource, TripleSource

__all__ = ["DEFAULT_FRAC_BITS", "DealerSource", "FixedPoint64", "MPCSession", "SharedTensor", "TripleSource",
           "concatenate", "stack"]
