"""Joint prediction with a SecureBoost model: each host sends, in one message, the direction every
row takes at every node the host owns; the guest walks the trees with those bits and its own
features. Thresholds never leave their owner; leaf values never leave the guest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...runtime.context import Context
from ...runtime.messages import Message, Protocol
from ..preprocess.binning import QuantileBinner
from .host_model import HostSplit, NodeKey, splits_of
from .objectives import get_objective, initial_margin

ROUTING_BITS = Message("{prefix}/bits", "host", "guest",
                       "{rows: n, keys: ['tree:node', ...], bits: (keys, ceil(n / 8)) uint8}: for each of the host's "
                       "split nodes, which rows go left (packed); prefix: sbp for batch prediction")
JOINT_PREDICTION = Protocol("secureboost prediction", (ROUTING_BITS,))


def routing_bits(codes: np.ndarray, splits: list[HostSplit], missing: int) -> np.ndarray:
    """Packed bits, one row per split: which rows go left there."""
    bits = np.zeros((len(splits), (len(codes) + 7) // 8), dtype=np.uint8)
    for i, (feature, b, default_left) in enumerate(splits):
        column = codes[:, feature]
        bits[i] = np.packbits(np.where(column == missing, default_left, column <= b))
    return bits


def predict_host(ctx: Context, model: dict[str, Any], X: np.ndarray, tag: str = "sbp") -> None:
    """Send the guest this host's routing bits: for each of its splits, which rows go left."""
    guest = ctx.parties_with_role("guest")[0]
    binner = QuantileBinner.from_dict(model["binner"])
    splits = splits_of(model)
    bits = routing_bits(binner.transform(X), list(splits.values()), binner.missing_bin)
    ROUTING_BITS.send(ctx, guest, {"rows": len(X), "keys": [str(key) for key in splits], "bits": bits}, prefix=tag)


def predict_guest(ctx: Context, model: dict[str, Any], X: np.ndarray, tag: str = "sbp") -> np.ndarray:
    """Margins of every row (shape (n,) or (n, K)), from the guest's trees and the hosts' bits."""
    binner = QuantileBinner.from_dict(model["binner"])
    codes, missing = binner.transform(X), binner.missing_bin
    directions: dict[tuple[str, NodeKey], np.ndarray] = {}
    for host in model["hosts"]:
        answer = ROUTING_BITS.recv(ctx, host, prefix=tag)
        if answer["rows"] != len(X):
            raise ValueError(f"host {host!r} predicts {answer['rows']} rows but guest {ctx.party!r} has {len(X)}: "
                             "align the rows first (a psi task)")
        for key, packed in zip(answer["keys"], answer["bits"], strict=True):
            directions[host, NodeKey.parse(key)] = np.unpackbits(packed, count=len(X)).astype(bool)
    base = np.asarray(model["base_margin"], dtype=np.float64)
    margin = initial_margin(base, len(X))
    for t, tree in enumerate(model["trees"]):
        column = margin if margin.ndim == 1 or model.get("multi_output") else margin[:, t % len(base)]
        column += tree_output(tree, codes, missing, lambda owner, node, t=t: directions[owner, NodeKey(t, node)])
    return margin


def tree_output(tree: dict[str, Any], codes: np.ndarray, missing: int,
                host_bits: Callable[[str, int], np.ndarray]) -> np.ndarray:
    """Each row's leaf value (a vector for a multi-output tree) in one guest tree; `host_bits(owner,
    node)` gives a host node's directions."""
    width = max(np.size(v) for v in tree["value"])  # inner nodes hold 0.0, leaves a float or a K-vector
    out = np.zeros((len(codes), width) if width > 1 else len(codes))
    at = {0: np.arange(len(codes))}
    for node in range(len(tree["owner"])):  # children always have larger ids than their parent
        rows = at.pop(node, None)
        if rows is None or not rows.size:
            continue
        if tree["left"][node] < 0:
            out[rows] = tree["value"][node]
            continue
        owner = tree["owner"][node]
        if owner:
            goes_left = host_bits(owner, node)[rows]
        else:
            own = codes[rows, tree["feature"][node]]
            goes_left = np.where(own == missing, tree["default_left"][node], own <= tree["bin"][node])
        at[tree["left"][node]], at[tree["right"][node]] = rows[goes_left], rows[~goes_left]
    return out


def transform(model: dict[str, Any], margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, prediction): probability of class 1 / class probabilities / value, and the predicted label."""
    objective = get_objective(model["objective"], model.get("num_class"))
    score = objective.transform(margin)
    if model["objective"] == "binary:logistic":
        return score, (score >= 0.5).astype(np.int64)
    return score, objective.predict(margin)
