"""The MPC engine against numpy: arithmetic, truncation, comparisons and the non-linear operators, with
a trusted dealer (2 and 3 parties) and without one (2 parties, HE + OT); plus what crosses the wire."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sharedml.mpc import MPCSession, concatenate
from sharedml.mpc import functions as F
from sharedml.mpc.two_party import TwoPartySource
from sharedml.runtime.simulate import SimulationError, simulate

TWO = {"alice": "party", "bob": "party", "dealer": "dealer"}
THREE = {"alice": "party", "bob": "party", "carol": "party", "dealer": "dealer"}
RESOLUTION = 2.0 ** -18
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(compute, roles=TWO, **session):
    """compute(mpc, share) at every computing party; `share(values, owner)` inputs values; returns alice's result."""

    def party(ctx):
        with MPCSession(ctx, **session) as mpc:
            if mpc.is_dealer:
                return mpc.serve()

            def share(values, owner, **kw):
                return mpc.share(values if ctx.party == owner else None, owner, **kw)

            return compute(mpc, share)

    return simulate(party, roles, timeout=60)["alice"]


reals = arrays(np.float64, st.integers(1, 40), elements=st.floats(-1000, 1000, allow_nan=False))


@FAST
@given(x=reals, y=st.floats(-1000, 1000), roles=st.sampled_from([TWO, THREE]))
def test_linear_operations_match_numpy(x, y, roles):
    got = run(lambda m, s: ((s(x, "alice") + y) * 3 - s(x * 0 + y, "bob") + 0.5).reveal(), roles)
    np.testing.assert_allclose(got, (x + y) * 3 - y + 0.5, atol=10 * RESOLUTION)


@FAST
@given(x=reals, seed=st.integers(0, 2**32 - 1), roles=st.sampled_from([TWO, THREE]))
def test_products_match_numpy_within_one_unit_per_truncation(x, seed, roles):
    y = np.random.default_rng(seed).uniform(-50, 50, x.shape)
    got = run(lambda m, s: (s(x, "alice") * s(y, "bob")).reveal(), roles)
    # inputs are rounded to 2^-18, products truncated once: error ≤ |x|·δ + |y|·δ + δ
    assert np.all(np.abs(got - x * y) <= (np.abs(x) + np.abs(y) + 2) * RESOLUTION)


def test_matmul_sum_mean_and_public_products_match_numpy():
    rng = np.random.default_rng(1)
    a, b, w = rng.normal(size=(30, 8)), rng.normal(size=(8, 3)), rng.normal(size=8)

    def compute(m, s):
        x, y = s(a, "alice"), s(b, "bob")
        return [(x @ y).reveal(), (x @ w).reveal(), (a.T @ x).reveal(), x.sum(axis=0).reveal(), x.mean().reveal(),
                (x * 0.125).reveal(to="bob"), concatenate([x, x], axis=1).T[3:5].reveal()]

    for roles in (TWO, THREE):
        xy, xw, axa, col, mean, hidden, cat = run(compute, roles)
        np.testing.assert_allclose(xy, a @ b, atol=1e-4)
        np.testing.assert_allclose(xw, a @ w, atol=1e-4)
        np.testing.assert_allclose(axa, a.T @ a, atol=1e-3)
        np.testing.assert_allclose(col, a.sum(axis=0), atol=1e-4)
        np.testing.assert_allclose(mean, a.mean(), atol=1e-5)
        assert hidden is None  # revealed to bob only
        np.testing.assert_allclose(cat, np.concatenate([a, a], axis=1).T[3:5], atol=1e-5)


def test_tuple_truncation_never_makes_a_large_error():
    x = np.concatenate([np.linspace(-3e3, 3e3, 20001), [0.0, -RESOLUTION, RESOLUTION]])
    got = run(lambda m, s: (s(x, "alice") * s(x, "bob")).reveal(), truncation="tuple")
    encoded = np.rint(x * 2**18) / 2**18
    assert np.abs(got - encoded * encoded).max() <= RESOLUTION  # a wrong wrap would be off by ~2^28


def test_local_truncation_fails_no_more_often_than_its_documented_bound():
    """SecureML's local truncation is wrong with probability ≤ 2^(ℓ+1-64) for a value of ℓ bits:
    for |x·x| < 2^23 (ℓ = 23 + 36 = 59) that is 1/16, for |x·x| < 1 it is 2^-27."""
    x = np.concatenate([np.linspace(-2900, 2900, 20001), np.linspace(-1, 1, 20001)])
    got = run(lambda m, s: (s(x, "alice") * s(x, "bob")).reveal(), truncation="local")
    encoded = np.rint(x * 2**18) / 2**18
    wrong = np.abs(got - encoded * encoded) > RESOLUTION
    assert wrong[:20001].mean() < 1 / 16 + 0.01 and not wrong[20001:].any()
    assert np.all(np.isclose(np.abs(got - encoded * encoded)[wrong], 2.0**28, rtol=1e-6))  # wrapped by 2^64 / 2^36


