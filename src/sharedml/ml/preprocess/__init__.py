"""Per-party feature preprocessing (each party transforms only its own columns)."""

from .binning import EqualWidthBinner, QuantileBinner

__all__ = ["EqualWidthBinner", "QuantileBinner"]
