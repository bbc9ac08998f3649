"""Per-party feature preprocessing (each party transforms only its own columns)."""

from .binning import QuantileBinner

__all__ = ["QuantileBinner"]
