"""The two deployment config files: ``node.yaml`` (one per institution) and ``coordinator.yaml``.

Relative paths in either file are relative to the file's own folder, so a config means the same thing
whatever directory the service starts in. Errors name the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..jobs.store import sqlite_url
from ..jobs.yaml_errors import read_yaml
from ..net.https import TlsFiles

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
Address = Annotated[str, StringConstraints(pattern=r"^[^:\s]+:\d{1,5}$")]
Host = Annotated[str, StringConstraints(pattern=r"^[^:\s/]+$")]


class ConfigError(ValueError):
    """A deployment config file that cannot be loaded; the message names file, line and field."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_dir: Path = Field(Path("."), exclude=True)  # the file's folder, set by load_config

    def path(self, value: str) -> Path:
        return (self.base_dir / Path(value).expanduser()).resolve()


C = TypeVar("C", bound=_Config)


class NodeConfig(_Config):
    """One institution's node: who it is, where it listens, whom it talks to, what data and rules it has."""

    party: Name
    certs: str = Field(description="folder with ca.crt, <party>.crt and <party>.key")
    listen: Address = Field(description="host:port of the control API the coordinator calls (mutual TLS)")
    coordinator: Name = Field("coordinator", description="certificate name allowed to call the control API")
    protocol_host: Host = Field("127.0.0.1", description="host this node's workers listen on for peers")
    peers: dict[Name, Host] = Field(default_factory=dict, description="party -> host its workers listen on")
    catalog: str
    policy: str
    storage: str = "storage"
    db_url: str | None = None

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_dir(self.path(self.certs), self.party)

    @property
    def storage_dir(self) -> Path:
        return self.path(self.storage)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.storage_dir / "node.db")


class CoordinatorConfig(_Config):
    """The coordinator: its identity, the nodes it schedules on, its job store and its limits."""

    name: Name = "coordinator"
    certs: str
    listen: Address = "127.0.0.1:8440"
    nodes: dict[Name, Annotated[str, StringConstraints(pattern=r"^https://")]] = Field(min_length=1)
    db_url: str | None = None
    max_concurrent_jobs: int = Field(4, ge=1)
    poll_interval: float = Field(0.5, gt=0)
    node_timeout: float = Field(15.0, gt=0, description="seconds a node may stay unreachable during a job")
    admins: list[Name] = Field(default_factory=list, description="certificate names that may delete any model "
                               "(others only the models of jobs they submitted)")

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_dir(self.path(self.certs), self.name)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.base_dir.resolve() / "coordinator.db")


def load_config(path: str | Path, model: type[C]) -> C:
    """Load and validate a config file; every problem names the file, the line and the field."""
    document = read_yaml(path, ConfigError)
    if not isinstance(document.data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(document.data).__name__}")
    try:
        return model.model_validate({**document.data, "base_dir": Path(path).resolve().parent})
    except ValidationError as exc:
        raise ConfigError(document.explain(exc, model)) from exc
