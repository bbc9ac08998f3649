"""The cluster manager: the TEE route's replica registry, with enclave replicas as its members.

Why: replicas on different machines need to find each other and clients need a list of healthy
replicas. The manager is untrusted: it stores and relays public facts only (names, URLs, quotes, key
ring digests) and never sees a key. It groups replicas by the measurement their quote claims, which it
cannot verify, so the grouping is only a hint: a replica gives its key ring only to a requester whose
quote its own enclave verifies as the same measurement, and clients verify quotes themselves. A lying
manager can deny service or hide replicas; it cannot route a key to other code. The service (routes,
heartbeats, health) is `net.replica_registry`, shared with online serving's registry; here is what the
TEE's members are and what the manager answers.

    POST /v1/replicas                   {name, url, quote, digest} -> {peers, heartbeat_timeout}
    POST /v1/replicas/{name}/heartbeat  {digest} -> {peers}; 404 if unknown (register again)
    GET  /v1/replicas[?measurement=hex] {replicas}: the healthy ones
    GET  /v1/health

`peers` are the healthy replicas that claim the caller's measurement, other than the caller.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ..net.replica_registry import Roster, registry_app
from .errors import AttestationError
from .quotes import Quote

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class EnclaveMember(BaseModel):
    """A registered replica as the manager relays it (public facts only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(pattern=r"^https?://", max_length=2048)
    quote: str = Field(max_length=1 << 16)
    digest: str = Field("", max_length=64)

    @cached_property
    def measurement(self) -> str:
        """The measurement its quote claims (hex), unverified; AttestationError for a malformed quote."""
        return Quote.from_json(self.quote, f"replica {self.name}").measurement.hex()


class DigestBeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digest: str = Field("", max_length=64)


class ManagerRoster(Roster[EnclaveMember]):
    """Replicas by name, grouped by the measurement their quote claims."""

    title = "sharedml enclave cluster manager"
    member = EnclaveMember
    beat = DigestBeat
    filters = ("measurement",)

    def admit(self, member: EnclaveMember, caller: str | None) -> str:
        try:
            member.measurement  # noqa: B018  (parses the quote once, for listings and peers)
        except AttestationError as exc:
            raise HTTPException(422, f"registration of {member.name!r}: {exc}") from None
        return member.name

    def answer(self, member: EnclaveMember) -> dict[str, Any]:
        peers = self.table.healthy(lambda m: m.measurement == member.measurement and m.name != member.name)
        return {"peers": [m.model_dump() for m in peers]}


def manager_app(heartbeat_timeout: float) -> FastAPI:
    """The manager's app; replicas missing heartbeats for `heartbeat_timeout` s are not listed."""
    return registry_app(ManagerRoster(heartbeat_timeout))
