"""Vectorised forms of SecureBoost's two prediction loops, for the latency of small online batches.

Why: `joint_predict.tree_output` walks every node of every tree in Python, and `routing_bits` packs one
host split at a time: fine for a batch job over many rows, but at one row per request that per-node
cost is the whole cost (milliseconds for 20 trees). Here every tree advances one level per step for all
rows at once, and a host packs all its splits in one call. The results are the same bits and the same
floating-point sums in the same order (each row's margin gets its tree values added tree by tree), which
`tests/test_serving.py` asserts against the batch job. Only single-output models take the fast path;
multi-class models use the batch functions as they are. (Proposed: move these into `joint_predict`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ml.preprocess.binning import QuantileBinner


class HostSplits:
    """A host's splits as arrays: `bits(X)` equals `predict_host`'s message for the rows X."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.binner = QuantileBinner.from_dict(model["binner"])
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
        self.binner = QuantileBinner.from_dict(model["binner"])
        self.missing = self.binner.missing_bin
        self.base = float(model["base_margin"][0])
        width = max(len(t["owner"]) for t in trees)
        shape = (len(trees), width)
        self.left, self.right = np.full(shape, -1), np.full(shape, -1)
        self.feature, self.bin = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        self.default_left, self.host = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        self.value = np.zeros(shape)
        self.host_keys: dict[tuple[int, int], str] = {}  # (tree, node) -> "host/tree:node"
        for t, tree in enumerate(trees):
            n = len(tree["owner"])
            self.left[t, :n], self.right[t, :n] = tree["left"], tree["right"]
            self.feature[t, :n] = [max(f, 0) for f in tree["feature"]]
            self.bin[t, :n] = tree["bin"]
            self.default_left[t, :n] = [bool(d) for d in tree["default_left"]]
            self.value[t, :n] = tree["value"]
            for node, owner in enumerate(tree["owner"]):
                if owner and tree["left"][node] >= 0:
                    self.host[t, node] = True
                    self.host_keys[(t, node)] = f"{owner}/{t}:{node}"
        self.leaf = self.left < 0
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
            index = np.zeros(self.left.shape, dtype=np.int64)
            for (t, node), key in self.host_keys.items():
                index[t, node] = position[key]
            self._index_cache = (order, index)
        stacked = [np.unpackbits(a["bits"], axis=1, count=n).astype(bool) for _, a in sorted(answers.items())]
        bits = np.vstack(stacked) if stacked else np.zeros((0, n), dtype=bool)
        return bits, self._index_cache[1]

    def margin(self, X: np.ndarray, answers: dict[str, dict[str, Any]]) -> np.ndarray:
        n = len(X)
        codes = self.binner.transform(X)
        bits, index = self._host_rows(answers, n)
        trees = np.arange(self.left.shape[0])[None, :]
        rows = np.arange(n)[:, None]
        node = np.zeros((n, self.left.shape[0]), dtype=np.int64)
        while True:
            leaf = self.leaf[trees, node]
            if leaf.all():
                break
            own = codes[rows, self.feature[trees, node]]
            guest_left = np.where(own == self.missing, self.default_left[trees, node], own <= self.bin[trees, node])
            host = self.host[trees, node]
            host_left = bits[index[trees, node], rows] if bits.size else np.zeros_like(host)
            goes_left = np.where(host, host_left, guest_left)
            node = np.where(leaf, node, np.where(goes_left, self.left[trees, node], self.right[trees, node]))
        values = self.value[trees, node]
        margin = np.full(n, self.base)
        for t in range(values.shape[1]):  # tree by tree, as predict_guest adds them
            margin += values[:, t]
        return margin
