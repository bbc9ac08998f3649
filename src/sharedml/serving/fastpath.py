"""Vectorised forms of SecureBoost's two prediction loops, for the latency of small online batches.

Why: `joint_predict.tree_output` walks every node of every tree in Python, `routing_bits` packs one
host split at a time and the binner searches one feature at a time: fine for a batch job over many rows,
but at one row per request that per-node and per-feature cost is the whole cost (milliseconds for 20
trees). Here the rows are binned in one comparison against all edges, every node's decision is taken at
once, every tree then advances one level per step for all rows, and a host packs all its splits in one
call. The results are the same codes, the same bits and the same floating-point sums in the same order
(each row's margin gets its tree values added tree by tree), which `tests/test_serving.py` asserts
against the batch job. Only single-output models take the fast path;
multi-class models use the batch functions as they are. (Proposed: move these into `joint_predict`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ml.preprocess.binning import QuantileBinner


class SmallBatchBinner:
    """`QuantileBinner.transform` for a few rows at a time, with the same codes: a code is the number of
    edges below the value (what `searchsorted(side="left")` finds), clipped to the last bin; NaN gets the
    missing code. Memory is rows x features x edges, so this is for online batches, not for training."""

    def __init__(self, binner: QuantileBinner) -> None:
        width = max((len(e) for e in binner.edges), default=0) or 1
        self.edges = np.full((len(binner.edges), width), np.inf)  # padding never counts as below a value
        for j, edges in enumerate(binner.edges):
            self.edges[j, :len(edges)] = edges
        self.last = np.array([max(len(e) - 1, 0) for e in binner.edges], dtype=np.int64)
        self.missing = binner.missing_bin

    def transform(self, X: np.ndarray) -> np.ndarray:
        below = (self.edges[None, :, :] < X[:, :, None]).sum(axis=2)
        return np.where(np.isnan(X), self.missing, np.minimum(below, self.last))


class HostSplits:
    """A host's splits as arrays: `bits(X)` equals `predict_host`'s message for the rows X."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.binner = SmallBatchBinner(QuantileBinner.from_dict(model["binner"]))
        self.keys = sorted(model["splits"])
        splits = [model["splits"][key] for key in self.keys]
        self.feature = np.array([s[0] for s in splits], dtype=np.int64)
        self.bin = np.array([s[1] for s in splits], dtype=np.int64)
        self.default_left = np.array([bool(s[2]) for s in splits], dtype=bool)
        self.missing = int(model["binner"]["max_bin"])

    def message(self, X: np.ndarray) -> dict[str, Any]:
        codes = self.binner.transform(X)[:, self.feature]
        left = np.where(codes == self.missing, self.default_left, codes <= self.bin)
        bits = np.ascontiguousarray(np.packbits(left, axis=0).T) if len(X) else \
            np.zeros((len(self.keys), 0), dtype=np.uint8)
        return {"rows": len(X), "keys": self.keys, "bits": bits}


class GuestForest:
    """The guest's trees as padded arrays (trees x nodes); `margin` equals `predict_guest`'s."""

    def __init__(self, model: dict[str, Any]) -> None:
        trees = model["trees"]
        binner = QuantileBinner.from_dict(model["binner"])
        self.binner, self.missing = SmallBatchBinner(binner), binner.missing_bin
        self.base = float(model["base_margin"][0])
        width = max(len(t["owner"]) for t in trees)
        shape = (len(trees), width)
        self.width = width
        node = np.broadcast_to(np.arange(width), shape)
        self.left, self.right = node.copy(), node.copy()  # a leaf (and padding) leads to itself
        self.feature, self.bin = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        self.default_left, self.host = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        self.value = np.zeros(shape)
        self.host_keys: dict[tuple[int, int], str] = {}  # (tree, node) -> "host/tree:node"
        self.depth = 0
        for t, tree in enumerate(trees):
            self.feature[t, :len(tree["owner"])] = [max(f, 0) for f in tree["feature"]]
            self.bin[t, :len(tree["owner"])] = tree["bin"]
            self.default_left[t, :len(tree["owner"])] = [bool(d) for d in tree["default_left"]]
            self.value[t, :len(tree["owner"])] = tree["value"]
            depth = {0: 0}
            for node_id, owner in enumerate(tree["owner"]):
                if tree["left"][node_id] >= 0:
                    self.left[t, node_id], self.right[t, node_id] = tree["left"][node_id], tree["right"][node_id]
                    depth[tree["left"][node_id]] = depth[tree["right"][node_id]] = depth[node_id] + 1
                    if owner:
                        self.host[t, node_id] = True
                        self.host_keys[(t, node_id)] = f"{owner}/{t}:{node_id}"
            self.depth = max(self.depth, *depth.values())
        self.offset = np.arange(len(trees)) * width  # tree t's nodes in the flattened (trees x nodes) tables
        self.left, self.right = self.left.ravel(), self.right.ravel()
        self._index_cache: tuple[tuple, np.ndarray] | None = None

    @staticmethod
    def supports(model: dict[str, Any]) -> bool:
        return (len(model["base_margin"]) == 1 and not model.get("multi_output")
                and all(np.ndim(v) == 0 for t in model["trees"] for v in t["value"]))

    def _host_rows(self, answers: dict[str, dict[str, Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(the hosts' unpacked bits stacked (splits x rows), each host node's row in it)."""
        order = tuple((host, tuple(a["keys"])) for host, a in sorted(answers.items()))
        if self._index_cache is None or self._index_cache[0] != order:
            position = {f"{host}/{key}": i for i, (host, key) in
                        enumerate((host, key) for host, keys in order for key in keys)}
            index = np.zeros(self.host.shape, dtype=np.int64)
            for (t, node), key in self.host_keys.items():
                index[t, node] = position[key]
            self._index_cache = (order, index)
        stacked = [np.unpackbits(a["bits"], axis=1, count=n).astype(bool) for _, a in sorted(answers.items())]
        bits = np.vstack(stacked) if stacked else np.zeros((0, n), dtype=bool)
        return bits, self._index_cache[1]

    def margin(self, X: np.ndarray, answers: dict[str, dict[str, Any]]) -> np.ndarray:
        n = len(X)
        own = self.binner.transform(X)[:, self.feature]  # (rows, trees, nodes): each node's feature code
        goes_left = np.where(own == self.missing, self.default_left, own <= self.bin)
        bits, index = self._host_rows(answers, n)
        if bits.size:
            goes_left = np.where(self.host, np.moveaxis(bits[index], 2, 0), goes_left)
        goes_left = goes_left.reshape(n, -1)
        rows = np.arange(n)[:, None]
        node = np.zeros((n, len(self.offset)), dtype=np.int64)
        for _ in range(self.depth):
            at = self.offset + node
            node = np.where(goes_left[rows, at], self.left[at], self.right[at])
        values = self.value.ravel()[self.offset + node]
        # tree by tree, as predict_guest adds them: add.accumulate is sequential, left to right
        return np.cumsum(np.column_stack([np.full(n, self.base), values]), axis=1)[:, -1]
