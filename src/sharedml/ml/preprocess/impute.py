"""The `impute` component: fill missing values of each party's own columns, column by column.

Each column gets its own fill value, from its own non-missing values (mean, median, most frequent
value, the smallest of ties as in scikit-learn's `SimpleImputer`) or a given constant, so each party
fits and applies it alone and nothing crosses the wire; any role may run it. By default a party
imputes its numeric feature columns; `columns` may also name text columns for `most_frequent` and
`constant`. To impute different columns differently, run one task per strategy, each with its
`columns`. The fitted `model` holds the fill value of each column; given a `model` input the
component fills new data with the same values.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype
from pydantic import Field

from ...runtime.component import component
from ...runtime.context import Context
from .columns import TableParams, chosen_columns, fitted_model, require_columns


class ImputeParams(TableParams):
    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field(
        "mean", description="fill value of each column: from its own values, or `fill_value`")
    fill_value: float | str = Field(0.0, description="the value `constant` fills in")


@component("impute", params=ImputeParams, inputs=("data",), optional_inputs=("model",), outputs=("data", "model"))
def impute(ctx: Context, params: ImputeParams, data: pd.DataFrame, model: dict | None = None) -> dict[str, object]:
    """Fill missing values of this party's own columns, each with its own statistic (no communication)."""
    model = _fit(ctx, params, data) if model is None else fitted_model(ctx, model, "impute")
    require_columns(ctx, data, list(model["fill"]), "impute")
    return {"data": data.fillna(model["fill"]), "model": model}


def _fit(ctx: Context, params: ImputeParams, data: pd.DataFrame) -> dict:
    explicit = params.columns is not None and ctx.party in params.columns
    names = chosen_columns(ctx, params, data, "any" if explicit and params.strategy in ("most_frequent", "constant")
                           else "number")
    fill: dict[str, float | int | str] = {}
    for name in names:  # a loop over columns; each statistic is one vectorised call
        column = data[name].dropna()
        if params.strategy == "constant":
            if isinstance(params.fill_value, str) and is_numeric_dtype(data[name]):
                raise ValueError(f"party {ctx.party!r}: `fill_value` {params.fill_value!r} is text but column "
                                 f"{name!r} is numeric; give a number or leave the column out of `columns`")
            fill[name] = params.fill_value
        elif column.empty:
            raise ValueError(f"party {ctx.party!r}: column {name!r} has no values to take a {params.strategy} of; "
                             "use `strategy: constant` for it or leave it out of `columns`")
        elif params.strategy == "most_frequent":
            counts = column.value_counts()
            fill[name] = _plain(min(counts.index[counts == counts.max()]))
        else:
            values = column.to_numpy(dtype=np.float64)
            fill[name] = float(np.mean(values) if params.strategy == "mean" else np.median(values))
    return {"component": "impute", "strategy": params.strategy, "fill": fill}


def _plain(value: object) -> float | int | str:
    """A numpy scalar as the Python value a model file can hold."""
    return value.item() if isinstance(value, np.generic) else value
