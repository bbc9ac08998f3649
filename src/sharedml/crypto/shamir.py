"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

Why: secure aggregation must survive clients that drop out, so a client's secrets (a 32-byte mask
seed, an X25519 private key) are spread so that any `threshold` holders can rebuild them while
fewer learn nothing. Additive sharing (`sharing.py`) needs every share back; Shamir needs any t.

Construction: a secret s < p becomes the constant term of a random polynomial f of degree t-1 with
coefficients drawn uniformly from GF(p) by the OS CSPRNG; holder i gets (x_i, f(x_i)) for a nonzero,
distinct public x_i. Any t points give f(0) = s by Lagrange interpolation; any t-1 points are
uniformly distributed whatever s is (information-theoretic). p = 2^521 - 1 (a Mersenne prime) is
larger than every 32-byte secret, so a key fits in one field element.

Security caveats:
- Shares carry no integrity: a wrong share silently gives a wrong secret. Authenticate shares in
  transit (AES-GCM in secure aggregation) and, against active holders, use verifiable sharing.
- x-coordinates are public labels, not secrets; they must be distinct and nonzero (x = 0 is the secret).
- Python integer arithmetic is not constant-time; fine for semi-honest protocol use, not for a
  side-channel-exposed signing service.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

PRIME = (1 << 521) - 1
SHARE_SIZE = 66  # bytes of one share value: ceil(521 / 8)


def split(secret: int, threshold: int, xs: Sequence[int]) -> dict[int, int]:
    """Shares {x: f(x)} of `secret` for each holder label in `xs`; any `threshold` of them rebuild it."""
    if not 0 <= secret < PRIME:
        raise ValueError("secret must be an integer in [0, 2^521 - 1)")
    _check_labels(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be between 1 and the number of holders ({len(xs)}), got {threshold}")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x) for x in xs}


def combine(shares: Mapping[int, int], threshold: int) -> int:
    """The secret from at least `threshold` shares {x: f(x)} (uses the first `threshold` given)."""
    if len(shares) < threshold:
        raise ValueError(f"need {threshold} shares to reconstruct, got {len(shares)}")
    points = list(shares.items())[:threshold]
    xs = [x for x, _ in points]
    _check_labels(xs)
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    return secret


def split_bytes(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, int]:
    """`split` of a byte string of at most 64 bytes (read big-endian); rebuild with `combine_bytes`."""
    if len(secret) > 64:
        raise ValueError(f"at most 64 bytes fit one field element, got {len(secret)}")
    return split(int.from_bytes(secret, "big"), threshold, xs)


def combine_bytes(shares: Mapping[int, int], threshold: int, length: int) -> bytes:
    """The `length`-byte secret shared with `split_bytes`."""
    return combine(shares, threshold).to_bytes(length, "big")


def _evaluate(coefficients: list[int], x: int) -> int:
    """f(x) mod p by Horner's rule."""
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % PRIME
    return value


def _check_labels(xs: Sequence[int]) -> None:
    if any(not 0 < x < PRIME for x in xs):
        raise ValueError("share labels (x-coordinates) must be nonzero field elements; 0 would reveal the secret")
    if len(set(xs)) != len(xs):
        raise ValueError("share labels (x-coordinates) must be distinct")
