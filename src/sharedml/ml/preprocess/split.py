"""The `data_split` component: train / validate / test splits, the same rows in the same split everywhere.

Rows are aligned across parties (a `psi` task's output), so one assignment of row positions to
splits serves every party. The guest draws it (from the OS CSPRNG unless `seed` is set) and sends it
to the hosts as one byte per row; each party then cuts its own table. Rows keep their order within
each split.

How the assignment is made: rows are put in a random order (with `stratify`, grouped by the
guest's label, each class in random order), and position i of that order goes to the test split if
⌊(i+1)·f_test + ½⌋ > ⌊i·f_test + ½⌋, which picks round(n·f_test) positions spread evenly along the
order; the validate split is picked the same way among the remaining positions. Split sizes are
therefore within one row of n × fraction and depend on n alone, never on the labels; with
`stratify` every class's share of each split is within one or two rows of its share overall.

What hosts learn: which rows are in which split. Without `stratify` that is independent of
everything. With it, the assignment is uniformly random among those giving each split the class
counts above, so on its own it shows no row's label (rows of one split are exchangeable), but it
does show that each split has nearly the overall class mix: a host that knows or can predict many
labels of a split can narrow down the class counts of the rest of it. See docs/security.md.
"""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ...runtime.component import component
from ...runtime.context import Context
from .columns import TableParams

SPLITS = ("train", "validate", "test")


class SplitParams(TableParams):
    train: float = Field(0.8, ge=0, le=1, description="share of rows for training")
    validate_: float = Field(0.0, ge=0, le=1, alias="validate", description="share of rows for validation")
    test: float = Field(0.2, ge=0, le=1, description="share of rows for testing")
    stratify: bool = Field(False, description="keep the guest's class mix in every split")
    seed: int | None = Field(None, ge=0, description="for a reproducible split; default: fresh CSPRNG randomness")

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if abs(self.train + self.validate_ + self.test - 1) > 1e-9:
            raise ValueError(f"train + validate + test must be 1, got {self.train} + {self.validate_} + {self.test}")
        return self


@component("data_split", params=SplitParams, roles=("guest", "host"), inputs=("data",),
           outputs=("train", "validate", "test"))
def data_split(ctx: Context, params: SplitParams, data: pd.DataFrame) -> dict[str, object]:
    """Split aligned rows into train / validate / test, identically at every party (optionally stratified)."""
    guests = ctx.parties_with_role("guest")
    if len(guests) != 1:
        raise ValueError(f"data_split needs exactly one guest, which draws the split; roles: {ctx.roles}")
    if ctx.role == "guest":
        hosts = ctx.parties_with_role("host")
        for host, rows in ctx.gather("split/rows", hosts).items():
            if rows != len(data):
                raise ValueError(f"host {host!r} has {rows} rows but guest {ctx.party!r} has {len(data)}: align the "
                                 "parties' rows first (a psi task) and feed its `data` outputs to this task")
        classes = _classes(ctx, data, params.label) if params.stratify else None
        rng = np.random.default_rng(params.seed if params.seed is not None else secrets.randbits(128))
        assignment = assign(len(data), (params.train, params.validate_, params.test), rng, classes)
        ctx.broadcast("split/assignment", assignment, hosts)
    else:
        ctx.send(guests[0], "split/rows", len(data))
        assignment = np.asarray(ctx.recv(guests[0], "split/assignment"), dtype=np.uint8)
    out = {}
    for code, name in enumerate(SPLITS):
        out[name] = data.iloc[np.flatnonzero(assignment == code)].reset_index(drop=True)
        ctx.metrics.log(f"{name}_rows", len(out[name]))
    return out


def assign(n: int, fractions: tuple[float, float, float], rng: np.random.Generator,
           classes: np.ndarray | None = None) -> np.ndarray:
    """Split code per row (0 train, 1 validate, 2 test); see the module docstring for the rule."""
    keys = rng.random(n)
    order = np.argsort(keys) if classes is None else np.lexsort((keys, classes))
    train, validate, test = fractions
    codes = np.zeros(n, dtype=np.uint8)
    to_test = _evenly(n, test)
    codes[to_test] = 2
    rest = np.flatnonzero(~to_test)
    if validate:  # the share of validate among the rest, exactly 1 when there is no training split
        codes[rest[_evenly(len(rest), validate / (validate + train))]] = 1
    assignment = np.empty(n, dtype=np.uint8)
    assignment[order] = codes
    return assignment


def _evenly(m: int, share: float) -> np.ndarray:
    """Mask of round(m·share) of m positions, evenly spread: any run of L positions holds L·share ± 1."""
    i = np.arange(m)
    return np.floor((i + 1) * share + 0.5) > np.floor(i * share + 0.5)


def _classes(ctx: Context, data: pd.DataFrame, label: str | None) -> np.ndarray:
    if label is None or label not in data.columns:
        raise ValueError(f"guest {ctx.party!r}: `stratify` needs the label, but column {label!r} is not in its `data` "
                         "table; set `label`")
    if data[label].isna().any():
        raise ValueError(f"guest {ctx.party!r}: label column {label!r} has missing values; `stratify` needs a class "
                         "for every row")
    return pd.factorize(data[label], sort=True)[0]
