"""Errors a party sees when talking to its peers. Each names the peer and what was awaited."""

from __future__ import annotations


class TransportError(RuntimeError):
    """Base class for failures of party-to-party messaging."""


class PeerTimeout(TransportError):
    """A peer did not send an expected message in time (it may have crashed or be stuck)."""


class PeerUnreachable(TransportError):
    """A peer could not be connected to, or refused our message."""


class PeerRejected(TransportError):
    """A peer's identity is not acceptable: wrong CA, or not a party of the job."""


class LimitExceeded(TransportError):
    """A message, or what a peer holds at a party, went beyond a bound of the receiving party (issue 22);
    the message names the peer, the bound, and how to raise it."""


class MessageTooLarge(LimitExceeded):
    """A message is larger than the job's max_message_bytes."""


class PeerFlooding(LimitExceeded):
    """A peer left more messages unread at this party than it may (see channel.UnreadBounds)."""


class JobAborted(TransportError):
    """Another party failed and told us to stop; `party` and `reason` say who and why."""

    def __init__(self, job: str, party: str, reason: str):
        super().__init__(f"job {job} aborted by party {party!r}: {reason}")
        self.job = job
        self.party = party
        self.reason = reason


class JobCancelled(TransportError):
    """The job was cancelled locally (Ctrl-C or a cancel request)."""
