"""An MPC session: which parties compute, where their tuples come from, and how shares are opened.

    with MPCSession(ctx) as mpc:            # every party of the task runs this
        if mpc.is_dealer:
            return mpc.serve()              # the trusted dealer, if the job has one
        x = mpc.share(values, owner="alice")
        y = (x * x).sum().reveal()

A session that only adds and opens (a secure sum) needs no tuples: `triples=None`. Otherwise tuples
come from a trusted dealer (a party with role `dealer`; `triples="dealer"`) or, for two parties,
from a dealer-free generator: `triples="he"` (elementwise Beaver triples from OU/Paillier; matrix
triples, boolean tuples and truncation pairs from OT extension) or `triples="ot"` (elementwise triples
from OT too, much faster). Opening a value is one round:
every computing party sends its share to every other. The session counts rounds; bytes come from
the channel's own counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtime.context import Context
from .core import SessionCore
from .fixed import DEFAULT_FRAC_BITS, FixedPoint64, random_ring
from .tensor import SharedTensor
from .triples import DealerSource, NoTuples, TripleSource, serve_dealer

if TYPE_CHECKING:
    from ..crypto.he_schemes import SchemeName  # HE is imported only when dealer-free tuples ask for it

_INPUT_TAG = "mpc/input"
DEALER_ROLE = "dealer"


class MPCSession(SessionCore):
    """One party's handle on a secure computation among `parties`: sets up the `SessionCore` (tuples,
    truncation), shares inputs, and closes the tuple source."""

    def __init__(self, ctx: Context, *, triples: str | TripleSource | None = "dealer", parties: list[str] | None = None,
                 dealer: str | None = None, frac_bits: int = DEFAULT_FRAC_BITS, truncation: str | None = None,
                 he_scheme: SchemeName = "ou", he_bits: int = 2048) -> None:
        self.ctx = ctx
        self.fxp = FixedPoint64(frac_bits)
        dealers = ctx.parties_with_role(DEALER_ROLE)
        self.dealer = dealer if dealer is not None else (dealers[0] if dealers else None)
        self.parties = sorted(parties) if parties is not None else [p for p in ctx.parties if p != self.dealer]
        self.is_dealer = ctx.party == self.dealer
        self.rounds = 0
        if len(self.parties) < 2:
            raise ValueError(f"secure computation needs at least 2 computing parties, got {self.parties}")
        if triples == "dealer" and self.dealer is None:
            raise ValueError("triples='dealer' needs a party with role 'dealer' in the task (or pass dealer=NAME); "
                             "for two parties without a dealer use triples='he'")
        if self.is_dealer:
            self.triples: TripleSource | None = None
            self.truncation = "none"
            return
        if ctx.party not in self.parties:
            raise ValueError(f"party {ctx.party!r} is neither a computing party {self.parties} nor the dealer")
        self.index = self.parties.index(ctx.party)
        self.peers = [p for p in self.parties if p != ctx.party]
        if triples == "dealer":  # flagged in the task's metrics and log: the dealer must be trusted
            ctx.metrics.log("mpc_tuple_source", f"trusted dealer {self.dealer!r}")
            ctx.log.info("MPC tuples come from the trusted dealer %r: it must not collude with any party",
                            self.dealer)
        if isinstance(triples, TripleSource):
            self.triples = triples
        elif triples is None:
            self.triples = NoTuples()
        elif triples == "dealer":
            self.triples = DealerSource(ctx, self.parties, self.dealer)
        elif triples in ("he", "ot"):
            from .two_party import TwoPartySource  # noqa: PLC0415 - pulls in HE and OT only when asked for

            self.triples = TwoPartySource(ctx, self.parties, scheme=he_scheme, key_bits=he_bits, elementwise=triples)
        else:
            raise ValueError(f"unknown triples {triples!r}: use 'dealer', 'he', 'ot', None or a TripleSource")
        two = len(self.parties) == 2
        self.truncation = truncation or ("tuple" if self.triples.makes_trunc_pairs else "local" if two else "none")
        if self.truncation == "local" and not two:
            raise ValueError("local (SecureML) truncation is correct for exactly 2 parties; use a dealer for more")
        if self.truncation not in ("local", "tuple", "none"):
            raise ValueError(f"unknown truncation {self.truncation!r}: use 'local' or 'tuple'")

    # -- lifecycle ---------------------------------------------------------------------------------
    def serve(self) -> dict[str, int]:
        """The dealer's whole job: answer tuple requests until the computing parties are done."""
        if not self.is_dealer:
            raise RuntimeError("only the dealer party serves tuples")
        return serve_dealer(self.ctx, self.parties)

    def close(self) -> None:
        if self.triples is not None:
            self.triples.close()
            self.triples = None

    def __enter__(self) -> MPCSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()

    # -- inputs ------------------------------------------------------------------------------------
    def share(self, values: Any, owner: str, *, integer: bool = False) -> SharedTensor:
        """Secret-share `owner`'s values (others pass None): the owner sends each peer a fresh random share.

        Reals are encoded with the session's fractional bits; `integer=True` shares integers as they are.
        """
        frac = 0 if integer else self.fxp.frac_bits
        if self.ctx.party == owner:
            encoded = (np.asarray(values).astype(np.int64).view(np.uint64) if integer
                       else self.fxp.encode(values))
            mine = encoded.copy()
            for peer in self.peers:
                mask = random_ring(encoded.shape)
                self.ctx.send(peer, _INPUT_TAG, mask)
                mine -= mask
            return SharedTensor(self, mine, frac)
        if owner not in self.parties:
            raise ValueError(f"input owner {owner!r} is not a computing party {self.parties}")
        return SharedTensor(self, self.ctx.recv(owner, _INPUT_TAG), frac)

    def stats(self) -> dict[str, int]:
        """Rounds opened by this party and the bytes and messages its channel sent."""
        traffic = self.ctx.channel.stats.snapshot()
        return {"rounds": self.rounds,
                "bytes_sent": sum(t["bytes_sent"] for t in traffic.values()),
                "messages_sent": sum(t["msgs_sent"] for t in traffic.values())}
