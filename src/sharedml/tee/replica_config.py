"""The replica service's configuration file (`sharedml tee serve --config enclave.yaml`).

Why: one file says what the replica measures (provider and enclave settings), where it listens, how it
finds its peers (a cluster manager, static peer URLs, or both), its timeouts and TLS. Errors name the
file, the line and the field.

```yaml
name: replica-1                  # unique in the cluster
provider: gramine                # or simulated (INSECURE, tests only)
enclave: {allow_simulated_peers: false, chunk_size: 1048576}   # part of the measurement
listen: 0.0.0.0:8701             # port 0 picks a free port
advertise_url: https://r1.example:8701   # what peers and clients use; default: the bound address
manager: https://manager.example:8700    # optional: register, heartbeat, discover peers
peers: []                        # optional static peer URLs, polled every sync_interval
heartbeat_interval: 1.0          # seconds between heartbeats (the manager's timeout must be larger)
sync_interval: 5.0               # seconds between polls of static peers
timeout: 5.0                     # seconds for any call to the manager or a peer
workdir: null                    # optional: also run training jobs from <workdir>/jobs (see worker.py)
tls: {cert: r1.crt, key: r1.key, ca: ca.crt, require_client_cert: true}   # optional
```
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..jobs.yaml_errors import load_config
from .enclave import EnclaveConfig
from .errors import TeeError
from .sealed import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from .tls_options import TlsOptions


class EnclaveSettings(BaseModel):
    """The measured settings (`EnclaveConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_simulated_peers: bool = False
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, ge=1, le=MAX_CHUNK_SIZE)


class ReplicaConfig(BaseModel):
    """A replica's configuration file, validated; see the module docstring for the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider: str = "gramine"
    enclave: EnclaveSettings = EnclaveSettings()
    listen: str = "127.0.0.1:0"
    advertise_url: str | None = Field(None, pattern=r"^https?://")
    manager: str | None = Field(None, pattern=r"^https?://")
    peers: list[str] = Field(default_factory=list)
    heartbeat_interval: float = Field(1.0, gt=0)
    sync_interval: float = Field(5.0, gt=0)
    timeout: float = Field(5.0, gt=0)
    workdir: Path | None = None
    tls: TlsOptions | None = None

    def enclave_config(self) -> EnclaveConfig:
        return EnclaveConfig(allow_simulated_peers=self.enclave.allow_simulated_peers,
                             chunk_size=self.enclave.chunk_size)


def load_replica_config(path: str | Path) -> ReplicaConfig:
    """Read and validate a replica configuration; relative paths are relative to the file."""
    config = load_config(path, ReplicaConfig, TeeError, not_a_mapping="a replica configuration is a YAML mapping "
                         "with name, provider, listen, ...")
    base = Path(path).parent
    updates: dict[str, object] = {}
    if config.workdir is not None:
        updates["workdir"] = base / config.workdir
    if config.tls is not None:
        updates["tls"] = config.tls.model_copy(update={
            field: base / value for field in ("cert", "key", "ca")
            if (value := getattr(config.tls, field)) is not None})
    config = config.model_copy(update=updates)
    if config.tls is not None:
        config.tls.check_files(str(path))
    return config
