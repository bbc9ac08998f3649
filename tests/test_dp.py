"""DP mechanisms, clipping and the accountant, cross-checked against `dp-accounting` called directly."""

from __future__ import annotations

import math
from typing import Literal

import dp_accounting
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from scipy.special import ndtr

from sharedml.crypto import dp
from sharedml.crypto.prg import SeededStream


def stream(label: bytes) -> SeededStream:
    return SeededStream(bytes(32), domain=b"test-dp|" + label)


# --- noise ------------------------------------------------------------------------------------------


def test_gaussian_noise_has_sigma():
    n, sigma = 400_000, 3.0
    noisy = dp.gaussian_mechanism(np.full(n, 10.0), sigma, stream(b"gauss"))
    noise = noisy - 10.0
    assert abs(noise.mean()) < 6 * sigma / math.sqrt(n)
    assert abs(noise.std() / sigma - 1) < 6 / math.sqrt(2 * n)
    assert stats.kstest(noise[:50_000] / sigma, "norm").pvalue > 1e-4
    assert dp.gaussian_noise((3, 4), 1.0, stream(b"shape")).shape == (3, 4)
    assert dp.gaussian_noise(5, 1.0, stream(b"odd")).shape == (5,)


def test_laplace_scale_is_sensitivity_over_epsilon():
    n, sensitivity, epsilon = 400_000, 2.0, 0.5
    noise = dp.laplace_mechanism(np.zeros(n), sensitivity, epsilon, stream(b"laplace"))
    scale = sensitivity / epsilon
    assert abs(np.abs(noise).mean() / scale - 1) < 6 / math.sqrt(n)  # E|X| = b, sd(|X|) = b
    assert abs(noise.mean()) < 6 * math.sqrt(2) * scale / math.sqrt(n)
    assert stats.kstest(noise[:50_000], "laplace", args=(0, scale)).pvalue > 1e-4


def test_noise_defaults_to_a_fresh_secure_stream():
    assert not np.array_equal(dp.gaussian_noise(8, 1.0), dp.gaussian_noise(8, 1.0))
    assert np.array_equal(dp.laplace_noise(8, 1.0, stream(b"x")), dp.laplace_noise(8, 1.0, stream(b"x")))
    with pytest.raises(ValueError):
        dp.laplace_mechanism([1.0], 1.0, 0.0)
    with pytest.raises(ValueError):
        dp.gaussian_noise(3, -1.0)


def _discrete_gaussian_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * sigma * sigma))
    return weights / weights.sum()


@pytest.mark.parametrize("sigma", [0.7, 1.5, 6.25])
def test_discrete_gaussian_matches_its_distribution(sigma):
    n = 60_000
    z = dp.discrete_gaussian(n, sigma, stream(b"dg%f" % sigma))
    assert z.dtype == np.int64 and z.shape == (n,)
    support = np.arange(-int(40 * sigma) - 5, int(40 * sigma) + 6)
    pmf = _discrete_gaussian_pmf(sigma, support)
    variance = float(np.sum(pmf * support**2.0))  # a little below sigma^2 for small sigma
    assert abs(z.var() / variance - 1) < 6 * math.sqrt(2 / n) + 0.01
    if sigma >= 1.5:
        assert abs(variance / sigma**2 - 1) < 1e-6
    assert abs(z.mean()) < 6 * math.sqrt(variance / n)
    expected = pmf * n  # chi-square goodness of fit over the values with enough mass
    keep = expected > 20
    observed = np.array([np.count_nonzero(z == k) for k in support[keep]])
    chi2 = np.sum((observed - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum()) > 1e-4


def test_discrete_gaussian_shape_and_checks():
    z = dp.discrete_gaussian((20, 30), 1e6, stream(b"big"))
    assert z.shape == (20, 30) and z.dtype == np.int64 and np.abs(z).max() > 1e5
    assert np.array_equal(dp.discrete_gaussian(50, 2.0, stream(b"r")), dp.discrete_gaussian(50, 2.0, stream(b"r")))
    for bad in [0.0, -1.0, 2.0**41]:
        with pytest.raises(ValueError):
            dp.discrete_gaussian(3, bad)


# --- analytic Gaussian calibration ------------------------------------------------------------------


def _balle_wang_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon) * ndtr(-a - b))


@pytest.mark.parametrize(
    ("epsilon", "delta", "sensitivity"),
    [(0.1, 1e-5, 1.0), (0.5, 1e-6, 3.0), (1.0, 1e-5, 1.0), (1.0, 1e-9, 0.25), (4.0, 1e-3, 1.0), (10.0, 1e-7, 2.0)],
)
def test_analytic_gaussian_sigma(epsilon, delta, sensitivity):
    sigma = dp.gaussian_sigma_analytic(epsilon, delta, sensitivity)
    assert _balle_wang_delta(sigma, epsilon, sensitivity) <= delta * (1 + 1e-9)  # plugging back in: it holds
    assert _balle_wang_delta(sigma * (1 - 1e-6), epsilon, sensitivity) > delta  # ... and is tight
    reference = dp_accounting.get_sigma_gaussian(epsilon, delta) * sensitivity
    assert sigma == pytest.approx(reference, rel=1e-9)
    if epsilon <= 1:
        assert sigma < math.sqrt(2 * math.log(1.25 / delta)) * sensitivity / epsilon
    with pytest.raises(ValueError):
        dp.gaussian_sigma_analytic(epsilon, 1.5, sensitivity)


