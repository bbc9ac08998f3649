"""Importing this module registers every preprocessing component (for the job engine's component list)."""

from . import encoding, hetero_binning, impute, scaling, selection, split

__all__ = ["encoding", "hetero_binning", "impute", "scaling", "selection", "split"]
