"""Importing this module registers the tree components: hetero_secureboost and homo_secureboost, with their predict.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import hetero, homo

__all__ = ['hetero', 'homo']