# --- clipping ---------------------------------------------------------------------------------------

finite_rows = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, max_side=8),
    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=80, deadline=None)
@given(vectors=finite_rows, max_norm=st.just(0.0) | st.floats(1e-6, 1e3))
def test_clip_by_l2_norm_properties(vectors, max_norm):
    clipped = dp.clip_by_l2_norm(vectors, max_norm)
    norms, new_norms = np.linalg.norm(vectors, axis=1), np.linalg.norm(clipped, axis=1)
    assert np.all(new_norms <= max_norm)
    within = norms <= max_norm
    assert np.array_equal(clipped[within], vectors[within])
    over = ~within  # clipped rows keep their direction and land on the boundary
    assert np.allclose(new_norms[over], max_norm, rtol=1e-12, atol=0)
    scale = new_norms[over] / norms[over]
    assert np.allclose(clipped[over], vectors[over] * scale[:, None], rtol=1e-12, atol=1e-300)


def test_clip_helpers_edge_cases():
    assert np.array_equal(dp.clip_by_l2_norm(np.zeros((2, 3)), 1.0), np.zeros((2, 3)))
    assert np.linalg.norm(dp.clip_by_l2_norm(np.array([3.0, 4.0]), 1.0)) == pytest.approx(1.0)
    assert np.array_equal(dp.clip_by_value([-5.0, 0.5, 7.0], -1.0, 1.0), [-1.0, 0.5, 1.0])
    for bad in [lambda: dp.clip_by_l2_norm([[np.nan]], 1.0), lambda: dp.clip_by_l2_norm([[1.0]], -1.0)]:
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        dp.clip_by_value([0.0], 1.0, -1.0)


# --- accountant: figures must equal dp-accounting's own, exactly ---------------------------------


PLD_GRID = 1e-3  # coarser than the default 1e-4 to keep the PLD tests fast


def _ours(kind: Literal["rdp", "pld"]) -> dp.PrivacyAccountant:
    return dp.PrivacyAccountant(kind, pld_discretization=PLD_GRID)


def _direct(kind: str, event: dp_accounting.DpEvent, steps: int) -> dp_accounting.PrivacyAccountant:
    if kind == "rdp":
        accountant = dp_accounting.rdp.RdpAccountant()
    else:
        accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=PLD_GRID)
    accountant.compose(event, steps)
    return accountant


@pytest.mark.parametrize("kind", ["rdp", "pld"])
@pytest.mark.parametrize(("noise_multiplier", "steps", "rate"), [(2.0, 20, 1.0), (1.1, 300, 0.01), (1.0, 30, 0.1)])
def test_gaussian_accounting_equals_dp_accounting(kind, noise_multiplier, steps, rate):
    ours = _ours(kind)
    ours.compose_gaussian(noise_multiplier, steps, sampling_rate=rate)
    event = dp_accounting.GaussianDpEvent(noise_multiplier)
    if rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(rate, event)
    direct = _direct(kind, event, steps)
    assert ours.epsilon(1e-5) == direct.get_epsilon(1e-5)
    assert ours.delta(2.0) == direct.get_delta(2.0)


@pytest.mark.parametrize(("kind", "rate"), [("rdp", 1.0), ("pld", 1.0), ("pld", 0.1)])
def test_laplace_accounting_equals_dp_accounting(kind, rate):
    ours = _ours(kind)
    ours.compose_laplace(4.0, 20, sampling_rate=rate)
    event = dp_accounting.LaplaceDpEvent(4.0)
    if rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(rate, event)
    direct = _direct(kind, event, 20)
    assert ours.epsilon(1e-6) == direct.get_epsilon(1e-6)


def test_accountant_composes_sequentially_and_rejects_bad_input():
    ours = dp.PrivacyAccountant("rdp")
    ours.compose_gaussian(1.0, 10)
    first = ours.epsilon(1e-5)
    ours.compose_gaussian(1.0, 10)
    direct = _direct("rdp", dp_accounting.GaussianDpEvent(1.0), 20)
    assert ours.epsilon(1e-5) == direct.get_epsilon(1e-5) and ours.epsilon(1e-5) > first
    with pytest.raises(dp_accounting.UnsupportedEventError):
        dp.PrivacyAccountant("rdp").compose_laplace(1.0, 1, sampling_rate=0.5)
    with pytest.raises(ValueError):
        dp.PrivacyAccountant("moments")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ours.compose_gaussian(1.0, 1, sampling_rate=0.0)
