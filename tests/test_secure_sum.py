"""Secure sum and the fixed-point ring: equal to the plaintext sum, and nothing raw on the wire."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.crypto.sharing import FixedPointRing
from sharedml.fl.secure_sum import DEFAULT_RING, secure_sum
from sharedml.runtime.simulate import SimulationError, simulate

RING = FixedPointRing()
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=20))
@settings(max_examples=50, deadline=None)
def test_ring_encode_decode_round_trip(values):
    x = np.array(values)
    assert np.allclose(RING.decode(RING.encode(x)), x, rtol=0, atol=2.0**-32)


@given(st.lists(finite, min_size=1, max_size=8), st.integers(2, 5))
@settings(max_examples=30, deadline=None)
def test_shares_reconstruct_and_each_share_alone_looks_random(values, n):
    encoded = RING.encode(np.array(values))
    shares = RING.share(encoded, n)
    assert len(shares) == n
    assert np.array_equal(RING.reconstruct(shares), encoded)
    assert all(0 <= int(v) < RING.modulus for s in shares for v in s)


def test_encoding_refuses_values_that_would_wrap():
    with pytest.raises(OverflowError):
        RING.encode(np.array([2.0**100]))
    with pytest.raises(ValueError):
        RING.encode(np.array([np.nan]))


@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=2, max_size=4))
@settings(max_examples=15, deadline=None)
def test_secure_sum_equals_plain_sum(rows):
    parties = [f"p{i}" for i in range(len(rows))]
    inputs = dict(zip(parties, (np.array(r) for r in rows), strict=True))
    out = simulate(lambda ctx: secure_sum(ctx, inputs[ctx.party]), parties)
    expected = np.sum(list(inputs.values()), axis=0)
    for result in out.values():
        assert np.allclose(result, expected, rtol=1e-12, atol=len(rows) * 2.0**-32)


def test_abc_learn_only_the_total_and_no_input_crosses_the_wire():
    values = {"A": 10.0, "B": 15.0, "C": 20.0}
    records = []
    out = simulate(lambda ctx: secure_sum(ctx, values[ctx.party]), list(values), recorder=records.append)
    assert all(float(v) == 45.0 for v in out.values())
    wire = b"".join(r.payload for r in records)
    for v in values.values():
        encoded = int(DEFAULT_RING.encode(np.array(v)))
        for raw in (struct.pack("<d", v), encoded.to_bytes(32, "little"), encoded.to_bytes(32, "little")[12:18]):
            assert raw not in wire
    # every message is a share or a partial sum: 2 rounds x 2 peers per party
    assert len(records) == 3 * 2 * 2


def test_mismatched_shapes_are_reported_with_the_party():
    shapes = {"a": np.zeros(2), "b": np.zeros(3)}
    with pytest.raises(SimulationError, match="same shape"):
        simulate(lambda ctx: secure_sum(ctx, shapes[ctx.party]), ["a", "b"], timeout=5)
