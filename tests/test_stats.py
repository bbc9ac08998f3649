"""Federated statistics against pandas on the pooled rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.fl.stats import federated_describe, from_sortable_keys, sortable_keys
from sharedml.runtime.simulate import simulate


@given(st.lists(st.floats(allow_nan=False), min_size=2, max_size=50))
@settings(max_examples=100, deadline=None)
def test_sortable_keys_preserve_float_order_and_invert(values):
    x = np.array(values)
    keys = sortable_keys(x)
    ordered = x[np.argsort(keys)]
    assert np.all(ordered[:-1] <= ordered[1:])  # key order is float order (-0.0 sorts before 0.0)
    assert np.array_equal(from_sortable_keys(keys), x)


def test_describe_matches_pandas_with_missing_values_and_extremes():
    rng = np.random.default_rng(7)
    frames = {}
    for i, party in enumerate(["a", "b", "c"]):
        n = 50 + 30 * i
        frame = pd.DataFrame({"amount": rng.normal(2e5, 1e5, n), "score": rng.integers(-9, 9, n).astype(float),
                              "tiny": rng.normal(0, 1e-6, n)})
        frame.loc[rng.choice(n, 5, replace=False), "score"] = np.nan
        frames[party] = frame
    frames["b"].loc[0, "amount"] = -3.25e7  # the global minimum sits at b
    out = simulate(lambda ctx: federated_describe(ctx, frames[ctx.party], ["amount", "score", "tiny"]),
                   list(frames))
    pooled = pd.concat(frames.values())
    for stats in out.values():
        stats = stats.set_index("column")
        assert list(stats["count"]) == list(pooled.count())
        assert np.allclose(stats["mean"], pooled.mean(), rtol=1e-9, atol=1e-12)
        assert np.allclose(stats["std"], pooled.std(), rtol=1e-7, atol=1e-10)
        assert np.array_equal(stats["min"], pooled.min())  # exact: found bit by bit
        assert np.array_equal(stats["max"], pooled.max())


def test_party_without_rows_still_gets_correct_figures():
    frames = {"a": pd.DataFrame({"x": [1.0, 5.0]}), "b": pd.DataFrame({"x": []}, dtype=float),
              "c": pd.DataFrame({"x": [-2.0]})}
    out = simulate(lambda ctx: federated_describe(ctx, frames[ctx.party], ["x"]), list(frames))
    row = out["b"].iloc[0]
    assert (row["count"], row["min"], row["max"]) == (3, -2.0, 5.0)
    assert row["mean"] == pytest.approx(4.0 / 3)


def test_no_raw_value_crosses_the_wire():
    frames = {p: pd.DataFrame({"x": np.random.default_rng(i).normal(size=20) * 1e4}) for i, p in enumerate("abc")}
    records = []
    simulate(lambda ctx: federated_describe(ctx, frames[ctx.party], ["x"]), list(frames), recorder=records.append)
    wire = b"".join(r.payload for r in records)
    for frame in frames.values():
        for v in frame["x"]:
            assert np.float64(v).tobytes() not in wire
        assert np.float64(frame["x"].sum()).tobytes() not in wire
