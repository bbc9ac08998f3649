"""The board's local accounts: a YAML file of people, each with a scrypt password hash, a role and the party
(federation member) they belong to.

Why a file and not a table: the accounts are the coordinator operator's configuration, written by
`sharedml coordinator user add` and readable in review like the node policies; the board re-reads it when
it changes, so removing a person or lowering a role takes effect at their next request (a session cookie
names only the person, never grants more than the file says now). The file is private (mode 0600).

A person's `party` decides what they may see of a job's results: each party's metrics, reports, feature
importance and logs are shown to that party's people only (docs/security.md, "The board").
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..jobs.yaml_errors import ConfigError, load_config
from ..net.https import PartyName
from ..private_files import write_bytes_atomic
from .auth import ROLES, Role, hash_password

UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
MAX_ACCOUNTS = 10_000


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(description="scrypt hash, as `sharedml coordinator user add` writes it")
    role: Role = Field(description=f"one of {', '.join(ROLES)}; each may do what the ones before may")
    party: PartyName | None = Field(None, description="the member this person works for; they see that "
                                    "party's results only (none: states and errors only)")


class AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: dict[UserName, Account] = Field(default_factory=dict, max_length=MAX_ACCOUNTS)


@dataclass(frozen=True)
class Person:
    """Who is looking: an account's name, role and party, or an admin by client certificate."""

    name: str
    role: Role
    party: str | None

    def may(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Accounts:
    """The accounts file, re-read whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, Account] = {}

    def get(self, name: str) -> Account | None:
        return self._current().get(name)

    def _current(self) -> dict[str, Account]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        with self._lock:
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                self._users = load_config(self.path, AccountsFile, not_a_mapping="expected `users:`").users
                self._stamp = (stat.st_mtime_ns, stat.st_size)
            return self._users


def add_user(path: Path, name: str, password: str, role: Role, party: str | None) -> None:
    """Add or replace one account in the accounts file (created private if missing)."""
    path = Path(path)
    users = load_config(path, AccountsFile).users if path.exists() else {}
    try:
        users[name] = Account(password=hash_password(password), role=role, party=party)
        _write(path, AccountsFile(users=users))
    except ValueError as err:
        raise ConfigError(f"{path}: account {name!r} not added: {err}") from None


def remove_user(path: Path, name: str) -> bool:
    """Remove one account; False if there was none of that name."""
    path = Path(path)
    users = load_config(path, AccountsFile).users if path.exists() else {}
    if users.pop(name, None) is None:
        return False
    _write(path, AccountsFile(users=users))
    return True


def _write(path: Path, document: AccountsFile) -> None:
    header = b"# board accounts (sharedml coordinator|node user add); private: password hashes\n"
    body = yaml.safe_dump(document.model_dump(mode="json", exclude_none=True), sort_keys=True).encode()
    write_bytes_atomic(path, header + body)
    os.chmod(path, 0o600)
