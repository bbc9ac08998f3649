"""Non-linear operators on shared tensors: comparisons, ReLU, max/argmax, sigmoid, exp, reciprocal,
square roots and division.

Comparisons are exact (the sign bit of a difference, see boolean.py). The smooth functions are
approximations; each docstring states its error and its input domain, and tests check them against
numpy. Piecewise functions use region indicators that are exactly 0 or 1, so a polynomial evaluated
outside its region (even one that overflowed) is multiplied by an exact 0 and never leaks into the
result.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from .boolean import sign_bit, to_arithmetic
from .fixed import wrapping
from .tensor import SharedTensor, concatenate, stack


# -- comparisons ----------------------------------------------------------------------------------
def is_negative(x: SharedTensor) -> SharedTensor:
    """[x < 0] as a shared integer 0/1 (exact)."""
    bits = to_arithmetic(x.session, sign_bit(x.session, x.share))
    return SharedTensor(x.session, bits, 0)


def less(x: SharedTensor, y: SharedTensor | float | np.ndarray) -> SharedTensor:
    """[x < y] (exact, for |x - y| within the fixed-point range)."""
    return is_negative(x - y)


def greater(x: SharedTensor, y: SharedTensor | float | np.ndarray) -> SharedTensor:
    return is_negative(-(x - y))


def at_least(x: SharedTensor, thresholds: Sequence[float]) -> SharedTensor:
    """[x >= t] for each public threshold t, stacked along a new first axis; one comparison batch."""
    diffs = stack([x - float(t) for t in thresholds])
    return 1 - is_negative(diffs)


def where(condition: SharedTensor, a: SharedTensor, b: SharedTensor) -> SharedTensor:
    """a where the shared 0/1 `condition` is 1, else b; one multiplication."""
    return b + condition * (a - b)


def relu(x: SharedTensor) -> SharedTensor:
    """max(x, 0), exact up to the fixed-point encoding."""
    return (1 - is_negative(x)) * x


def maximum(x: SharedTensor, y: SharedTensor) -> SharedTensor:
    return where(greater(x, y), x, y)


def argmax(x: SharedTensor, axis: int = -1) -> tuple[SharedTensor, SharedTensor]:
    """(max, index of the max) along `axis` by a tournament: ⌈log2 n⌉ comparison rounds.

    Ties keep the lower index, as numpy.argmax does. The index is kept as a fixed-point number, so
    it reveals as a float holding an exact integer.
    """
    values = x.transpose(*_moved(x.ndim, axis))
    positions = np.arange(values.shape[0], dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    index = SharedTensor(x.session, np.zeros(values.shape, np.uint64), x.frac)
    if x.session.is_first:
        index.share[...] = x.session.fxp.encode(np.broadcast_to(positions, values.shape), x.frac)
    while len(values) > 1:
        half = len(values) // 2
        left, right = values[:half], values[half:2 * half]
        right_wins = greater(right, left)  # strict: ties keep the left, i.e. lower, index
        picked = stack([right_wins, right_wins]) * stack([right - left, index[half:2 * half] - index[:half]])
        new_values, new_index = left + picked[0], index[:half] + picked[1]
        if len(values) % 2:
            new_values, new_index = concatenate([new_values, values[-1:]]), concatenate([new_index, index[-1:]])
        values, index = new_values, new_index
    return values[0], index[0]


def amax(x: SharedTensor, axis: int = -1) -> SharedTensor:
    """The maximum along `axis` (numpy.amax)."""
    return argmax(x, axis)[0]


def _moved(ndim: int, axis: int) -> list[int]:
    axis %= ndim
    return [axis] + [i for i in range(ndim) if i != axis]


# -- piecewise polynomials ------------------------------------------------------------------------
def piecewise(x: SharedTensor, thresholds: Sequence[float], pieces: Sequence[float | np.ndarray],
              scale: float | None = None) -> SharedTensor:
    """Σ_k [x in region k] · P_k(x), regions split at the increasing `thresholds`.

    There is one more piece than thresholds. A piece is a constant, or (for a bounded region
    [t_{k-1}, t_k)) the coefficients, constant term first, of a polynomial in the region's own
    variable v = (x − mid) / half_width ∈ [-1, 1], which keeps powers and coefficients small so that
    fixed-point rounding stays at the 2^-f level. With `scale`, every piece is instead a polynomial
    in the one variable u = x / scale: one set of powers for all regions (cheaper), at the price of
    larger coefficients (more rounding) when a region is narrow compared with the scale. Costs one
    comparison batch, ⌈log2 degree⌉ rounds of powers and one multiplication round.
    """
    if len(pieces) != len(thresholds) + 1:
        raise ValueError("piecewise needs exactly one more piece than thresholds")
    steps = at_least(x, thresholds)  # steps[k] = [x >= thresholds[k]]
    regions = [1 - steps[0]] + [steps[k - 1] - steps[k] for k in range(1, len(thresholds))] + [steps[-1]]
    out = None
    varying: list[tuple[int, np.ndarray]] = []
    for k, (region, piece) in enumerate(zip(regions, pieces, strict=True)):
        if np.ndim(piece) == 0:  # a constant region costs nothing
            term = region * float(piece)
            out = term if out is None else out + term
        elif 0 < k < len(thresholds):
            varying.append((k, np.asarray(piece, dtype=np.float64)))
        else:
            raise ValueError("an unbounded region (below the first or above the last threshold) needs a constant")
    if varying:
        degree = max(len(c) for _, c in varying) - 1
        coefficients = np.zeros((len(varying), degree + 1))
        for row, (_, c) in enumerate(varying):
            coefficients[row, :len(c)] = c
        column = (-1,) + (1,) * x.ndim
        if scale is None:
            bounds = np.array([(thresholds[k - 1], thresholds[k]) for k, _ in varying])
            mid, half = bounds.mean(axis=1), (bounds[:, 1] - bounds[:, 0]) / 2
            local = (stack([x] * len(varying)) - mid.reshape(column)) * (1 / half).reshape(column)
            values = _polynomial(local, _powers(local, degree), coefficients.T.reshape((degree + 1,) + column))
        else:
            u = x * (1.0 / scale)
            values = _polynomial(stack([u] * len(varying)), [stack([p] * len(varying)) for p in _powers(u, degree)],
                                 coefficients.T.reshape((degree + 1,) + column))
        total = (stack([regions[k] for k, _ in varying]) * values).sum(axis=0)
        out = total if out is None else out + total
    return out


def _powers(u: SharedTensor, degree: int) -> list[SharedTensor]:
    """[u, u², …, u^degree] by repeated doubling: ⌈log2 degree⌉ multiplication rounds."""
    powers = [u]
    while len(powers) < degree:
        known = len(powers)
        count = min(known, degree - known)
        top = powers[known - 1]
        products = stack([top] * count) * stack(powers[:count])
        powers += [products[i] for i in range(count)]
    return powers


@wrapping
def _polynomial(x: SharedTensor, powers: list[SharedTensor], coefficients: np.ndarray) -> SharedTensor:
    """Σ_j c_j x^j as a local combination of shared powers; `coefficients[j]` is c_j, a scalar or an
    array broadcast against x. One truncation."""
    session = x.session
    f = session.fxp.frac_bits
    coefficients = np.asarray(coefficients, dtype=np.float64)
    acc = np.zeros(x.shape, np.uint64)
    for j, power in enumerate(powers, start=1):
        acc += power.share * session.fxp.encode(coefficients[j])
    if session.is_first:
        acc += session.fxp.encode(coefficients[0], 2 * f)
    return SharedTensor(session, acc, 2 * f).rescaled()


@cache
def _minimax(low: float, high: float, degree: int, function: str) -> np.ndarray:
    """Near-minimax coefficients of `function` on [low, high] in v = (x − mid) / half_width ∈ [-1, 1],
    by Lawson's iteratively reweighted least squares on a fine grid (reproducible, no tables to trust)."""
    v = np.linspace(-1.0, 1.0, 2001)
    target = _TARGETS[function]((low + high) / 2 + (high - low) / 2 * v)
    weights = np.ones_like(v)
    for _ in range(60):
        coefficients = np.polynomial.polynomial.polyfit(v, target, degree, w=weights)
        error = np.abs(np.polynomial.polynomial.polyval(v, coefficients) - target)
        weights *= 1 + error / error.max()
    return coefficients


