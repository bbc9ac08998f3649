"""The `feature_selection` component: drop weak features, by IV across parties and by local statistics.

Two kinds of filter, all optional, a feature being kept only if it passes every filter that is set:

* IV filters (`iv_threshold`, `top_k`) need the `binning_model` output of a `hetero_binning` task at
  every party. They judge the features that binning covered (at all parties; `top_k` counts all of
  them together, not per party): the guest, which alone holds the IVs, decides and tells each host
  which of *its own* features stay, by their keys. A host learns nothing else, not even an IV.
  Features that were not binned are not judged by them.
* Local filters (`max_missing_rate`, `variance_threshold`) each party applies to its own columns,
  without talking to anyone; since the guest does not learn their verdicts on host columns, `top_k`
  counts features that a local filter may drop afterwards.

Outputs: `data` without the dropped columns (ID columns, the label and unjudged columns pass
through), and `model`, this party's kept and dropped columns (with the reason). Given a `model`
input, the component drops the same columns from `data`, without talking to anyone.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pydantic import Field

from ...runtime.component import component
from ...runtime.context import Context
from .columns import TableParams, chosen_columns, fitted_model, numeric_block, require_columns


class SelectionParams(TableParams):
    iv_threshold: float | None = Field(None, ge=0, description="keep binned features with IV >= this")
    top_k: int | None = Field(None, ge=1, description="keep the k binned features of highest IV, over all parties")
    max_missing_rate: float | None = Field(None, ge=0, le=1, description="drop columns with a larger share missing")
    variance_threshold: float | None = Field(None, ge=0, description="drop columns whose variance is <= this")

    @property
    def by_iv(self) -> bool:
        return self.iv_threshold is not None or self.top_k is not None


@component("feature_selection", params=SelectionParams, roles=("guest", "host"), inputs=("data",),
           optional_inputs=("binning_model", "model"), outputs=("data", "model"))
def feature_selection(ctx: Context, params: SelectionParams, data: pd.DataFrame, binning_model: dict | None = None,
                      model: dict | None = None) -> dict[str, object]:
    """Keep the features with enough IV (decided by the guest) and few missing values or enough variance."""
    if model is None:
        model = _fit(ctx, params, data, binning_model)
    else:
        model = fitted_model(ctx, model, "feature_selection")
        require_columns(ctx, data, model["kept"], "feature_selection")
    ctx.metrics.log("kept", len(model["kept"]))
    ctx.metrics.log("dropped", len(model["dropped"]))
    return {"data": data.drop(columns=[c for c in model["dropped"] if c in data.columns]), "model": model}


def _fit(ctx: Context, params: SelectionParams, data: pd.DataFrame, binning_model: dict | None) -> dict:
    if all(v is None for v in (params.iv_threshold, params.top_k, params.max_missing_rate, params.variance_threshold)):
        raise ValueError("feature_selection: set at least one of iv_threshold, top_k, max_missing_rate, "
                         "variance_threshold, or give a fitted `model` to apply")
    names = chosen_columns(ctx, params, data)
    dropped: dict[str, str] = {}
    if params.by_iv:
        if binning_model is None:
            raise ValueError(f"party {ctx.party!r}: iv_threshold/top_k need the `binning_model` input (the `model` "
                             "output of a hetero_binning task) at every party")
        binning_model = fitted_model(ctx, binning_model, "hetero_binning")
        judged = _iv_verdicts(ctx, params, binning_model)
        dropped.update({name: reason for name, reason in judged.items() if name in names})
    X = numeric_block(ctx, data, names, "feature_selection")
    if params.max_missing_rate is not None:
        rate = np.isnan(X).mean(axis=0)
        dropped.update({n: f"missing rate {r:.4g} > {params.max_missing_rate}"
                        for n, r in zip(names, rate, strict=True) if r > params.max_missing_rate and n not in dropped})
    if params.variance_threshold is not None:
        with warnings.catch_warnings():  # an all-missing column: variance NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            variance = np.nanvar(X, axis=0)
        dropped.update({n: f"variance {v:.4g} <= {params.variance_threshold}"
                        for n, v in zip(names, variance, strict=True)
                        if not v > params.variance_threshold and n not in dropped})
    return {"component": "feature_selection", "role": ctx.role, "kept": [n for n in names if n not in dropped],
            "dropped": dropped}


def _iv_verdicts(ctx: Context, params: SelectionParams, binning_model: dict) -> dict[str, str]:
    """This party's binned features that the IV filters drop, with the reason; the guest tells each host."""
    guest = ctx.parties_with_role("guest")[0]
    if ctx.role == "host":
        keys = dict(zip(binning_model["keys"], binning_model["features"], strict=True))
        verdict = ctx.recv(guest, "selection/dropped")
        unknown = [k for k in verdict if k not in keys]
        if unknown:
            raise ValueError(f"host {ctx.party!r}: the guest judged features {unknown} that are not in this host's "
                             "`binning_model`; give every party the model of the same hetero_binning task")
        return {keys[k]: "IV filter (decided by the guest)" for k in verdict}
    if "iv" not in binning_model:
        raise ValueError(f"guest {ctx.party!r}: its `binning_model` holds no IVs; connect the guest's `model` output "
                         "of a hetero_binning task")
    ranked = sorted(binning_model["iv"].items(), key=lambda item: (-item[1], item[0]))
    dropped: dict[str, str] = {}
    for rank, (key, iv) in enumerate(ranked):
        if params.iv_threshold is not None and iv < params.iv_threshold:
            dropped[key] = f"IV {iv:.4g} < {params.iv_threshold}"
        elif params.top_k is not None and rank >= params.top_k:
            dropped[key] = f"IV rank {rank + 1} > top_k {params.top_k}"
    owners = binning_model["owners"]
    for host in ctx.parties_with_role("host"):
        ctx.send(host, "selection/dropped", [k for k in dropped if owners[k] == host])  # keys only, never IVs
    return {k: r for k, r in dropped.items() if owners[k] == ctx.party}
