"""The `hetero_binning` component: bins of every party's features, and their WOE and IV at the guest.

Each party bins its own numeric columns (quantile or equal-width edges, one extra bin for missing
values). The guest computes WOE and IV of its own features in the clear and of host features from
per-bin event counts summed under homomorphic encryption (`hetero_woe.py`); hosts never see a label.

Outputs: `data` is the input table with the binned columns left alone (`transform: none`), replaced
by their bin codes (`bin`; float, missing values stay NaN) or by their WOE (`woe`); ID columns, the
label and columns not binned pass through. `model` is each party's own fit: its edges (and, where it
has them, its WOE per bin); the guest's also holds the IV and per-bin counts of every feature, host
features under their keys, and which party owns each key (what `feature_selection` needs). Given a
`model` input, the component applies that fit to `data` (e.g. the test split) without talking to
anyone.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ...crypto.he_schemes import HEParams
from ...runtime.component import component
from ...runtime.context import Context
from .binning import MIN_BIN, EqualWidthBinner, QuantileBinner
from .columns import TableParams, chosen_columns, fitted_model, numeric_block
from .hetero_woe import guest_exchange, host_exchange
from .woe import bin_counts, woe_iv

BINNERS = {"quantile": QuantileBinner, "equal_width": EqualWidthBinner}


class BinningParams(TableParams, HEParams):
    method: Literal["quantile", "equal_width"] = Field("quantile", description="equal-frequency or equal-width bins")
    bins: int = Field(10, ge=MIN_BIN, le=1024, description="bins per feature, plus one for missing values")
    transform: Literal["none", "bin", "woe"] = Field(
        "none", description="output `data`: unchanged, binned columns as bin codes, or as their WOE (hosts then "
        "receive the WOE of their own bins, see docs/security.md)")
    adjustment: float = Field(0.5, gt=0, description="added to both class counts of a bin lacking one class")
    anonymous: bool = Field(True, description="the guest sees host features as 'party:x<j>', not by name")


@component("hetero_binning", params=BinningParams, roles=("guest", "host"), inputs=("data",),
           optional_inputs=("model",), outputs=("data", "model"))
def hetero_binning(ctx: Context, params: BinningParams, data: pd.DataFrame,
                   model: dict | None = None) -> dict[str, object]:
    """Bin every party's features; WOE and IV of all of them at the guest, without showing hosts a label."""
    started = time.perf_counter()
    model = _fit(ctx, params, data) if model is None else fitted_model(ctx, model, "hetero_binning")
    out = transform(ctx, model, data, params.transform)
    ctx.metrics.log("features", len(model["features"]))
    ctx.metrics.log("seconds", round(time.perf_counter() - started, 3))
    return {"data": out, "model": model}


def transform(ctx: Context, model: dict, data: pd.DataFrame, how: str) -> pd.DataFrame:
    """`data` with the model's columns replaced by bin codes or WOE (`how`), or unchanged (`none`)."""
    names = model["features"]
    if how == "none" or not names:
        return data
    X = numeric_block(ctx, data, names, "hetero_binning")
    codes = QuantileBinner.from_dict(model["binner"]).transform(X)
    if how == "bin":
        values = np.where(np.isnan(X), np.nan, codes)
    elif "woe" not in model:
        raise ValueError(f"host {ctx.party!r} holds no WOE: its binning model was fitted without `transform: woe`, "
                         "and hosts receive their WOE only then; refit with `transform: woe`")
    else:
        values = np.asarray(model["woe"], dtype=np.float64)[np.arange(len(names)), codes]
    out = data.copy()
    out[names] = values
    return out


def _fit(ctx: Context, params: BinningParams, data: pd.DataFrame) -> dict:
    if len(ctx.parties_with_role("guest")) != 1:
        raise ValueError(f"hetero_binning needs exactly one guest (the label holder); roles: {ctx.roles}")
    names = chosen_columns(ctx, params, data)
    X = numeric_block(ctx, data, names, "hetero_binning")
    infinite = [n for n, bad in zip(names, np.isinf(X).any(axis=0), strict=True) if bad]
    if infinite:
        raise ValueError(f"party {ctx.party!r}: column(s) {infinite} hold infinite values, which have no bin; replace "
                         "them (or leave the columns out of `columns`)")
    binner = BINNERS[params.method](params.bins).fit(X)
    codes = binner.transform(X)
    model = {"component": "hetero_binning", "role": ctx.role, "method": params.method, "features": names,
             "binner": binner.to_dict()}
    if ctx.role == "guest":
        return _fit_guest(ctx, params, data, codes, model)
    keys = [f"{ctx.party}:x{j}" if params.anonymous else f"{ctx.party}:{name}" for j, name in enumerate(names)]
    host_exchange(ctx, codes, params.bins + 1, keys, params.key_bits)
    model["keys"] = keys
    if params.transform == "woe":
        model["woe"] = ctx.recv(ctx.parties_with_role("guest")[0], "binning/woe")
    return model


def _fit_guest(ctx: Context, params: BinningParams, data: pd.DataFrame, codes: np.ndarray, model: dict) -> dict:
    """WOE and IV of the guest's features and, through the encrypted exchange, of every host's."""
    y = _binary_label(ctx, data, params.label)
    found = guest_exchange(ctx, y, params.he_scheme, params.key_bits) if ctx.parties_with_role("host") else {}
    rows, events = bin_counts(codes, params.bins + 1, y)
    woe, iv = woe_iv(events, rows, params.adjustment)
    model["woe"] = woe.tolist()
    tables = [(ctx.party, model["features"], rows, events, woe, iv)]
    for host, bins in found.items():
        host_woe, host_iv = woe_iv(bins.events, bins.rows, params.adjustment)
        if params.transform == "woe":
            ctx.send(host, "binning/woe", host_woe.tolist())
        tables.append((host, bins.keys, bins.rows, bins.events, host_woe, host_iv))
    model.update(iv={}, owners={}, stats={})
    for party, keys, party_rows, party_events, party_woe, party_iv in tables:
        for j, key in enumerate(keys):
            if key in model["owners"]:
                raise ValueError(f"feature key {key!r} of party {party!r} repeats a key of party "
                                 f"{model['owners'][key]!r}; rename the guest column")
            model["owners"][key] = party
            model["iv"][key] = float(party_iv[j])
            model["stats"][key] = {"rows": party_rows[j].tolist(), "events": party_events[j].tolist(),
                                   "woe": party_woe[j].tolist()}
            ctx.metrics.log(f"iv/{key}", float(party_iv[j]))
    return model


def _binary_label(ctx: Context, data: pd.DataFrame, label: str | None) -> np.ndarray:
    """The label as 0/1 floats, or an error that names the guest and the setting (never label values)."""
    if label is None or label not in data.columns:
        raise ValueError(f"guest {ctx.party!r}: label column {label!r} not in its `data` table; set `label`")
    y = pd.to_numeric(data[label], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"guest {ctx.party!r}: WOE needs a binary label, 1 for an event and 0 otherwise, but column "
                         f"{label!r} holds other or missing values; recode it (or choose another `label`)")
    if y.min() == y.max():
        raise ValueError(f"guest {ctx.party!r}: label column {label!r} holds one class only; WOE needs both")
    return y
