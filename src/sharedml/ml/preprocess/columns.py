"""Which columns a preprocessing component works on, at each party, and the checks on them.

Every party runs the same task with the same parameters, so per-party choices are keyed by party
name: ``columns: {bank: [age, income], telco: [minutes]}``; a party not named works on its default
columns (its numeric features, or for `one_hot` its text/categorical ones). ID columns and the label
are never transformed, only passed through.

Error messages travel to every peer of the job (a failed party aborts the others with its message),
so they name the setting, the party and the column the job author wrote, never the rest of a
party's schema; the full list of columns goes to this party's own log instead.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ...runtime.component import ColumnList
from ...runtime.context import Context

Kind = Literal["number", "category", "any"]
_DTYPES: dict[str, list[str]] = {"number": ["number"], "category": ["object", "string", "category"]}


class TableParams(BaseModel):
    """Settings every preprocessing component shares."""

    model_config = ConfigDict(extra="forbid")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="passed through untouched")
    label: str | None = Field("y", description="the guest's label column, passed through untouched")
    columns: dict[str, list[str]] | None = Field(
        None, description="party name -> the columns it processes; parties not named use their default columns")

    @property
    def reserved(self) -> set[str]:
        """Columns no component transforms."""
        return set(self.id_columns) | ({self.label} if self.label else set())


def chosen_columns(ctx: Context, params: TableParams, data: pd.DataFrame, kind: Kind = "number") -> list[str]:
    """This party's columns to process: its entry of `params.columns`, checked, or its default columns."""
    unknown = sorted(set(params.columns or {}) - set(ctx.roles))
    if unknown:
        raise ValueError(f"`columns` names {unknown}, which are not parties of this task ({ctx.parties}); "
                         "key `columns` by party name")
    if params.columns is None or ctx.party not in params.columns:
        candidates = data.columns if kind == "any" else data.select_dtypes(_DTYPES[kind]).columns
        return [str(c) for c in candidates if c not in params.reserved]
    chosen = params.columns[ctx.party]
    setting = f"columns[{ctx.party!r}]"
    for column in chosen:
        if column not in data.columns:
            ctx.log.error("party %r has columns %s", ctx.party, list(data.columns))
            raise ValueError(f"party {ctx.party!r}: column {column!r} of `{setting}` is not in its `data` table; "
                             "fix the name (this party's log lists its columns)")
        if column in params.reserved:
            raise ValueError(f"party {ctx.party!r}: column {column!r} of `{setting}` is an ID column or the label, "
                             "which pass through untouched; remove it from the list")
        if kind != "any" and column not in data.select_dtypes(_DTYPES[kind]).columns:
            raise ValueError(f"party {ctx.party!r}: column {column!r} of `{setting}` has dtype {data[column].dtype}, "
                             f"this component needs {'numeric' if kind == 'number' else 'text or categorical'} "
                             "columns; convert it first or remove it from the list")
    repeated = sorted({c for c in chosen if chosen.count(c) > 1})
    if repeated:
        raise ValueError(f"party {ctx.party!r}: `{setting}` lists {repeated} more than once")
    return list(chosen)


def fitted_model(ctx: Context, model: dict, component: str) -> dict:
    """`model` if it is a fit of `component` made by a party of this party's role, else a clear error."""
    if not isinstance(model, dict) or model.get("component") != component:
        made_by = model.get("component") if isinstance(model, dict) else type(model).__name__
        raise ValueError(f"party {ctx.party!r}: the `model` input is not a {component} model (it comes from "
                         f"{made_by!r}); connect the `model` output of a {component} task")
    if model.get("role", ctx.role) != ctx.role:
        raise ValueError(f"party {ctx.party!r} ({ctx.role}) got the {component} model of a {model['role']}; give "
                         "each party its own `model` output of the fitting task")
    return model


def require_columns(ctx: Context, data: pd.DataFrame, names: list[str], component: str) -> None:
    """An error naming the columns a fitted `component` model needs and `data` lacks, if any."""
    missing = [c for c in names if c not in data.columns]
    if missing:
        raise ValueError(f"party {ctx.party!r}: the {component} model needs column(s) {missing}, absent from its "
                         "`data` table; apply it to data with the columns it was fitted on")


def numeric_block(ctx: Context, data: pd.DataFrame, names: list[str], component: str) -> np.ndarray:
    """The float64 values of `names` in `data`, or an error naming the absent ones."""
    require_columns(ctx, data, names, component)
    return data[names].to_numpy(dtype=np.float64)
