"""Importing this module registers the horizontal building blocks: secure_sum and federated_stats.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import secure_sum, stats

__all__ = ['secure_sum', 'stats']
