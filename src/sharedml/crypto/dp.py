"""Differential privacy: noise mechanisms, clipping, and a privacy accountant over `dp-accounting`.

Why: aggregates and model updates released to other parties leak about individual rows; adding
calibrated noise to clipped contributions bounds that leak ((epsilon, delta)-DP), and the accountant
tracks the total over many releases (training steps).

Noise source: every sampler draws its bits from `SeededStream` (ChaCha20) keyed from `os.urandom`
by default (`secure_rng()`), never from numpy's predictable generators, so an observer of some noise
values cannot predict others. Passing a `SeededStream` with a known seed is for tests only.

- Laplace: sign bit times an exponential by inverse CDF from 53 random bits (tail cut at 36.7
  scales, probability 1e-16). Gaussian: Box–Muller from 53-bit uniforms (tail cut at 8.57 sigma,
  probability below 1e-17); the cut tails add at most 1e-16 to delta. `gaussian_sigma_analytic` is
  the exact calibration of Balle & Wang (ICML 2018), smaller than the classic sqrt(2 ln(1.25/delta)).
- `discrete_gaussian` is the exact sampler of Canonne, Kamath & Steinke (NeurIPS 2020): discrete
  Laplace proposals and Bernoulli(exp(-gamma)) rejections, all with integer arithmetic on the exact
  rational sigma^2 of the given float, so its output distribution is exactly the discrete Gaussian.

Security caveats:
- The continuous mechanisms compute in float64; floating-point noise is vulnerable to Mironov's
  attack (CCS 2012): the set of reachable outputs depends on the input, which can leak more than the
  nominal epsilon. For values that are encoded as integers anyway (fixed-point rings, counts), prefer
  `discrete_gaussian`, which has no such gap.
- Running times depend on the random draws (rejection loops); the discrete sampler's time depends
  on the sampled values, a timing side channel if an attacker can time the noise of one value.
- Clipping bounds sensitivity only if every contribution of one individual goes through it; the
  accountant's figures hold for the events you compose, with Poisson sampling only if the sampling
  really was Poisson.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.special import log_ndtr

from sharedml.crypto.prg import SeededStream

if TYPE_CHECKING:
    import dp_accounting

_U64_MAX = np.uint64(2**64 - 1)
_MAX_DISCRETE_SIGMA = 2.0**40  # keeps every intermediate of the discrete sampler within uint64/int64


def secure_rng() -> SeededStream:
    """A fresh noise source: ChaCha20 keyed with 32 bytes from the OS CSPRNG."""
    return SeededStream(os.urandom(32), domain=b"sharedml.dp.noise")


def _count(shape: int | tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _uniform_open(words: np.ndarray) -> np.ndarray:
    """Floats in (0, 1] from the top 53 bits of uint64 words."""
    return ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53


def laplace_noise(shape: int | tuple[int, ...], scale: float, rng: SeededStream | None = None) -> np.ndarray:
    """Laplace(0, scale) noise (density exp(-|x|/scale) / (2 scale)), float64."""
    if not scale > 0:
        raise ValueError("Laplace scale must be positive")
    words = (rng or secure_rng()).uint64(_count(shape))
    sign = 1.0 - 2.0 * (words & np.uint64(1)).astype(np.float64)  # bit 0; the magnitude uses bits 11..63
    return (scale * sign * -np.log(_uniform_open(words))).reshape(shape)


def laplace_mechanism(
    values: np.ndarray | float, sensitivity: float, epsilon: float, rng: SeededStream | None = None
) -> np.ndarray:
    """values + Laplace(sensitivity / epsilon) noise per coordinate: epsilon-DP for L1 sensitivity."""
    if not sensitivity > 0 or not epsilon > 0:
        raise ValueError("sensitivity and epsilon must be positive")
    x = np.asarray(values, dtype=np.float64)
    return x + laplace_noise(x.shape, sensitivity / epsilon, rng)


def gaussian_noise(shape: int | tuple[int, ...], sigma: float, rng: SeededStream | None = None) -> np.ndarray:
    """N(0, sigma^2) noise by Box–Muller, float64."""
    if not sigma > 0:
        raise ValueError("sigma must be positive")
    n = _count(shape)
    half = (n + 1) // 2
    words = (rng or secure_rng()).uint64(2 * half)
    radius = np.sqrt(-2.0 * np.log(_uniform_open(words[:half])))
    angle = (2.0 * np.pi) * (1.0 - _uniform_open(words[half:]))  # uniform in [0, 2 pi)
    z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:n]
    return (sigma * z).reshape(shape)


def gaussian_mechanism(values: np.ndarray | float, sigma: float, rng: SeededStream | None = None) -> np.ndarray:
    """values + N(0, sigma^2) noise per coordinate; calibrate sigma with `gaussian_sigma_analytic`."""
    x = np.asarray(values, dtype=np.float64)
    return x + gaussian_noise(x.shape, sigma, rng)


def _log_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """log of delta(sigma) = Phi(D/2s - eps s/D) - e^eps Phi(-D/2s - eps s/D) (Balle & Wang, Thm. 8)."""
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    log_first = float(log_ndtr(a - b))
    log_second = epsilon + float(log_ndtr(-a - b))
    return log_first + math.log1p(-math.exp(log_second - log_first)) if log_second < log_first else -math.inf


def gaussian_sigma_analytic(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest sigma (to 1e-12 relative) for which Gaussian noise is (epsilon, delta)-DP for L2 sensitivity.

    Bisection on the exact condition of Balle & Wang 2018; the returned sigma satisfies it.
    """
    if not epsilon > 0 or not 0 < delta < 1 or not sensitivity > 0:
        raise ValueError("need epsilon > 0, 0 < delta < 1 and sensitivity > 0")
    target = math.log(delta)
    lo = hi = float(sensitivity)
    while _log_delta(hi, epsilon, sensitivity) > target:
        lo, hi = hi, 2.0 * hi
    while _log_delta(lo, epsilon, sensitivity) <= target:
        lo, hi = 0.5 * lo, lo
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        if _log_delta(mid, epsilon, sensitivity) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def _uniform_below(rng: SeededStream, bounds: np.ndarray) -> np.ndarray:
    """Per-element uniform integers in [0, bounds) (uint64 bounds >= 1), by rejection."""
    out = np.empty_like(bounds)
    todo = np.arange(bounds.size)
    while todo.size:
        b = bounds[todo]
        words = rng.uint64(todo.size)
        ok = words <= _U64_MAX - (_U64_MAX % b + np.uint64(1)) % b  # largest multiple of b fits below
        out[todo[ok]] = words[ok] % b[ok]
        todo = todo[~ok]
    return out


