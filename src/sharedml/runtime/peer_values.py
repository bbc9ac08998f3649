"""Checks on values a peer sent before they are used: a peer may be faulty or hostile, so a count, a
width or an index from it is a claim to check, never a size to allocate or a loop bound to trust.

The decoder already limits what can arrive at all (types, sizes); these checks say what is sensible
for one protocol value and name the peer when it is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class BadPeerValue(ValueError):
    """A peer sent a value of the wrong type or outside its range; names the peer and the value's meaning."""


def peer_int(value: Any, peer: str, what: str, low: int, high: int) -> int:
    """`value` as an int in [low, high], or BadPeerValue naming `peer` and `what` (booleans are not ints)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BadPeerValue(f"party {peer!r} sent a {type(value).__name__} as its {what}; expected an integer")
    if not low <= int(value) <= high:
        raise BadPeerValue(f"party {peer!r} sent {what} {int(value)}, outside {low}..{high}")
    return int(value)
