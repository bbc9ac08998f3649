"""The table plumbing every model component shares: feature columns in, prediction tables out.

Components take pandas tables whose rows are already aligned across parties (a `psi` task's
`data`). A party's features are its numeric columns minus the ID columns (and the label, at the
label holder); prediction tables carry the ID columns, the label where known, the score(s) and the
predicted value, in the same layout for every model so that `evaluate` reads any of them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from pydantic import BaseModel, ConfigDict, Field

from ..runtime.component import ColumnList
from ..runtime.context import Context


class PredictParams(BaseModel):
    """Parameters of every batch-prediction component: which columns to carry into the predictions."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = Field("y", description="label column at the guest, if present, copied to the output")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"])


def feature_matrix(ctx: Context, data: pd.DataFrame, exclude: list[str], what: str = "train"
                   ) -> tuple[list[str], np.ndarray]:
    """This party's feature names and values: every column not in `exclude`, all of which must be numeric.

    Nothing is dropped silently: a text column is refused by name (declare it `categorical` or `exclude` it in
    the catalog), and constant or all-missing columns, which cannot help a model, are named in a warning."""
    if len(data) == 0:
        raise ValueError(f"party {ctx.party!r}: its `{what}` table has no rows (after a psi task: the parties share "
                         "no IDs; check that each party's id_columns hold the same kind of ID)")
    columns = [str(c) for c in data.columns if c not in exclude]
    text = [c for c in columns if not (is_numeric_dtype(data[c]) or is_bool_dtype(data[c]))]
    if text:
        raise ValueError(f"party {ctx.party!r}: column(s) {', '.join(map(repr, text))} of its `{what}` table are not "
                         f"numeric{_number_hint(data, text)}; in the dataset's catalog entry declare them "
                         "`categorical` (one-hot encoded), `exclude` them, or list them in `id_columns` if they "
                         "identify rows")
    if not columns:
        raise ValueError(f"party {ctx.party!r} has no feature columns (besides {exclude}) in its `{what}` table")
    X = data[columns].to_numpy(dtype=np.float64)
    _warn_useless(ctx, columns, X, what)
    return columns, X


def _number_hint(data: pd.DataFrame, text: list[str]) -> str:
    """A hint when text columns hold numbers written with thousands separators (e.g. "1,234")."""
    looks = [c for c in text if data[c].dropna().astype(str).str.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?").mean() > 0.5]
    return (f" ({', '.join(map(repr, looks))} look like numbers with thousands separators: write them without, "
            "or declare `dtypes: {column: float}` after fixing them)") if looks else ""


def _warn_useless(ctx: Context, columns: list[str], X: np.ndarray, what: str) -> None:
    missing = np.isnan(X).all(axis=0)
    constant = ~missing & (np.nanmax(X, axis=0, initial=-np.inf) == np.nanmin(X, axis=0, initial=np.inf))
    for mask, kind in ((missing, "all missing"), (constant, "constant")):
        if mask.any():
            names = [columns[i] for i in np.flatnonzero(mask)]
            ctx.log.warning("party %r: column(s) %s of its `%s` table are %s, so no model can learn from them; "
                            "`exclude` them in the catalog", ctx.party, ", ".join(map(repr, names)), what, kind)
            ctx.metrics.log(f"{kind.replace(' ', '_')}_columns", ", ".join(names))


def model_columns(ctx: Context, table: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
    """The model's feature columns of `table` (the input called `what`), or an error naming the absent ones."""
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ValueError(f"party {ctx.party!r}: the model needs column(s) {missing}, absent from its `{what}` table")
    return table[names].to_numpy(dtype=np.float64)


def label_column(ctx: Context, table: pd.DataFrame, label: str, what: str = "train",
                 task: Literal["binary", "multiclass", "regression"] | None = None) -> np.ndarray:
    """The label as float64, checked before any party computes: present, numeric, never missing or infinite,
    and for `task` binary 0/1 with both classes in training rows, for multiclass integers from 0. Errors name
    the party, the input, the column and the fix, never a value (an error also goes to the peers)."""
    where = f"party {ctx.party!r}: label column {label!r} of its `{what}` table"
    if label not in table.columns:
        raise ValueError(f"guest {ctx.party!r}: label column {label!r} not in its `{what}` table; declare `label` in "
                         "the dataset's catalog entry or set it in the task's params")
    if not (is_numeric_dtype(table[label]) or is_bool_dtype(table[label])):
        raise ValueError(f"{where} is not numeric; declare `positive_class` in the catalog entry (that class "
                         "becomes 1, every other 0)")
    y = table[label].to_numpy(dtype=np.float64)
    bad = int((~np.isfinite(y)).sum())
    if bad:
        raise ValueError(f"{where} is missing or infinite on {bad} of {len(y)} rows; drop or label those rows")
    if task == "binary":
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"{where} must hold 0/1 for a binary model; declare `positive_class` in the catalog "
                             "entry (that class becomes 1, every other 0)")
        if what == "train" and len(np.unique(y)) < 2:
            raise ValueError(f"{where} holds one class only; a binary model needs rows of both")
    elif task == "multiclass" and not ((y == np.round(y)) & (y >= 0)).all():
        raise ValueError(f"{where} must hold class numbers 0, 1, 2, ... for a multiclass model")
    return y


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
