"""Importing this module registers every preprocessing component.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import encoding, hetero_binning, homo_scale, impute, scaling, selection, split

__all__ = ["encoding", "hetero_binning", "homo_scale", "impute", "scaling", "selection", "split"]
