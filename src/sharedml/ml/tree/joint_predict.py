"""Joint prediction with a SecureBoost model: each host sends, in one message, the direction every
row takes at every node the host owns; the guest walks the trees with those bits and its own
features. Thresholds never leave their owner; leaf values never leave the guest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...runtime.context import Context
from ..preprocess.binning import QuantileBinner
from .objectives import get_objective


def predict_host(ctx: Context, model: dict[str, Any], X: np.ndarray, tag: str = "sbp") -> None:
    """Send the guest this host's routing bits: for each of its splits, which rows go left."""
    guest = ctx.parties_with_role("guest")[0]
    codes = QuantileBinner.from_dict(model["binner"]).transform(X)
    missing = model["binner"]["max_bin"]
    keys = sorted(model["splits"])
    bits = np.zeros((len(keys), (len(X) + 7) // 8), dtype=np.uint8)
    for i, key in enumerate(keys):
        feature, b, default_left = model["splits"][key]
        column = codes[:, feature]
        bits[i] = np.packbits(np.where(column == missing, default_left, column <= b))
    ctx.send(guest, f"{tag}/bits", {"rows": len(X), "keys": keys, "bits": bits})


def predict_guest(ctx: Context, model: dict[str, Any], X: np.ndarray, tag: str = "sbp") -> np.ndarray:
    """Margins of every row (shape (n,) or (n, K)), from the guest's trees and the hosts' bits."""
    binner = QuantileBinner.from_dict(model["binner"])
    codes, missing = binner.transform(X), binner.missing_bin
    directions: dict[str, np.ndarray] = {}
    for host in model["hosts"]:
        answer = ctx.recv(host, f"{tag}/bits")
        if answer["rows"] != len(X):
            raise ValueError(f"host {host!r} predicts {answer['rows']} rows but guest {ctx.party!r} has {len(X)}: "
                             "align the rows first (a psi task)")
        for key, packed in zip(answer["keys"], answer["bits"], strict=True):
            directions[f"{host}/{key}"] = np.unpackbits(packed, count=len(X)).astype(bool)
    base = np.asarray(model["base_margin"], dtype=np.float64)
    margin = np.tile(base, (len(X), 1)) if len(base) > 1 else np.full(len(X), base[0])
    for t, tree in enumerate(model["trees"]):
        column = margin if margin.ndim == 1 else margin[:, t % len(base)]
        at = {0: np.arange(len(X))}
        for node in range(len(tree["owner"])):  # children always have larger ids than their parent
            rows = at.pop(node, None)
            if rows is None or not rows.size:
                continue
            if tree["left"][node] < 0:
                column[rows] += tree["value"][node]
                continue
            owner = tree["owner"][node]
            if owner:
                goes_left = directions[f"{owner}/{t}:{node}"][rows]
            else:
                own = codes[rows, tree["feature"][node]]
                goes_left = np.where(own == missing, tree["default_left"][node], own <= tree["bin"][node])
            at[tree["left"][node]], at[tree["right"][node]] = rows[goes_left], rows[~goes_left]
    return margin


def transform(model: dict[str, Any], margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, prediction): probability of class 1 / class probabilities / value, and the predicted label."""
    objective = get_objective(model["objective"], model.get("num_class"))
    score = objective.transform(margin)
    if model["objective"] == "binary:logistic":
        return score, (score >= 0.5).astype(np.int64)
    return score, objective.predict(margin)
