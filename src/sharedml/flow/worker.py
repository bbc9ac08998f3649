"""One party as its own OS process: `python -m sharedml.flow.worker CONFIG.json`.

The local runner starts one of these per party; each listens on its own port with its own
certificate and talks to its peers over gRPC with mutual TLS, exactly as separate nodes would.
Exit code: 0 succeeded, 1 failed, 130 cancelled; the outcome is also written to the result file.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from ..net.certs import load_identity
from ..net.grpc_transport import GrpcTransport
from .catalog import Catalog
from .party import PartyResult, run_party
from .runner import write_json_atomic
from .spec import JobSpec
from .store import JobStore

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 130}


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    party = config["party"]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {party} %(levelname)s %(name)s: %(message)s")
    spec = JobSpec.model_validate(config["spec"])
    catalog = Catalog.from_mapping(config["catalog"]["entries"], config["catalog"]["source"],
                                   Path(config["catalog"]["base_dir"]))
    timeout = config["timeout"] if config["timeout"] is not None else spec.timeout
    transport = GrpcTransport(load_identity(Path(config["cert_dir"]), party), config["listen"],
                              config["peers"], allowed=set(spec.parties), connect_timeout=timeout)
    if config.get("await_peers"):
        _await_listening(config["peers"].values(), timeout)
    store = JobStore(config["db_url"])
    result = PartyResult(party, "cancelled", error="cancelled before the first task")
    try:
        result = run_party(spec, config["job_id"], party, catalog, transport, Path(config["workdir"]),
                           store, timeout, only=config.get("tasks"))
    except KeyboardInterrupt:
        result = PartyResult(party, "cancelled", error=f"party {party!r} was interrupted (Ctrl-C)")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        result.resources = {  # children: helper processes a component ran (e.g. the spu PSI engine)
            "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in (own, children)), 3),
            "peak_rss_mb": round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1)}
        write_json_atomic(Path(config["result"]), result.to_json())
        transport.close()
        store.close()
    return EXIT_CODES[result.state]


def _await_listening(addresses: Iterable[str], timeout: float) -> None:
    """Wait, at most `timeout`, until every peer accepts connections. Peers started a moment apart (a node's
    workers) then connect at once, instead of gRPC retrying after its reconnect backoff (1 s, growing)."""
    deadline = time.monotonic() + timeout
    pending = set(addresses)
    while pending and time.monotonic() < deadline:
        for address in list(pending):
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    pending.discard(address)
            except OSError:
                pass
        if pending:
            time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