_TARGETS = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "exp": np.exp}

# thresholds in x; per region a constant or the degree of a near-minimax fit; the shared variable's scale
_SIGMOID_PLANS = {
    # 4 comparisons, degree 5 in u = x/8; max error 3.5e-4 (the clamp beyond ±8; fits ≤ 2e-4)
    "minimax": ([-8.0, -2.0, 2.0, 8.0], [0.0, 5, 5, 5, 1.0], 8.0),
    # 6 comparisons, degrees 5-7 in each region's own variable; max error 3e-5 (fits ≤ 1.6e-5)
    "accurate": ([-14.0, -6.0, -2.0, 2.0, 6.0, 14.0], [0.0, 5, 6, 7, 6, 5, 1.0], None),
    # 4 comparisons, straight lines in x, no powers; max error 3.1e-2
    "linear": ([-8.0, -2.0, 2.0, 8.0], [0.0, 1, 1, 1, 1.0], 1.0),
}


@cache
def sigmoid_plan(method: str) -> tuple[list[float], list[float | np.ndarray], float | None]:
    """The thresholds, pieces and scale of a sigmoid method; fitted on first use (~0.2 s), then cached."""
    if method not in _SIGMOID_PLANS:
        raise ValueError(f"unknown sigmoid method {method!r}: use one of {sorted(_SIGMOID_PLANS)}")
    thresholds, plan, scale = _SIGMOID_PLANS[method]
    pieces: list[float | np.ndarray] = []
    for k, piece in enumerate(plan):
        if isinstance(piece, float):
            pieces.append(piece)
            continue
        low, high = thresholds[k - 1], thresholds[k]
        in_v = np.polynomial.Polynomial(_minimax(low, high, piece, "sigmoid"))
        if scale is None:
            pieces.append(in_v.coef)
        else:  # v = (x − mid) / half = (scale·u − mid) / half
            mid, half = (low + high) / 2, (high - low) / 2
            pieces.append(in_v(np.polynomial.Polynomial([-mid / half, scale / half])).coef)
    return thresholds, pieces, scale


