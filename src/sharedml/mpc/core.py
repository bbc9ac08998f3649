"""`SessionCore`: what shared values compute with, apart from how a session is set up.

Why a module of its own: a `SharedTensor` (tensor.py) and the boolean gates (boolean.py) need only the
computing parties, the fixed-point encoding, the tuple source, the truncation method and the opening
rounds. `MPCSession` (session.py) chooses and sets those up, and hands out new tensors (`share`), so it
needs tensor.py. With both halves in session.py, tensor.py and session.py imported each other; now both
import this module and session.py imports tensor.py, in one direction.
"""

from __future__ import annotations

import numpy as np

from ..runtime.context import Context
from .fixed import FixedPoint64
from .triples import TripleSource

_OPEN_TAG, _REVEAL_TAG = "mpc/open", "mpc/reveal"


class SessionCore:
    """One party's state in a computation among `parties`, and the rounds that open shared values.

    A subclass sets every attribute: `MPCSession` from its arguments, a dry run (ss_tuples.py) by copying
    a session's."""

    ctx: Context
    fxp: FixedPoint64
    parties: list[str]
    index: int  # this party's position in `parties`
    peers: list[str]
    triples: TripleSource | None
    truncation: str  # "local" | "tuple" | "none" (see tensor.py)
    rounds: int

    @property
    def is_first(self) -> bool:
        """The party that adds public constants (exactly one party must)."""
        return self.index == 0

    def open(self, *shares: np.ndarray, xor: bool = False) -> list[np.ndarray]:
        """Reconstruct several shared arrays at every computing party in one round."""
        flat = np.concatenate([np.asarray(s, dtype=np.uint64).ravel() for s in shares])
        for peer in self.peers:
            self.ctx.send(peer, _OPEN_TAG, flat)
        total = flat.copy()
        for peer in self.peers:
            theirs = self.ctx.recv(peer, _OPEN_TAG)
            if theirs.shape != flat.shape or theirs.dtype != np.uint64:
                raise ValueError(f"party {peer!r} opened {theirs.dtype}{theirs.shape}, expected uint64{flat.shape}")
            if xor:
                np.bitwise_xor(total, theirs, out=total)
            else:
                np.add(total, theirs, out=total)
        self.rounds += 1
        out, start = [], 0
        for s in shares:
            size = np.size(s)
            out.append(total[start:start + size].reshape(np.shape(s)))
            start += size
        return out

    def reveal_to(self, share: np.ndarray, party: str) -> np.ndarray | None:
        """Reconstruct at `party` only; the others get None."""
        if party not in self.parties:
            raise ValueError(f"cannot reveal to {party!r}: not a computing party {self.parties}")
        self.rounds += 1
        if self.ctx.party != party:
            self.ctx.send(party, _REVEAL_TAG, np.asarray(share, dtype=np.uint64))
            return None
        total = np.asarray(share, dtype=np.uint64).copy()
        for peer in self.peers:
            np.add(total, self.ctx.recv(peer, _REVEAL_TAG), out=total)
        return total
