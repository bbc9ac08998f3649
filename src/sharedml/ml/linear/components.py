"""Importing this module registers the linear models: hetero_lr/linr/poisson, homo_lr, ss_lr/linr, with their predict.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import hetero, homo, ss_component

__all__ = ['hetero', 'homo', 'ss_component']
