"""Build and run one serving replica from its serve.yaml (what `sharedml serve` does).

Why separate from the apps: the same wiring (certificates, feature source, models, registry heartbeat,
host replica list) serves the CLI, the tests and the benchmark, which start replicas as processes.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net.https import http_client, server
from ..net.replica_registry import RegistryClient, registry_app
from .config import FeatureEntry, ServeConfig, load_serve_config
from .errors import ServeConfigError
from .fanout import HostFanout
from .features import FeatureSource, SnapshotSource, SqlSource
from .guest import GuestService, guest_app
from .host import HostService, host_app
from .parts import load_model
from .predictor import GuestPredictor
from .registration import RegistryHeartbeat, ServingMember, ServingRoster
from .replicas import ReplicaSet
from .versions import ModelBook

log = logging.getLogger(__name__)


def feature_source(entry: FeatureEntry, base_dir: Path) -> FeatureSource:
    if entry.path is not None:
        return SnapshotSource.from_file((base_dir / entry.path).resolve(), entry.id_column, entry.format)
    url = str(entry.url)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith(("/", ":memory:")) and len(url) > len(prefix):
        url = prefix + str((base_dir / url[len(prefix):]).resolve())  # relative to serve.yaml, like catalogs
    return SqlSource(url, str(entry.table), entry.id_column)


@dataclass
class BuiltReplica:
    """A built replica: its app and the background loops to start with it and stop after it."""

    config: ServeConfig
    app: Any  # an ASGI app
    loops: list[Any] = field(default_factory=list)

    def start_loops(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop_loops(self) -> None:
        for loop in self.loops:
            loop.stop()


def build(config: ServeConfig) -> BuiltReplica:
    """The app and loops of the replica `config` describes; loads every model part and the feature source."""
    base = config.base_dir
    if config.role == "registry":
        return BuiltReplica(config, registry_app(ServingRoster(config.heartbeat_timeout)))
    tls = config.tls
    registry = None if config.registry is None else RegistryClient(
        config.registry, http_client(tls.client_context(), config.timeout), config.registry_name)
    source = None if config.features is None else feature_source(config.features, base)
    if config.role == "host":
        assert source is not None and config.guest is not None
        host = HostService(config.party, config.replica_name, config.guest, source, config.admin_names, base)
        for entry in config.models:
            host.load(entry.name, entry.version, load_model(entry.part.location(), config.party, base),
                      f"{config.base_dir}: models[{entry.key}]")
        replica = BuiltReplica(config, host_app(host))
        versions = host.book.keys
    else:
        hosts = ReplicaSet(config.hosts, registry, "host", refresh=config.refresh,
                           cooldown=max(3.0, 2 * config.heartbeat_timeout))
        fanout = HostFanout(hosts, tls, config.timeout)
        book: ModelBook = ModelBook(config.party)
        predictor = GuestPredictor(config.party, book, source, fanout, config.workers, config.max_batch)
        guest = GuestService(config.party, config.replica_name, predictor, hosts, sorted(config.hosts),
                             set(config.clients), config.admin_names, base)
        for entry in config.models:
            fallback = None if entry.fallback is None else load_model(entry.fallback.location(), config.party, base)
            guest.load(entry.name, entry.version, load_model(entry.part.location(), config.party, base), fallback)
        _initial_traffic(config, book)
        replica = BuiltReplica(config, guest_app(guest), [hosts])
        versions = book.keys
    if registry is not None:
        member = ServingMember(party=config.party, role=config.role, name=config.replica_name, url=config.url)
        replica.loops.append(RegistryHeartbeat(registry, member, versions, config.heartbeat_interval))
    return replica


def _initial_traffic(config: ServeConfig, book: ModelBook) -> None:
    """serve.yaml's `traffic`, else each name's latest version takes all of it."""
    latest: dict[str, int] = {}
    for entry in config.models:
        latest[entry.name] = max(latest.get(entry.name, 0), entry.version)
    for name, version in latest.items():
        split = config.traffic.get(name, {version: 100.0})
        try:
            book.set_traffic(name, split)
        except Exception as exc:
            raise ServeConfigError(f"{config.base_dir}: traffic.{name}: {exc}") from exc


def run(config_path: str | Path) -> None:
    """Serve until interrupted (SIGINT/SIGTERM end uvicorn; loops stop after it)."""
    config = load_serve_config(config_path)
    replica = build(config)
    tls = config.tls
    srv = server(replica.app, config.listen, tls)
    gc.freeze()  # models and snapshots live as long as the process: keep full collections from walking them
    replica.start_loops()
    log.info("serving %s %s (%s) on %s", config.role, config.party, config.replica_name, config.listen)
    try:
        srv.run()
    finally:
        replica.stop_loops()
