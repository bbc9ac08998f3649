"""Job component `homo_scale`: federated standardisation of horizontally split rows.

Why a component of its own: `homo_lr` and `homo_nn` standardise inside (`standardize`, on by
default), but a pipeline may want the scaled table itself (for `homo_secureboost`, for a user's
model, for inspection) or one scaler fitted once and applied to later data. The local `scale`
component cannot do this: scaling each client by its own statistics gives every client different
units, so one global model fits none of them.

Every client scales `columns` by the mean and population standard deviation of all clients' rows
together (scikit-learn's StandardScaler on the union; missing values are skipped and stay missing, a
constant column is only shifted), computed by secure sums (`stats.federated_scaler`): every party of
the task, the aggregator too if the task has one, learns those global figures and nothing per
client. The `model` output is the scaler (`offset`, `scale` per column); given a `model` input the
component applies it to new data locally, without communication. The aggregator holds no rows, and
its copy of the model no column names (as for `homo_lr`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ...fl.secagg import AGGREGATOR, CLIENT
from ...fl.stats import apply_scaler, federated_scaler
from ...runtime.component import ColumnList, component
from ...runtime.context import Context
from .columns import fitted_model, numeric_block

COMPONENT = "homo_scale"


class HomoScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_columns: ColumnList = Field(default_factory=lambda: ["id"], description="passed through untouched")
    label: str | None = Field("y", description="the label column, passed through untouched")
    columns: list[str] | None = Field(None, description="the columns to scale, the same at every client; default: "
                                                        "every numeric column but the ID columns and the label")


@component(COMPONENT, params=HomoScaleParams, roles=(AGGREGATOR, CLIENT), inputs=("data",),
           optional_inputs=("model",), outputs=("data", "model"), min_parties=2)
def homo_scale(ctx: Context, params: HomoScaleParams, data: pd.DataFrame | None = None,
               model: dict | None = None) -> dict[str, object]:
    """Standardise every client's columns by the mean and std of all clients' rows together (secure sums)."""
    if (data is None) != (ctx.role == AGGREGATOR):
        raise ValueError(f"party {ctx.party!r} ({ctx.role}): every client needs a `data` input and the aggregator "
                         "none (it holds no rows)")
    if model is not None:
        model = fitted_model(ctx, model, COMPONENT)
    elif data is None:
        model = {"component": COMPONENT, "role": ctx.role, "columns": None, **federated_scaler(ctx, None, None)}
    else:
        names = _columns(ctx, params, data)
        model = {"component": COMPONENT, "role": ctx.role, "columns": names,
                 **federated_scaler(ctx, numeric_block(ctx, data, names, COMPONENT), names)}
    if data is None:
        return {"model": model}
    names = list(model["columns"])
    out = data.copy()
    out[names] = apply_scaler(model, numeric_block(ctx, data, names, COMPONENT))
    return {"data": out, "model": model}


def _columns(ctx: Context, params: HomoScaleParams, data: pd.DataFrame) -> list[str]:
    """`params.columns`, checked, or every numeric column but the ID columns and the label."""
    reserved = set(params.id_columns) | ({params.label} if params.label else set())
    if params.columns is None:
        names = [str(c) for c in data.select_dtypes("number").columns if c not in reserved]
        if not names:
            raise ValueError(f"client {ctx.party!r} has no numeric columns to scale besides {sorted(reserved)}")
        return names
    wrong = [c for c in params.columns if c in reserved or c not in data.columns
             or not np.issubdtype(data[c].dtype, np.number)]
    if wrong:
        raise ValueError(f"client {ctx.party!r}: `columns` entries {wrong} are absent from its `data`, not numeric, "
                         "or an ID column or the label")
    return list(params.columns)
