"""The two deployment config files: ``node.yaml`` (one per institution) and ``coordinator.yaml``.

Relative paths in either file are relative to the file's own folder, so a config means the same thing
whatever directory the service starts in. `load_config(path, NodeConfig)` (the helper every service's
config goes through) raises ConfigError naming the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..jobs.store import sqlite_url
from ..jobs.yaml_errors import ConfigError, ConfigFile, load_config
from ..net.https import ListenAddress, PartyName, TlsFiles

Host = Annotated[str, StringConstraints(pattern=r"^[^:\s/]+$")]

__all__ = ["ConfigError", "CoordinatorConfig", "NodeConfig", "load_config"]


class BoardSettings(BaseModel):
    """The web board under ``/ui`` on the service's own listener: who may log in, and the key that signs
    their sessions (both private files, relative to the config file's folder)."""

    model_config = ConfigDict(extra="forbid")
    accounts: str = Field("board-accounts.yaml", description="accounts file (`sharedml coordinator user add`)")
    secret: str = Field("board.secret", description="session signing key; made on first start if missing")


class NodeConfig(ConfigFile):
    """One institution's node: who it is, where it listens, whom it talks to, what data and rules it has."""

    party: PartyName
    certs: str = Field(description="folder with ca.crt, <party>.crt and <party>.key")
    listen: ListenAddress = Field(description="host:port of the control API the coordinator calls (mutual TLS)")
    coordinator: PartyName = Field("coordinator", description="certificate name allowed to call the control API")
    protocol_host: Host = Field("127.0.0.1", description="host this node's workers listen on for peers")
    peers: dict[PartyName, Host] = Field(default_factory=dict, description="party -> host its workers listen on")
    catalog: str
    policy: str
    storage: str = "storage"
    db_url: str | None = None
    board: BoardSettings | None = Field(None, description="serve the node's board (approvals, audit log) under /ui "
                                        "(browsers may then connect without a client certificate, to /ui only)")

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_dir(self.path(self.certs), self.party)

    @property
    def storage_dir(self) -> Path:
        return self.path(self.storage)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.storage_dir / "node.db")


class CoordinatorConfig(ConfigFile):
    """The coordinator: its identity, the nodes it schedules on, its job store and its limits."""

    name: PartyName = "coordinator"
    certs: str
    listen: ListenAddress = "127.0.0.1:8440"
    nodes: dict[PartyName, Annotated[str, StringConstraints(pattern=r"^https://")]] = Field(min_length=1)
    db_url: str | None = None
    max_concurrent_jobs: int = Field(4, ge=1)
    poll_interval: float = Field(0.5, gt=0)
    node_timeout: float = Field(15.0, gt=0, description="seconds a node may stay unreachable during a job")
    admins: list[PartyName] = Field(default_factory=list, description="certificate names that may delete any "
                                    "model (others only the models of jobs they submitted)")
    board: BoardSettings | None = Field(None, description="serve the board under /ui (browsers may then connect "
                                        "without a client certificate, to /ui only)")

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_dir(self.path(self.certs), self.name)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.base_dir.resolve() / "coordinator.db")