def test_tuple_truncation_is_exact_for_three_parties_where_local_truncation_is_refused():
    x = np.linspace(-100, 100, 1001)
    got = run(lambda m, s: (s(x, "alice") * s(x, "carol")).reveal(), THREE)
    np.testing.assert_allclose(got, x * x, atol=300 * RESOLUTION)
    with pytest.raises(SimulationError, match="local .* truncation is correct for exactly 2 parties"):
        run(lambda m, s: None, THREE, truncation="local")


# around zero, and the ends of the encodable range
EDGES = np.array([0.0, RESOLUTION, -RESOLUTION, 1.0, -1.0, 2.0**40, -(2.0**40), 2.0**44 - 1, -(2.0**44 - 1)])


@FAST
@given(x=arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6)), roles=st.sampled_from([TWO, THREE]))
def test_comparisons_are_exact(x, roles):
    x = np.concatenate([x, EDGES])
    y = np.roll(x, 1)
    xe, ye = np.rint(x * 2**18) / 2**18, np.rint(y * 2**18) / 2**18  # what the encoding keeps

    def compute(m, s):
        a, b = s(x, "alice"), s(y, "bob")
        return F.less(a, b).reveal(), F.greater(a, b).reveal(), F.is_negative(a).reveal()

    less, greater, negative = run(compute, roles)
    np.testing.assert_array_equal(less, xe < ye)
    np.testing.assert_array_equal(greater, xe > ye)
    np.testing.assert_array_equal(negative, xe < 0)


def test_relu_max_and_argmax_match_numpy():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=200) * 10, EDGES[:5]])
    m = rng.normal(size=(25, 7))
    m[0] = 1.5  # ties: numpy keeps the first index
    m[:, 5] = np.where(np.arange(25) % 2, m.max(axis=1) + 1, m[:, 5])

    def compute(mpc, s):
        shared = s(m, "bob")
        best, index = F.argmax(shared, axis=1)
        return F.relu(s(x, "alice")).reveal(), best.reveal(), index.reveal(), F.amax(shared, axis=0).reveal()

    relu, best, index, column_max = run(compute)
    np.testing.assert_allclose(relu, np.maximum(x, 0), atol=RESOLUTION)
    np.testing.assert_allclose(best, m.max(axis=1), atol=RESOLUTION)
    np.testing.assert_array_equal(index, m.argmax(axis=1))
    np.testing.assert_allclose(column_max, m.max(axis=0), atol=RESOLUTION)


@pytest.mark.parametrize(("method", "bound"), [("minimax", 1e-3), ("accurate", 5e-5), ("linear", 3.2e-2)])
def test_sigmoid_error_is_within_its_documented_bound(method, bound):
    x = np.concatenate([np.linspace(-8, 8, 4001), [-1e4, -20, 20, 1e4]])
    got = run(lambda m, s: F.sigmoid(s(x, "alice"), method).reveal())
    assert np.abs(got - 1 / (1 + np.exp(-np.clip(x, -50, 50)))).max() <= bound


def test_exp_reciprocal_square_roots_and_division_match_numpy():
    rng = np.random.default_rng(4)
    x = np.linspace(-16, 16, 641)
    p = np.exp(rng.uniform(np.log(0.01), np.log(1000), 500))
    q = rng.normal(size=500) * 10

    def compute(m, s):
        a, b, c = s(x, "alice"), s(p, "bob"), s(q, "alice")
        domain = {"low": 0.01, "high": 1000}
        return [F.exp(a).reveal(), F.reciprocal(b, **domain).reveal(), F.rsqrt(b, **domain).reveal(),
                F.sqrt(b, **domain).reveal(), F.divide(c, b, **domain).reveal()]

    exp, recip, rsqrt, sqrt, quotient = run(compute)
    np.testing.assert_allclose(exp, np.exp(x), rtol=1e-3, atol=1e-5)
    # the input's own rounding (2^-19) is a relative error of up to 8e-5 at p = 0.01
    np.testing.assert_allclose(recip, 1 / p, rtol=3e-4, atol=2e-5)
    np.testing.assert_allclose(rsqrt, 1 / np.sqrt(p), rtol=3e-4, atol=1e-4)
    np.testing.assert_allclose(sqrt, np.sqrt(p), rtol=3e-3)
    np.testing.assert_allclose(quotient, q / p, atol=2e-3, rtol=3e-3)


@pytest.mark.parametrize("source", ["he", "ot"])
def test_dealer_free_tuples_from_he_and_ot_give_correct_results(source):
    rng = np.random.default_rng(5)
    a, w, x = rng.normal(size=(20, 6)), rng.normal(size=6), rng.uniform(-9, 9, 60)

    def compute(m, s):
        m.triples.prepare(matmul=(((20, 6), (6,)),), and_words=8 * 60, dabits=2 * 60, trunc={18: 2 * 60})
        shared = s(x, "alice")
        return [(s(a, "alice") @ s(w, "bob")).reveal(), F.less(shared, 1.0).reveal(), (shared * shared).reveal(),
                m.truncation, m.triples.pools["and"].size(), m.triples.pools["dabits"].size(),
                m.triples.pools[("trunc", 18)].size(), m.stats()]

    product, less, square, truncation, *left, stats = run(compute, ["alice", "bob"], triples=source)
    np.testing.assert_allclose(product, a @ w, atol=1e-4)
    np.testing.assert_array_equal(less, x < 1)
    np.testing.assert_allclose(square, x * x, atol=1e-3)
    assert truncation == "tuple"  # pairs from random shared bits, as exact as a dealer's
    assert all(left)  # the online phase drew only on the prepared pools: none ran dry and was refilled
    assert stats["rounds"] > 0 and stats["bytes_sent"] > 0


