"""Importing this module registers the neural networks: homo_nn and homo_nn_predict.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import homo

__all__ = ['homo']
