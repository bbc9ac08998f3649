"""Three parties learn the total of their private numbers and nothing else.

Run: python examples/secure_sum_abc.py [A B C]      (default 10 15 20 → 45)

Each party splits its number into three additive shares over Z_2^64 (uniformly random apart from
summing to the number), keeps one and sends one to each peer; each party adds the shares it holds
and the three sums are opened. Any two shares a party sees of another's number are uniform, so
each learns only the total. There is no multiplication, so the session needs no tuples
(`triples=None`) and no dealer.
"""

from __future__ import annotations

import sys

from sharedml.mpc import MPCSession
from sharedml.runtime.context import Context
from sharedml.runtime.simulate import simulate

PARTIES = ("A", "B", "C")


def main(argv: list[str]) -> None:
    if len(argv) not in (0, 3):
        sys.exit("usage: python examples/secure_sum_abc.py [A B C]")
    values = dict(zip(PARTIES, map(float, argv or ("10", "15", "20")), strict=True))

    def party(ctx: Context) -> float:
        with MPCSession(ctx, triples=None) as mpc:
            shares = [mpc.share([values[ctx.party]] if ctx.party == owner else None, owner) for owner in PARTIES]
            total = shares[0] + shares[1] + shares[2]
            return float(total.reveal()[0])

    totals = simulate(party, list(PARTIES))
    assert len(set(totals.values())) == 1
    print(f"A, B and C each learned the total: {totals['A']:g}")


if __name__ == "__main__":
    main(sys.argv[1:])
