"""Importing this module registers `evaluate`.

The job engine imports every `components.py` in the package (`jobs.components.builtin_modules`)."""

from . import evaluate

__all__ = ['evaluate']
