"""The `one_hot` component: each categorical column of a party becomes one 0/1 column per category.

Categories come from the party's own column, so each party fits and applies it alone and nothing
crosses the wire; any role may run it. As in scikit-learn's `OneHotEncoder(handle_unknown="ignore")`:
categories are sorted, the indicator of category v of column c is named ``c_v``, missing values
seen at fit time get their own indicator ``c_nan``, and a value not seen at fit time (a new
category, or a missing value when none were seen) gets all zeros. The indicators replace the
column where it stood. By default a party encodes its text and categorical columns; integer-coded
categories must be named in `columns`. `max_categories` guards against encoding an ID-like column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from ...runtime.component import component
from ...runtime.context import Context
from .columns import TableParams, chosen_columns, fitted_model, require_columns


class OneHotParams(TableParams):
    max_categories: int = Field(100, ge=1, description="refuse columns with more distinct values than this")


@component("one_hot", params=OneHotParams, inputs=("data",), optional_inputs=("model",), outputs=("data", "model"))
def one_hot(ctx: Context, params: OneHotParams, data: pd.DataFrame, model: dict | None = None) -> dict[str, object]:
    """Replace this party's categorical columns by 0/1 indicator columns (no communication)."""
    model = _fit(ctx, params, data) if model is None else fitted_model(ctx, model, "one_hot")
    return {"data": _encode(ctx, model, data), "model": model}


def _fit(ctx: Context, params: OneHotParams, data: pd.DataFrame) -> dict:
    explicit = params.columns is not None and ctx.party in params.columns
    encoded: dict[str, dict] = {}
    for name in chosen_columns(ctx, params, data, "any" if explicit else "category"):
        values = data[name].dropna().unique()
        if len(values) > params.max_categories:
            raise ValueError(f"party {ctx.party!r}: column {name!r} has {len(values)} distinct values, more than "
                             f"`max_categories` ({params.max_categories}); raise it or leave the column out")
        try:
            categories = sorted(v.item() if isinstance(v, np.generic) else v for v in values)
        except TypeError:
            raise ValueError(f"party {ctx.party!r}: column {name!r} mixes value types (e.g. numbers and text); "
                             "convert it to text first") from None
        encoded[name] = {"categories": categories, "missing": bool(data[name].isna().any())}
    return {"component": "one_hot", "columns": encoded}


def _encode(ctx: Context, model: dict, data: pd.DataFrame) -> pd.DataFrame:
    require_columns(ctx, data, list(model["columns"]), "one_hot")
    blocks: list[pd.DataFrame] = []
    for name in data.columns:
        spec = model["columns"].get(name)
        if spec is None:
            blocks.append(data[[name]])
            continue
        column = data[name]
        codes = pd.Index(spec["categories"], dtype=object).get_indexer(column.astype(object))
        codes = np.where(column.isna(), -1, codes)
        indicators = codes[:, None] == np.arange(len(spec["categories"]))
        labels = [f"{name}_{v}" for v in spec["categories"]]
        if spec["missing"]:
            indicators = np.hstack([indicators, column.isna().to_numpy()[:, None]])
            labels.append(f"{name}_nan")
        blocks.append(pd.DataFrame(indicators.astype(np.float64), columns=labels, index=data.index))
    out = pd.concat(blocks, axis=1)
    repeated = sorted(set(out.columns[out.columns.duplicated()]))
    if repeated:
        raise ValueError(f"party {ctx.party!r}: one_hot would make column(s) {repeated} that already exist; rename "
                         "the clashing columns first")
    return out
