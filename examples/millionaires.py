"""Yao's millionaires' problem: Alice and Bob learn who is richer, and nothing else about each other's wealth.

Run: python examples/millionaires.py [ALICE_WEALTH BOB_WEALTH]

Both parties run as threads over the in-memory transport (`simulate`); the same party function runs
unchanged between machines. Alice garbles a 64-bit comparison circuit, Bob gets the labels of his
bits by oblivious transfer and evaluates it; each learns only the single bit [alice > bob].
"""

from __future__ import annotations

import sys

import numpy as np

from sharedml.mpc.garbled import compare
from sharedml.runtime.context import Context
from sharedml.runtime.simulate import simulate


def main(argv: list[str]) -> None:
    if len(argv) not in (0, 2):
        sys.exit("usage: python examples/millionaires.py [ALICE_WEALTH BOB_WEALTH]")
    wealth = dict(zip(("alice", "bob"), map(int, argv or ("3200000", "2750000")), strict=True))

    def party(ctx: Context) -> bool:
        (peer,) = ctx.peers
        mine = np.array([wealth[ctx.party]], dtype=np.int64)  # each party reads only its own wealth
        return bool(compare(ctx, peer, mine, garbler="alice", op="gt")[0])

    results = simulate(party, ["alice", "bob"])
    assert results["alice"] == results["bob"]
    print("Alice is richer." if results["alice"] else "Bob is at least as rich as Alice.")


if __name__ == "__main__":
    main(sys.argv[1:])
