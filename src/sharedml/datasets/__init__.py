"""Data the project ships or generates, nothing downloaded: the example data sets (`load`, `path`,
`catalogue`; see `examples`) and the robustness suite's generators (`robustness`)."""

from .examples import catalogue, load, parties, path

__all__ = ["catalogue", "load", "parties", "path"]
