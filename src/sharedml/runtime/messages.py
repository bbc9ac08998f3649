"""Declared protocol messages: what a protocol sends, under which tag, from which role to which, carrying what.

Why: a protocol's halves (say the guest's and a host's) live in different functions, often far apart, and
used to agree only on tag strings spelled at both ends. A protocol now lists its messages in one table
next to its code (`Protocol`), and both ends send and receive through those declarations, so the table is
the protocol's summary and cannot drift from it: a message sent under a tag that is not declared, or from
or to a role the declaration does not name, is found by `Protocol.violation` (tests/test_protocol_messages.py
checks whole simulated runs).

A tag is a `str.format` pattern whose fields are the message's coordinates in the protocol, e.g.
``"sb/{tree}/{depth}/candidates"``; the fields match one path segment each.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .context import Context


def _roles(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)


@dataclass(frozen=True)
class Message:
    """One message of a protocol. `sender` and `receiver` are roles (one, or several where the same message
    serves several routes); `payload` says what the message carries."""

    tag: str
    sender: str | tuple[str, ...] | frozenset[str]  # a frozenset once constructed
    receiver: str | tuple[str, ...] | frozenset[str]
    payload: str
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sender", _roles(self.sender))
        object.__setattr__(self, "receiver", _roles(self.receiver))
        parts = [re.escape(literal) + (f"(?P<{name}>[^/]+)" if name else "")
                 for literal, name, _, _ in string.Formatter().parse(self.tag)]
        object.__setattr__(self, "_pattern", re.compile("".join(parts)))

    def format(self, **fields: Any) -> str:
        """The tag of one instance of this message, e.g. `format(tree=3, depth=0)`."""
        return self.tag.format(**fields)

    def matches(self, tag: str) -> bool:
        return self._pattern.fullmatch(tag) is not None

    def send(self, ctx: Context, peer: str, payload: Any, **fields: Any) -> None:
        ctx.send(peer, self.format(**fields), payload)

    def broadcast(self, ctx: Context, payload: Any, peers: Iterable[str], **fields: Any) -> None:
        ctx.broadcast(self.format(**fields), payload, peers)

    def recv(self, ctx: Context, peer: str, timeout: float | None = None, **fields: Any) -> Any:
        return ctx.recv(peer, self.format(**fields), timeout)

    def gather(self, ctx: Context, peers: Iterable[str], timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        return ctx.gather(self.format(**fields), peers, timeout)


@dataclass(frozen=True)
class Protocol:
    """A protocol's table of messages (tags must not overlap: each sent tag matches one declaration)."""

    name: str
    messages: tuple[Message, ...]

    def find(self, tag: str) -> Message | None:
        return next((m for m in self.messages if m.matches(tag)), None)

    def violation(self, tag: str, sender: str, receiver: str) -> str | None:
        """Why a message `tag` sent by role `sender` to role `receiver` breaks this table (None if it does not)."""
        message = self.find(tag)
        if message is None:
            return f"{self.name}: {tag!r} ({sender} -> {receiver}) is not a declared message"
        if sender not in message.sender or receiver not in message.receiver:
            return (f"{self.name}: {tag!r} went {sender} -> {receiver}, but {message.tag!r} is declared "
                    f"{'/'.join(sorted(message.sender))} -> {'/'.join(sorted(message.receiver))}")
        return None
