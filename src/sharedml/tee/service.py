"""Process wiring for `sharedml tee serve` (a replica) and `sharedml tee cluster` (the manager).

Why: a replica process runs three things around one enclave: the HTTP API (main thread, so uvicorn
handles SIGINT/SIGTERM), the heartbeat-and-sync loop, and optionally the training-job folder of the
file-based worker. They stop together.
"""

from __future__ import annotations

import threading

from ..net.https import bound_url
from .attestation import provider_named
from .enclave import Enclave
from .enclave_api import MAX_BODY, replica_app
from .enclave_host import EnclaveHost
from .manager import manager_app
from .membership import Membership
from .replica_config import ReplicaConfig
from .tls_options import TlsOptions, http_client_for, server_for
from .worker import publish, run_jobs


def run_replica(config: ReplicaConfig) -> None:
    """Start the enclave, serve its API, keep it registered and synced; returns when the server stops."""
    enclave = Enclave(provider_named(config.provider), config.enclave_config(), name=config.name)
    enclave.start()
    host = EnclaveHost(enclave)
    srv = server_for(replica_app(host), config.listen, config.tls, MAX_BODY)
    stop = threading.Event()
    threads = []
    with http_client_for(config.tls, config.timeout) as http:
        membership = Membership(host, config, http)

        def keep_in_cluster() -> None:
            membership.run(config.advertise_url or bound_url(srv), stop)

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
    server_for(manager_app(heartbeat_timeout), listen, tls).run()

