"""Data the project ships or generates, nothing downloaded: the example data sets (`load`, `path`,
`catalogue`; see `examples`) and the robustness suite's generators (`robustness`)."""

from .examples import catalogue, folder, load, parties, path

__all__ = ["catalogue", "folder", "load", "parties", "path"]
