"""Garbled circuits: circuits against numpy, garbled evaluation against plain, the two-party protocol, the wire."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.mpc.garbled import (
    compare,
    comparison_circuit,
    decode,
    encode,
    equality_circuit,
    evaluate_garbled,
    evaluate_plain,
    garble,
    to_bits,
)
from sharedml.runtime.simulate import SimulationError, simulate

PARTIES = ["alice", "bob"]
INT64 = np.iinfo(np.int64)
EDGES = [0, 1, -1, INT64.min, INT64.max, INT64.min + 1, INT64.max - 1]


def _pairs(signed: bool, bits: int = 64) -> st.SearchStrategy:
    """Lists of (x, y) pairs from the whole range, biased to edge values and to equal pairs."""
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    edges = [v for v in (*EDGES, low, high, low + 1, high - 1, high >> 1) if low <= v <= high]
    value = st.one_of(st.sampled_from(edges), st.integers(low, high))
    pair = st.one_of(st.tuples(value, value), value.map(lambda v: (v, v)))
    return st.lists(pair, min_size=1, max_size=40)


def _arrays(pairs: list[tuple[int, int]], signed: bool) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.int64 if signed else np.uint64
    return np.array([p[0] for p in pairs], dtype=dtype), np.array([p[1] for p in pairs], dtype=dtype)


def _garbled_run(circuit, x_bits: np.ndarray, y_bits: np.ndarray) -> np.ndarray:
    garbling = garble(circuit, len(x_bits))
    labels = encode(garbling.zero_labels, garbling.offset, np.concatenate([x_bits, y_bits], axis=1))
    return decode(evaluate_garbled(circuit, garbling.tables, labels), garbling.decoding)


@settings(max_examples=40, deadline=None)
@given(signed=st.booleans(), data=st.data())
def test_garbled_comparison_matches_plain_and_numpy(signed, data):
    x, y = _arrays(data.draw(_pairs(signed)), signed)
    x_bits, y_bits = to_bits(x, 64, signed=signed), to_bits(y, 64, signed=signed)
    for circuit, expected in ((comparison_circuit(64, signed=signed), x > y), (equality_circuit(64), x == y)):
        plain = evaluate_plain(circuit, x_bits, y_bits)
        np.testing.assert_array_equal(plain[:, 0], expected)
        np.testing.assert_array_equal(_garbled_run(circuit, x_bits, y_bits), plain)


@settings(max_examples=25, deadline=None)
@given(bits=st.integers(1, 9), signed=st.booleans(), data=st.data())
def test_narrow_circuits_on_every_width(bits, signed, data):
    x, y = _arrays(data.draw(_pairs(signed, bits)), signed)
    x_bits, y_bits = to_bits(x, bits, signed=signed), to_bits(y, bits, signed=signed)
    for circuit, expected in ((comparison_circuit(bits, signed=signed), x > y), (equality_circuit(bits), x == y)):
        np.testing.assert_array_equal(_garbled_run(circuit, x_bits, y_bits)[:, 0], expected)


def test_circuit_sizes():
    assert comparison_circuit(64).and_gates == 64
    assert equality_circuit(64).and_gates == 63


def test_to_bits_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="must lie in"):
        to_bits(np.array([128]), 8, signed=True)
    with pytest.raises(ValueError, match="must lie in"):
        to_bits(np.array([-1]), 8, signed=False)


def _protocol(x: np.ndarray, y: np.ndarray, recorder=None, **kwargs) -> dict[str, np.ndarray]:
    def run(ctx):
        values = x if ctx.party == "alice" else y
        return compare(ctx, ctx.peers[0], values, garbler="alice", **kwargs)

    return simulate(run, PARTIES, recorder=recorder)


@pytest.mark.parametrize(("signed", "op"), [(True, "gt"), (False, "gt"), (True, "eq")])
def test_protocol_matches_numpy(signed, op):
    rng = np.random.default_rng(7)
    n = 300
    if signed:
        x = rng.integers(INT64.min, INT64.max, n, dtype=np.int64, endpoint=True)
        y = rng.integers(INT64.min, INT64.max, n, dtype=np.int64, endpoint=True)
        x[: len(EDGES)], y[: len(EDGES)] = EDGES, EDGES[::-1]
    else:
        x = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        y = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        x[:3], y[:3] = [0, 2**64 - 1, 2**63], [2**64 - 1, 0, 2**63 - 1]
    y[-50:] = x[-50:]  # equal values
    results = _protocol(x, y, signed=signed, op=op)
    expected = x > y if op == "gt" else x == y
    np.testing.assert_array_equal(results["alice"], expected)
    np.testing.assert_array_equal(results["bob"], expected)


def test_protocol_spanning_several_chunks_and_narrow_width():
    rng = np.random.default_rng(3)
    x, y = rng.integers(-128, 128, (2, 9000), dtype=np.int64)
    results = _protocol(x, y, bits=8)
    np.testing.assert_array_equal(results["bob"], x > y)


def test_protocol_rejects_mismatched_setups():
    with pytest.raises(SimulationError, match="disagree"):
        _protocol(np.arange(3), np.arange(4))


def test_garbler_values_do_not_cross_the_wire():
    x = np.array([0x1234_5678_9ABC_DEF1, -0x0FED_CBA9_8765_4321, 0x5A5A_A5A5_3C3C_C3C3], dtype=np.int64)
    y = np.array([7, 8, 9], dtype=np.int64)
    payloads = []
    results = _protocol(x, y, recorder=lambda record: payloads.append(record.payload))
    np.testing.assert_array_equal(results["bob"], x > y)
    wire = b"".join(payloads)
    bits = to_bits(x, 64, signed=True)
    for encoding in (*(v.tobytes() for v in x), np.packbits(bits).tobytes(), bits.view(np.uint8).tobytes()):
        assert encoding not in wire
