"""The Python API: `Federation` (parties, their tables) and sklearn-style models over the job components."""

from .estimators import (
    ESTIMATORS,
    FederatedModel,
    HeteroLinearRegression,
    HeteroLogisticRegression,
    HomoLogisticRegression,
    HomoNNClassifier,
    HomoSecureBoostClassifier,
    SecureBoostClassifier,
    SecureBoostRegressor,
    SSLogisticRegression,
    load,
)
from .federation import FederatedData, Federation, JobFailed

__all__ = ["ESTIMATORS", "FederatedData", "FederatedModel", "Federation", "HeteroLinearRegression",
           "HeteroLogisticRegression", "HomoLogisticRegression", "HomoNNClassifier", "HomoSecureBoostClassifier",
           "JobFailed", "SSLogisticRegression", "SecureBoostClassifier", "SecureBoostRegressor", "load"]
