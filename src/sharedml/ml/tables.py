"""The table plumbing every model component shares: feature columns in, prediction tables out.

Components take pandas tables whose rows are already aligned across parties (a `psi` task's
`data`). A party's features are its numeric columns minus the ID columns (and the label, at the
label holder); prediction tables carry the ID columns, the label where known, the score(s) and the
predicted value, in the same layout for every model so that `evaluate` reads any of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..runtime.component import ColumnList
from ..runtime.context import Context


class PredictParams(BaseModel):
    """Parameters of every batch-prediction component: which columns to carry into the predictions."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = Field("y", description="label column at the guest, if present, copied to the output")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"])


def feature_matrix(ctx: Context, data: pd.DataFrame, exclude: list[str]) -> tuple[list[str], np.ndarray]:
    """This party's feature names and values: every numeric column not in `exclude`."""
    columns = [str(c) for c in data.select_dtypes("number").columns if c not in exclude]
    if not columns:
        raise ValueError(f"party {ctx.party!r} has no numeric feature columns (besides {exclude}) in its table")
    return columns, data[columns].to_numpy(dtype=np.float64)


def model_columns(ctx: Context, table: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
    """The model's feature columns of `table` (the input called `what`), or an error naming the absent ones."""
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ValueError(f"party {ctx.party!r}: the model needs column(s) {missing}, absent from its `{what}` table")
    return table[names].to_numpy(dtype=np.float64)


def label_column(ctx: Context, table: pd.DataFrame, label: str, what: str = "train") -> np.ndarray:
    """The label as float64, or an error naming the party, the input and the setting to change."""
    if label not in table.columns:
        raise ValueError(f"guest {ctx.party!r}: label column {label!r} not in its `{what}` table; set `label`")
    return table[label].to_numpy(dtype=np.float64)


def column_scaling(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) that standardise a party's own columns (constant columns keep scale 1); identity if off."""
    if not standardize:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 0, std, 1.0)


def prediction_table(data: pd.DataFrame, id_columns: list[str], label: str | None, score: np.ndarray,
                     predicted: np.ndarray) -> pd.DataFrame:
    """ID columns, the label (if given), `score` (or `score_0..K-1` for class probabilities), `predicted`."""
    table = data[[c for c in id_columns if c in data.columns]].reset_index(drop=True)
    if label is not None:
        table[label] = data[label].to_numpy()
    if score.ndim == 1:
        table["score"] = score
    else:
        for k in range(score.shape[1]):
            table[f"score_{k}"] = score[:, k]
    table["predicted"] = predicted
    return table
