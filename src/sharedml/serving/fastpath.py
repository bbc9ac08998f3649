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
from ..ml.tree.host_model import NodeKey, splits_of


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
        binner = QuantileBinner.from_dict(model["binner"])
        self.binner, self.missing = SmallBatchBinner(binner), binner.missing_bin
        splits = splits_of(model)
        self.keys = [str(key) for key in splits]
        self.feature = np.array([s.feature for s in splits.values()], dtype=np.int64)
        self.bin = np.array([s.bin for s in splits.values()], dtype=np.int64)
        self.default_left = np.array([s.default_left for s in splits.values()], dtype=bool)

    def message(self, X: np.ndarray) -> dict[str, Any]:
        codes = self.binner.transform(X)[:, self.feature]
        left = np.where(codes == self.missing, self.default_left, codes <= self.bin)
        bits = np.ascontiguousarray(np.packbits(left, axis=0).T) if len(X) else \
            np.zeros((len(self.keys), 0), dtype=np.uint8)
        return {"rows": len(X), "keys": self.keys, "bits": bits}


class GuestForest:
    """The guest's trees as flat arrays over every node of every tree; `margin` equals `predict_guest`'s.

    Nodes are numbered tree by tree (tree t's node i is t * width + i). A leaf, and the padding of
    smaller trees, leads to itself, so every tree can take `depth` steps whatever its own depth."""

    def __init__(self, model: dict[str, Any]) -> None:
        trees = model["trees"]
        binner = QuantileBinner.from_dict(model["binner"])
        self.binner, self.missing = SmallBatchBinner(binner), binner.missing_bin
        self.base = float(model["base_margin"][0])
        width = max(len(t["owner"]) for t in trees)
        self.roots = np.arange(len(trees)) * width
        size = len(trees) * width
        self.left, self.right = np.arange(size), np.arange(size)
        self.feature, self.bin = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
        self.default_left, self.value = np.zeros(size, dtype=bool), np.zeros(size)
        self.host_keys: dict[int, tuple[str, NodeKey]] = {}  # node -> (host, its key), for the host nodes
        self.depth = 0
        for t, tree in enumerate(trees):
            root, n = t * width, len(tree["owner"])
            self.feature[root:root + n] = [max(f, 0) for f in tree["feature"]]
            self.bin[root:root + n] = tree["bin"]
            self.default_left[root:root + n] = [bool(d) for d in tree["default_left"]]
            self.value[root:root + n] = tree["value"]
            depth = {0: 0}
            for node, (owner, left, right) in enumerate(zip(tree["owner"], tree["left"], tree["right"], strict=True)):
                if left >= 0:
                    self.left[root + node], self.right[root + node] = root + left, root + right
                    depth[left] = depth[right] = depth[node] + 1
                    if owner:
                        self.host_keys[root + node] = (owner, NodeKey(t, node))
            self.depth = max(self.depth, *depth.values())
        self.host_nodes = np.array(sorted(self.host_keys), dtype=np.int64)
        self._bit_rows: tuple[tuple, np.ndarray] | None = None  # (hosts' key lists, each host node's bit row)

    @staticmethod
    def supports(model: dict[str, Any]) -> bool:
        return (len(model["base_margin"]) == 1 and not model.get("multi_output")
                and all(np.ndim(v) == 0 for t in model["trees"] for v in t["value"]))

    def _host_bits(self, answers: dict[str, dict[str, Any]], n: int) -> np.ndarray:
        """Each host node's routing bit per row, (rows, host nodes), from the hosts' answers."""
        hosts = sorted(answers)
        layout = tuple((host, answers[host]["keys"]) for host in hosts)
        if self._bit_rows is None or self._bit_rows[0] != layout:
            position = {(host, NodeKey.parse(key)): i for i, (host, key) in
                        enumerate((host, key) for host, keys in layout for key in keys)}
            self._bit_rows = (layout, np.array([position[self.host_keys[node]] for node in self.host_nodes],
                                               dtype=np.int64))
        packed = [answers[host]["bits"] for host in hosts]
        bits = np.unpackbits(packed[0] if len(packed) == 1 else np.vstack(packed), axis=1, count=n)
        return bits[self._bit_rows[1]].T.astype(bool)

    def margin(self, X: np.ndarray, answers: dict[str, dict[str, Any]]) -> np.ndarray:
        n = len(X)
        own = self.binner.transform(X)[:, self.feature]  # (rows, nodes): the code of each node's feature
        goes_left = np.where(own == self.missing, self.default_left, own <= self.bin)
        if len(self.host_nodes):
            goes_left[:, self.host_nodes] = self._host_bits(answers, n)
        start = np.arange(n)[:, None] * len(self.left)  # row r's nodes in the flattened (rows x nodes) table
        child = (np.where(goes_left, self.left, self.right) + start).ravel()  # where each node sends the row
        node = self.roots + start
        for _ in range(self.depth):
            node = child[node]
        values = self.value[node - start]
        # tree by tree, as predict_guest adds them: add.accumulate is sequential, left to right
        return np.cumsum(np.column_stack([np.full(n, self.base), values]), axis=1)[:, -1]
