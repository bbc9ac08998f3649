"""serve.yaml: one file per replica, for any role (guest, host, or the replica registry).

Why one file: a replica is a party's identity (certificates), where it listens, where it registers, its
feature source and the model versions it serves. Relative paths are relative to the file; errors name the
file, line and field (`jobs.yaml_errors.load_config`, as for every service's config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..jobs.yaml_errors import ConfigFile, load_config
from ..net.https import ListenAddress, PartyName, TlsFiles
from .errors import ServeConfigError

Url = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartRef(_Strict):
    """Where this party's part of a model lies: a trained job's outputs, or an exported part."""

    path: str | None = Field(None, description="an exported task folder (`sharedml node export`) or model.msgpack")
    artifacts: str | None = Field(None, description="artifact root holding <job>/<party>/<task>/ "
                                  "(a node's storage/artifacts, a LocalRunner's workdir)")
    job: str | None = None
    task: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PartRef:
        if (self.path is None) == (self.artifacts is None):
            raise ValueError("give either `path` (an exported part) or `artifacts` + `job` + `task`")
        if self.artifacts is not None and (self.job is None or self.task is None):
            raise ValueError("`artifacts` needs `job` (the job id) and `task` (the training task's name)")
        return self

    def location(self) -> dict[str, str]:
        return self.model_dump(exclude_none=True)


class ModelEntry(_Strict):
    """One version of one model, as every party names it (the version travels with each request)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    part: PartRef
    fallback: PartRef | None = Field(None, description="guest only: a guest part scored without hosts when a "
                                     "host is down (hetero_lr, or trees without host nodes)")

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"


class FeatureEntry(_Strict):
    """The party's feature source: a CSV/Parquet snapshot, or a SQL table queried per request."""

    path: str | None = None
    format: Literal["csv", "parquet"] | None = None
    url: str | None = Field(None, description="SQLAlchemy URL; relative sqlite paths are relative to serve.yaml")
    table: str | None = None
    id_column: str = "id"

    @model_validator(mode="after")
    def _one_form(self) -> FeatureEntry:
        if (self.path is None) == (self.url is None):
            raise ValueError("give either `path` (CSV/Parquet snapshot) or `url` + `table` (SQL)")
        if self.url is not None and self.table is None:
            raise ValueError("a `url` feature source needs `table`")
        return self


class ServeConfig(ConfigFile):
    """A serving replica."""

    role: Literal["guest", "host", "registry"]
    party: PartyName = Field(description="this replica's party (its certificate name); the registry's own name")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$",
                             description="replica name, unique per party (default: party@listen)")
    certs: str = Field(description="folder with ca.crt, <party>.crt and <party>.key")
    listen: ListenAddress
    advertise: Url | None = Field(None, pattern=r"^https://", description="URL others reach this replica at")
    registry: Url | None = Field(None, pattern=r"^https://", description="the replica registry's URL")
    registry_name: PartyName = Field("registry", description="the registry's certificate name")
    heartbeat_interval: float = Field(0.5, gt=0)
    heartbeat_timeout: float = Field(1.5, gt=0, description="registry: a replica silent this long is not listed")
    refresh: float = Field(0.5, gt=0, description="guest/client: seconds between re-reads of the registry")
    guest: PartyName | None = Field(None, description="host: the guest party allowed to ask for partial results")
    hosts: dict[PartyName, list[Url]] = Field(default_factory=dict, description="guest: host party -> static "
                                         "replica URLs (an empty list: replicas come from the registry)")
    features: FeatureEntry | None = None
    models: list[ModelEntry] = Field(default_factory=list)
    traffic: dict[str, dict[int, float]] = Field(default_factory=dict, description="guest: model name -> "
                                                 "{version: percent}; default: the latest version takes all")
    timeout: float = Field(2.0, gt=0, description="seconds for one remote call (host answer, registry call)")
    clients: list[str] = Field(default_factory=lambda: ["*"], description="guest: certificate names that may "
                               "call /v1/predict ('*': any federation certificate)")
    admins: list[PartyName] = Field(default_factory=list, description="certificate names that may load versions and "
                               "shift traffic (default: this party)")
    workers: int = Field(4, ge=1, le=64, description="guest: batches predicted at once")
    max_batch: int = Field(256, ge=1, description="guest: rows combined into one call to each host")

    @model_validator(mode="after")
    def _per_role(self) -> ServeConfig:
        if self.role == "host":
            if self.guest is None:
                raise ValueError("a host needs `guest`: the guest party allowed to ask it")
            if self.features is None:
                raise ValueError("a host needs `features`: where it reads its rows by id")
        if self.role != "guest" and any(m.fallback for m in self.models):
            raise ValueError("only the guest has `fallback` models")
        if self.role in ("guest", "host") and not self.models:
            raise ValueError(f"a {self.role} needs at least one entry in `models`")
        if self.role == "guest" and not self.hosts and self.registry is None:
            raise ValueError("a guest needs `hosts` (static replica URLs) or a `registry`")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"`models` lists a name:version twice: {keys}")
        return self

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.in_dir(self.path(self.certs), self.party)

    @property
    def replica_name(self) -> str:
        return self.name or f"{self.party}@{self.listen}"

    @property
    def url(self) -> str:
        return self.advertise or f"https://{self.listen}"

    @property
    def admin_names(self) -> set[str]:
        return set(self.admins or [self.party])


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read and validate serve.yaml; every problem raises ServeConfigError naming the file, line and field."""
    return load_config(path, ServeConfig, ServeConfigError)
