"""A host's part of a SecureBoost model: the splits it owns, by tree node.

Why a module: a saved host model (and the routing-bits message of joint prediction) keys each split by
the text "tree:node", the stored format that older models have and online serving reads. Everywhere else
a node is a `NodeKey`, and a split a `HostSplit`; the conversions between the two forms are here, so no
other code builds or parses such strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class NodeKey(NamedTuple):
    """Node `node` of tree `tree` (the guest's node ids, which every party knows)."""

    tree: int
    node: int

    def __str__(self) -> str:
        """The stored and wire form, "tree:node"."""
        return f"{self.tree}:{self.node}"

    @classmethod
    def parse(cls, text: str) -> NodeKey:
        tree, node = text.split(":")
        return cls(int(tree), int(node))


class HostSplit(NamedTuple):
    """Non-missing rows with code <= `bin` of this host's `feature` go left; missing ones iff `default_left`."""

    feature: int
    bin: int
    default_left: bool


def splits_to_model(splits: Mapping[NodeKey, HostSplit]) -> dict[str, list]:
    """The stored form of a host's splits: {"tree:node": [feature, bin, default_left]}."""
    return {str(key): list(split) for key, split in splits.items()}


def splits_of(model: Mapping[str, Any]) -> dict[NodeKey, HostSplit]:
    """A saved host model's splits, in the text order of their stored keys (the order prediction messages keep)."""
    stored = model["splits"]
    return {NodeKey.parse(text): HostSplit(int(stored[text][0]), int(stored[text][1]), bool(stored[text][2]))
            for text in sorted(stored)}