def sigmoid(x: SharedTensor, method: str = "minimax") -> SharedTensor:
    """1 / (1 + e^-x) for any x in the fixed-point range.

    - `minimax` (default): degree-5 near-minimax polynomials on [-8,-2], [-2,2], [2,8], 0 or 1 outside;
      max abs error 3.5e-4 (the clamp at ±8 dominates). 4 comparisons per element.
    - `accurate`: 5 pieces of degree 5–7 on [-14, 14]; max abs error 3e-5. 6 comparisons.
    - `linear`: straight lines on the same pieces as `minimax`; max abs error 3.1e-2, no powers.
    """
    thresholds, pieces, scale = sigmoid_plan(method)
    return piecewise(x, thresholds, pieces, scale)


# -- exp, reciprocal, square roots ----------------------------------------------------------------
_EXP_SQUARINGS = 5


def exp(x: SharedTensor) -> SharedTensor:
    """e^x for x in [-16, 16]: a degree-6 minimax polynomial of e^u on u = x/32 ∈ [-0.5, 0.5], squared
    5 times. Relative error below 1e-3 (measured 5e-4: the polynomial's fixed-point error, amplified
    32-fold by the squarings); outside the domain the result is meaningless (no clamp)."""
    coefficients = _minimax(-0.5, 0.5, 6, "exp")  # in v = 2u
    v = x * (2.0 / (1 << _EXP_SQUARINGS))
    y = _polynomial(v, _powers(v, 6), coefficients)
    for _ in range(_EXP_SQUARINGS):
        y = y * y
    return y


def _octave_guess(x: SharedTensor, low: float, high: float, exponent: float) -> SharedTensor:
    """x^exponent to within a factor of 2^|exponent| from the octave of x: a piecewise constant from
    one comparison batch against the powers of two in [low, high]."""
    first, last = int(np.floor(np.log2(low))), int(np.ceil(np.log2(high)))
    octaves = list(range(first, last))
    thresholds = [2.0 ** e for e in octaves[1:]]
    values = [(1.5 * 2.0 ** e) ** exponent for e in octaves]  # the function at each octave's middle
    return piecewise(x, thresholds, values)


def reciprocal(x: SharedTensor, *, low: float = 2.0 ** -8, high: float = 2.0 ** 16, iterations: int = 4
               ) -> SharedTensor:
    """1/x for x in [low, high] (positive): octave initial guess (relative error ≤ 1/3), then Newton
    y ← y(2 − xy), which squares the relative error each step; after 4 steps the method's error is
    below 1e-7 and what remains is fixed-point rounding, about 2^-f absolute (4e-6 at f = 18)."""
    y = _octave_guess(x, low, high, -1.0)
    for _ in range(iterations):
        y = y * (2.0 - x * y)
    return y


def rsqrt(x: SharedTensor, *, low: float = 2.0 ** -8, high: float = 2.0 ** 16, iterations: int = 4
          ) -> SharedTensor:
    """1/√x for x in [low, high]: octave initial guess, then Newton y ← y(3 − xy²)/2. The error is
    fixed-point rounding, which x·y² amplifies for large x: below 1e-4 absolute on [0.01, 1000]."""
    y = _octave_guess(x, low, high, -0.5)
    for _ in range(iterations):
        y = y * (1.5 - 0.5 * x * (y * y))
    return y


def sqrt(x: SharedTensor, **domain: float) -> SharedTensor:
    """√x = x · (1/√x), same domain and error as `rsqrt` (relative)."""
    return x * rsqrt(x, **domain)


def divide(a: SharedTensor, b: SharedTensor, **domain: float) -> SharedTensor:
    """a / b for b in `reciprocal`'s domain."""
    return a * reciprocal(b, **domain)