def _bernoulli_exp(rng: SeededStream, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Bernoulli(exp(-num/den)) per element for uint64 num <= den (CKS Algorithm 1, gamma <= 1)."""
    k = np.ones(num.size, dtype=np.uint64)
    todo = np.arange(num.size)
    while todo.size:  # K counts successes of Bernoulli(gamma / K); the result is "K is odd"
        hit = _uniform_below(rng, den[todo] * k[todo]) < num[todo]
        todo = todo[hit]
        k[todo] += np.uint64(1)
    return (k & np.uint64(1)) == 1


def _bernoulli_exp_minus_one(rng: SeededStream, n: int) -> np.ndarray:
    one = np.ones(n, dtype=np.uint64)
    return _bernoulli_exp(rng, one, one)


def _bernoulli_fraction(rng: SeededStream, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Bernoulli(num/den) for object arrays of Python ints 0 <= num <= den, of any size.

    Compares a uniform real, 64 bits at a time, with the binary expansion of num/den; only on an
    exact tie of 64 bits (probability 2^-64) does it look at the next 64.
    """
    result = np.zeros(num.size, dtype=bool)
    num = num.copy()
    todo = np.arange(num.size)
    while todo.size:
        scaled = num[todo] << 64
        digits = scaled // den[todo]
        words = rng.uint64(todo.size).astype(object)
        result[todo] = words < digits
        tie = words == digits
        num[todo] = scaled - digits * den[todo]
        todo = todo[tie]
    return result


def _discrete_laplace(rng: SeededStream, t: int, n: int) -> np.ndarray:
    """n samples with P(z) proportional to exp(-|z|/t) (CKS Algorithm 2 with s = 1), int64."""
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        m = (n - filled) * 5 // 3 + 16  # about 60% of proposals pass the first test
        u = rng.integers_below(m, t)
        u = u[_bernoulli_exp(rng, u, np.full(m, t, dtype=np.uint64))]
        v = np.zeros(u.size, dtype=np.uint64)
        todo = np.arange(u.size)
        while todo.size:  # V ~ geometric: count successes of Bernoulli(exp(-1))
            todo = todo[_bernoulli_exp_minus_one(rng, todo.size)]
            v[todo] += np.uint64(1)
        x = (u + np.uint64(t) * v).astype(np.int64)
        negative = (rng.uint64(x.size) & np.uint64(1)).astype(bool)
        keep = ~(negative & (x == 0))  # else zero would be drawn twice as often
        z = np.where(negative, -x, x)[keep][: n - filled]
        out[filled : filled + z.size] = z
        filled += z.size
    return out


def discrete_gaussian(
    shape: int | tuple[int, ...], sigma: float | Fraction, rng: SeededStream | None = None
) -> np.ndarray:
    """Exact discrete Gaussian noise: P(z) proportional to exp(-z^2 / (2 sigma^2)) on the integers, int64.

    Canonne–Kamath–Steinke 2020, Algorithm 3 with t = floor(sigma) + 1, using the exact rational value
    of sigma^2. For integer rings (fixed-point encodings, counts); 0 < sigma <= 2^40.
    """
    sigma = Fraction(sigma)
    if not 0 < sigma <= _MAX_DISCRETE_SIGMA:
        raise ValueError(f"discrete Gaussian sigma must be in (0, 2^40], got {float(sigma)}")
    rng = rng or secure_rng()
    var = sigma * sigma
    n_var, d_var = var.numerator, var.denominator
    t = math.floor(sigma) + 1
    n = _count(shape)
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        y = _discrete_laplace(rng, t, (n - filled) * 4 // 3 + 16)  # 44-76% are accepted, depending on sigma
        # Accept y with probability exp(-gamma), gamma = (|y| - sigma^2/t)^2 / (2 sigma^2) = p / q:
        p = (np.abs(y).astype(object) * (d_var * t) - n_var) ** 2
        q = 2 * n_var * d_var * t * t
        whole = (p // q).astype(np.int64)
        alive = np.ones(y.size, dtype=bool)
        todo = np.flatnonzero(whole > 0)
        while todo.size:  # exp(-floor(gamma)) as floor(gamma) Bernoulli(exp(-1)) trials that all succeed
            alive[todo] = _bernoulli_exp_minus_one(rng, todo.size)
            whole[todo] -= 1
            todo = todo[alive[todo] & (whole[todo] > 0)]
        frac_num = p % q  # exp(-frac(gamma)) by CKS Algorithm 1 on the exact fraction
        k = np.ones(y.size, dtype=object)
        todo = np.flatnonzero(alive)
        while todo.size:
            hit = _bernoulli_fraction(rng, frac_num[todo], q * k[todo])
            todo = todo[hit]
            k[todo] += 1
        accepted = y[alive & (k.astype(np.int64) % 2 == 1)][: n - filled]
        out[filled : filled + accepted.size] = accepted
        filled += accepted.size
    return out.reshape(shape)


def clip_by_l2_norm(vectors: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale each row (last axis) down to L2 norm <= max_norm; rows already within are unchanged."""
    if not 0 <= max_norm < math.inf:
        raise ValueError("max_norm must be finite and non-negative")
    x = np.asarray(vectors, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot clip NaN or infinite values")
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    over = norms > max_norm
    x = np.where(over, x * (max_norm / np.where(over, norms, 1.0)), x)
    while np.any(over := np.linalg.norm(x, axis=-1, keepdims=True) > max_norm):
        x = np.where(over, x * (1.0 - 2.0**-50), x)  # rounding left a row a few ulps above the bound
    return x


def clip_by_value(values: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Clamp each value into [lower, upper] (bounds the sensitivity of sums to upper - lower)."""
    if not lower <= upper:
        raise ValueError("need lower <= upper")
    x = np.asarray(values, dtype=np.float64)
    if np.any(np.isnan(x)):
        raise ValueError("cannot clip NaN values")
    return np.clip(x, lower, upper)


class PrivacyAccountant:
    """Composes DP events with `dp-accounting`'s RDP or PLD accountant (add-or-remove-one neighbours).

    RDP is fast and slightly loose; PLD is tighter and slower. RDP handles Poisson sampling of
    Gaussian events only; anything it cannot account raises `dp_accounting.UnsupportedEventError`.
    """

    def __init__(self, kind: Literal["rdp", "pld"] = "rdp", *, pld_discretization: float = 1e-4) -> None:
        import dp_accounting  # deferred: it loads scipy.signal and scipy.stats (~1.5 s), needless for noise alone

        if kind == "rdp":
            self._accountant: dp_accounting.PrivacyAccountant = dp_accounting.rdp.RdpAccountant()
        elif kind == "pld":
            self._accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=pld_discretization)
        else:
            raise ValueError(f"accountant kind must be 'rdp' or 'pld', got {kind!r}")
        self.kind = kind

    def compose(self, event: dp_accounting.DpEvent, count: int = 1) -> None:
        """Add `count` repetitions of any `dp_accounting` event."""
        self._accountant.compose(event, count)

    def compose_gaussian(self, noise_multiplier: float, steps: int = 1, sampling_rate: float = 1.0) -> None:
        """`steps` Gaussian releases with sigma = noise_multiplier x L2 sensitivity, Poisson-sampled if rate < 1."""
        self.compose(_event("gaussian", noise_multiplier, sampling_rate), steps)

    def compose_laplace(self, noise_multiplier: float, steps: int = 1, sampling_rate: float = 1.0) -> None:
        """`steps` Laplace releases with scale = noise_multiplier x L1 sensitivity (sampling: PLD only)."""
        self.compose(_event("laplace", noise_multiplier, sampling_rate), steps)

    def epsilon(self, delta: float) -> float:
        """The epsilon of everything composed so far, at this delta."""
        return float(self._accountant.get_epsilon(delta))

    def delta(self, epsilon: float) -> float:
        """The delta of everything composed so far, at this epsilon."""
        return float(self._accountant.get_delta(epsilon))


def _event(
    mechanism: Literal["gaussian", "laplace"], noise_multiplier: float, sampling_rate: float
) -> dp_accounting.DpEvent:
    import dp_accounting

    if not 0 < sampling_rate <= 1:
        raise ValueError("sampling_rate must be in (0, 1]")
    kind = dp_accounting.GaussianDpEvent if mechanism == "gaussian" else dp_accounting.LaplaceDpEvent
    event = kind(noise_multiplier)
    return event if sampling_rate == 1 else dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
