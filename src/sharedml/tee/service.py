"""Process wiring for `sharedml tee serve` (a replica) and `sharedml tee cluster` (the manager).

Why: a replica process runs three things around one enclave: the HTTP API (main thread, so uvicorn
handles SIGINT/SIGTERM), the heartbeat-and-sync loop, and optionally the training-job folder of the
file-based worker. They stop together.
"""

from __future__ import annotations

import threading

from .attestation import provider_named
from .enclave import Enclave
from .manager import manager_app
from .membership import Membership
from .node import ReplicaNode
from .node_api import replica_app
from .node_config import NodeConfig
from .transport import TlsOptions, bound_url, http_client, server
from .worker import publish, run_jobs


def run_replica(config: NodeConfig) -> None:
    """Start the enclave, serve its API, keep it registered and synced; returns when the server stops."""
    enclave = Enclave(provider_named(config.provider), config.enclave_config(), name=config.name)
    enclave.start()
    node = ReplicaNode(enclave)
    srv = server(replica_app(node), config.listen, config.tls)
    stop = threading.Event()
    threads = []
    with http_client(config.tls, config.timeout) as http:
        membership = Membership(node, config, http)

        def keep_in_cluster() -> None:
            membership.run(config.advertise_url or bound_url(srv, config.tls), stop)

        threads.append(threading.Thread(target=keep_in_cluster, name="membership", daemon=True))
        if config.workdir is not None:
            publish(enclave, config.workdir)
            threads.append(threading.Thread(target=run_jobs, args=(enclave, config.workdir, stop, 0.2),
                                            name="jobs", daemon=True))
        for thread in threads:
            thread.start()
        try:
            srv.run()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=config.timeout + 1)


def run_manager(listen: str, heartbeat_timeout: float, tls: TlsOptions | None) -> None:
    """Serve the cluster manager until interrupted."""
    server(manager_app(heartbeat_timeout), listen, tls).run()