@pytest.mark.parametrize("matrix", ["ot", "he"])
def test_dealer_free_matrix_triples_and_truncation_pairs_satisfy_their_identities(matrix):
    """Matrix triples by OT (either operand choosing, by cost) or HE, and truncation pairs from random
    shared bits, summed over both parties' shares."""
    shapes = [((7, 3), (3, 2)), ((3, 40), (40,)), ((2, 3), (3, 50))]  # the last one: the left operand chooses

    def party(ctx):
        source = TwoPartySource(ctx, ["alice", "bob"], matrix=matrix, key_bits=1024, elementwise="ot")
        triples = [source.matmul(*pair) for pair in shapes] + [source.mul((5, 4))]
        pair = source.trunc(500, 18)
        return [(t.first, t.second, t.last) for t in triples], (pair.first, *pair.last)

    results = simulate(party, ["alice", "bob"], timeout=60)
    (alice, alice_pair), (bob, bob_pair) = results["alice"], results["bob"]
    for (a0, b0, c0), (a1, b1, c1), expected in zip(alice, bob, shapes + [None], strict=True):
        a, b = a0 + a1, b0 + b1
        np.testing.assert_array_equal(c0 + c1, a * b if expected is None else np.matmul(a, b))
    r, top, low = (mine + theirs for mine, theirs in zip(alice_pair, bob_pair, strict=True))
    np.testing.assert_array_equal(top, r >> np.uint64(63))
    np.testing.assert_array_equal(low, (r & np.uint64((1 << 63) - 1)) >> np.uint64(18))
    assert 0.45 < np.unpackbits(r.view(np.uint8)).mean() < 0.55  # r is uniform, not built from few bits


def test_opened_values_are_masked_and_inputs_never_cross_the_wire():
    """Every value a party opens is its share of x − a (a uniform triple value): for fixed, highly
    structured inputs the opened words must look uniform, and no raw encoding may appear anywhere."""
    x = np.full(4096, 3.0)  # constant input: any leak shows as a repeated or skewed word
    records = []

    def party(ctx):
        with MPCSession(ctx) as mpc:
            if mpc.is_dealer:
                return mpc.serve()
            a = mpc.share(x if ctx.party == "alice" else None, "alice")
            b = mpc.share(x if ctx.party == "bob" else None, "bob")
            return [(a * b).reveal(), F.less(a, b).reveal()]

    simulate(party, TWO, recorder=records.append)
    encoded = np.uint64(3 << 18).tobytes()
    assert all(encoded * 2 not in r.payload for r in records)  # no two adjacent raw inputs anywhere
    assert not any(r.dst == "dealer" and r.key.tag == "mpc/open" for r in records)  # the dealer sees no opening
    opened = [r for r in records if r.key.tag == "mpc/open"]
    words = np.concatenate([np.frombuffer(r.payload[-8 * 4096:], dtype=np.uint64) for r in opened[:2]])
    bits = np.unpackbits(words.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01  # ~uniform bits (65k words: 5 σ ≈ 0.0035)
    assert len(np.unique(words)) == len(words)  # no repeats among uniform 64-bit words


def test_configuration_errors_are_clear():
    with pytest.raises(SimulationError, match="needs a party with role 'dealer'"):
        run(lambda m, s: None, ["alice", "bob"])
    with pytest.raises(SimulationError, match="dealer-free tuples are for exactly 2 parties"):
        run(lambda m, s: None, ["alice", "bob", "carol"], triples="he")
    with pytest.raises(SimulationError, match="exceeds the fixed-point range"):
        run(lambda m, s: s(np.array([1e14]), "alice"))


def test_secure_sum_example_prints_the_total_and_sends_no_input_in_the_clear(capsys):
    runpy.run_path(str(EXAMPLES / "secure_sum_abc.py"))["main"]([])
    assert "total: 45" in capsys.readouterr().out
    records = []

    def party(ctx):
        with MPCSession(ctx, triples=None) as mpc:
            shares = [mpc.share([{"A": 10.0, "B": 15.0, "C": 20.0}[ctx.party]] if ctx.party == p else None, p)
                      for p in "ABC"]
            with pytest.raises(RuntimeError, match="cannot truncate"):
                shares[0] * 0.5
            return (shares[0] + shares[1] + shares[2]).reveal()

    assert simulate(party, ["A", "B", "C"], recorder=records.append)["A"] == [45.0]
    for value in (10, 15, 20):
        assert not any(np.uint64(value << 18).tobytes() in r.payload for r in records)
