"""Weight of evidence (WOE) and information value (IV) of binned features, from per-bin class counts.

For a binary label (1 = event), bin b of a feature with e_b events and n_b non-events among the
E events and N non-events of all rows has

    WOE_b = ln((e_b / E) / (n_b / N)),    IV = Σ_b (e_b / E − n_b / N) · WOE_b

(FATE's sign: positive WOE means more events than average). A bin holding only one class would
give an infinite WOE, so, as in FATE, both of its counts get `adjustment` (default 0.5) added
before the shares are taken. A bin holding no rows (possible with equal-width bins, and the
missing-value bin of a feature without missing values) gets WOE 0, neutral evidence, and adds
nothing to IV; values that fall into it later transform to 0.

Everything here works on counts only, so the guest runs the same code on its own features and on
the per-bin counts it decrypted for host features.
"""

from __future__ import annotations

import numpy as np


def bin_counts(codes: np.ndarray, width: int, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows per bin, shape (features, width), and events (y == 1) per bin if `y` is given.

    One `bincount` over all features at once: feature j's codes are offset by j·width.
    """
    n, f = codes.shape
    flat = (codes.astype(np.int64) + np.arange(f, dtype=np.int64) * width).ravel()
    rows = np.bincount(flat, minlength=f * width).reshape(f, width)
    if y is None:
        return rows, None
    events = np.bincount(flat, weights=np.repeat(np.asarray(y, dtype=np.float64), f), minlength=f * width)
    return rows, np.rint(events).astype(np.int64).reshape(f, width)


def woe_iv(events: np.ndarray, rows: np.ndarray, adjustment: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """WOE per bin, shape (features, width), and IV per feature, from event and row counts per bin."""
    events = np.asarray(events, dtype=np.float64)
    non_events = np.asarray(rows, dtype=np.float64) - events
    total_events = events.sum(axis=1, keepdims=True)
    total_non_events = non_events.sum(axis=1, keepdims=True)
    if (total_events == 0).any() or (total_non_events == 0).any():
        raise ValueError("WOE needs both classes: the label has only events or only non-events")
    occupied = rows > 0
    one_class = occupied & ((events == 0) | (non_events == 0))
    event_share = np.where(one_class, events + adjustment, events) / total_events
    non_event_share = np.where(one_class, non_events + adjustment, non_events) / total_non_events
    with np.errstate(divide="ignore", invalid="ignore"):  # empty bins: replaced by 0 below
        woe = np.where(occupied, np.log(event_share / non_event_share), 0.0)
    iv = np.where(occupied, (event_share - non_event_share) * woe, 0.0).sum(axis=1)
    return woe, iv
