"""sharedml: machine learning across data silos, the data staying with its owners.

`import sharedml as sm` gives the Python API (`sm.Federation`, `sm.SecureBoostClassifier`, ...,
`sm.load`, `sm.datasets`); it is imported on first use, so that the services and party processes, which
import only the modules they need, do not pay for it.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

try:
    __version__ = metadata.version("sharedml")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_API = ("ESTIMATORS", "FederatedData", "FederatedModel", "Federation", "HeteroLinearRegression",
        "HeteroLogisticRegression", "HomoLogisticRegression", "HomoNNClassifier", "HomoSecureBoostClassifier",
        "JobFailed", "SSLogisticRegression", "SecureBoostClassifier", "SecureBoostRegressor", "load")
__all__ = ["__version__", "datasets", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(".api", __name__), name)
    if name == "datasets":
        return import_module(".datasets", __name__)
    raise AttributeError(f"module 'sharedml' has no attribute {name!r}")
