"""The `scale` component: standardise or min-max scale each party's own numeric columns.

Scaling needs only a column's own statistics, so each party fits and applies it to its own columns
and nothing crosses the wire; any role may run it. Conventions follow scikit-learn's
`StandardScaler` (mean and population standard deviation) and `MinMaxScaler` (to [0, 1]):
statistics ignore missing values, which stay missing, and a constant column (zero spread) is only
shifted, to 0, instead of divided by zero. The fitted `model` holds each column's offset and scale,
x' = (x − offset) / scale; given a `model` input the component applies it to new data (a column
outside the fitted range then leaves [0, 1], as with scikit-learn).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ...runtime.component import component
from ...runtime.context import Context
from .columns import TableParams, chosen_columns, fitted_model, numeric_block


class ScaleParams(TableParams):
    method: Literal["standard", "min_max"] = Field("standard", description="(x - mean) / std, or to [0, 1]")


@component("scale", params=ScaleParams, inputs=("data",), optional_inputs=("model",), outputs=("data", "model"))
def scale(ctx: Context, params: ScaleParams, data: pd.DataFrame, model: dict | None = None) -> dict[str, object]:
    """Standardise or min-max scale this party's own numeric columns (no communication)."""
    model = _fit(ctx, params, data) if model is None else fitted_model(ctx, model, "scale")
    out = data.copy()
    names = model["columns"]
    if names:
        X = numeric_block(ctx, data, names, "scale")
        out[names] = (X - np.asarray(model["offset"])) / np.asarray(model["scale"])
    return {"data": out, "model": model}


def _fit(ctx: Context, params: ScaleParams, data: pd.DataFrame) -> dict:
    names = chosen_columns(ctx, params, data)
    X = numeric_block(ctx, data, names, "scale")
    empty = [n for n, seen in zip(names, (~np.isnan(X)).any(axis=0), strict=True) if not seen]
    if empty:
        raise ValueError(f"party {ctx.party!r}: column(s) {empty} have no values to fit a scaler on; impute them "
                         "first or leave them out of `columns`")
    if params.method == "standard":
        offset, spread = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    else:
        offset = np.nanmin(X, axis=0)
        spread = np.nanmax(X, axis=0) - offset
    spread = np.where(spread > 0, spread, 1.0)  # constant column: shift only, as scikit-learn does
    return {"component": "scale", "method": params.method, "columns": names, "offset": offset.tolist(),
            "scale": spread.tolist()}
