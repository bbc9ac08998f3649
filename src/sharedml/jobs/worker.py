"""One party as its own OS process: `python -m sharedml.jobs.worker CONFIG.json`.

The local runner starts one of these per party; each listens on its own port with its own
certificate and talks to its peers over gRPC with mutual TLS, exactly as separate nodes would.
Exit code: 0 succeeded, 1 failed, 130 cancelled; the outcome is also written to the result file.
A worker that ends without a result file died (killed, out of memory): its supervisor then reports
that to the peers in its name (`announce_death`), so they stop at once instead of at the job's timeout.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..net.certs import load_identity
from ..net.channel import MessageKey, Transport
from ..net.errors import JobAborted, PeerTimeout
from ..net.grpc_transport import GrpcTransport
from ..private_files import PRIVATE_UMASK, write_json_atomic
from .catalog import Catalog
from .party import PartyResult, run_party
from .spec import JobSpec
from .store import JobStore

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 130}
ANNOUNCE_TIMEOUT_S = 2.0  # per peer: a survivor answers at once, a dead one must not hold up the others
ABORT_GRACE_S = 2.0  # how long a party may take to stop by itself once a peer aborted the job
_ABORT_WATCH_POLL_S = 3600.0


def main(config_path: str) -> int:
    os.umask(PRIVATE_UMASK)  # whatever this party writes (outputs, checkpoints, a component's files) is its own
    config = json.loads(Path(config_path).read_text())
    party = config["party"]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {party} %(levelname)s %(name)s: %(message)s")
    spec = JobSpec.model_validate(config["spec"])
    catalog = Catalog.from_mapping(config["catalog"]["entries"], config["catalog"]["source"],
                                   Path(config["catalog"]["base_dir"]))
    timeout = config["timeout"] if config["timeout"] is not None else spec.timeout
    transport = GrpcTransport(load_identity(Path(config["cert_dir"]), party), config["listen"],
                              config["peers"], allowed=set(spec.parties), connect_timeout=timeout,
                              max_message_bytes=spec.max_message_bytes)
    if config.get("await_peers"):
        _await_listening(config["peers"].values(), timeout)
    store = JobStore(config["db_url"])
    _stop_on_abort(transport, config["job_id"])
    result = PartyResult(party, "cancelled", error="cancelled before the first task")
    try:
        result = run_party(spec, config["job_id"], party, catalog, transport, Path(config["workdir"]),
                           store, timeout, only=config.get("tasks"), allowed_code=config["allowed_code"])
    except KeyboardInterrupt:
        result = PartyResult(party, "cancelled", error=f"party {party!r} was interrupted (Ctrl-C)")
    except JobAborted as err:  # the abort watch raised it between two tasks
        result = PartyResult(party, "failed", error=str(err), caused_by=err.party)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # nor a late abort notice
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        result.resources = {  # children: helper processes a component ran (e.g. the spu PSI engine)
            "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in (own, children)), 3),
            "peak_rss_mb": round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1)}
        write_json_atomic(Path(config["result"]), result.to_json())
        transport.close()
        store.close()
    return EXIT_CODES[result.state]


def _stop_on_abort(transport: Transport, job_id: str) -> None:
    """Make a peer's abort notice stop this party even where it is not waiting for it.

    A party sees the notice in its next `recv`; one blocked in a send to the peer that died instead waits for
    that peer to accept a connection, up to the job's timeout. So once the notice has come and the party is
    still at work ABORT_GRACE_S later, raise the notice in the main thread: a signal interrupts its wait, and
    `run_party` fails the task with it as with any abort. Not while the party handles an error: it is failing
    already (perhaps telling an unreachable peer), and its own report must not be cut short."""
    notice: list[JobAborted] = []

    def raise_notice(_signum: int, _frame: object) -> None:
        if sys.exc_info()[1] is None:  # the interrupted code's exception being handled, if any
            raise notice[0]

    def watch() -> None:
        probe = MessageKey(job_id, "", "", "abort-watch", -1)  # no one sends it: `get` waits for the job's abort
        while not notice:
            try:
                transport.mailbox.get(probe, _ABORT_WATCH_POLL_S)
            except JobAborted as err:
                notice.append(err)
            except PeerTimeout:
                pass
        time.sleep(ABORT_GRACE_S)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    signal.signal(signal.SIGUSR1, raise_notice)
    threading.Thread(target=watch, daemon=True, name="abort-watch").start()


def died(party: str, exitcode: int) -> str:
    """Why a worker ended without a result, e.g. "party 'B' died (signal 9)"."""
    how = f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
    return f"party {party!r} died ({how})"


def announce_death(config: dict[str, Any], reason: str, peers: Iterable[str]) -> None:
    """Tell `peers` that the worker of `config` died, in its name, as it would have told them itself had it
    failed: their waiting `recv`s then fail at once naming it, rather than at the job's timeout. The worker's
    supervisor (the local runner, the node) holds the party's identity, so the notice passes their checks."""
    host = config["listen"].rpartition(":")[0]
    transport = GrpcTransport(load_identity(Path(config["cert_dir"]), config["party"]), f"{host}:0",
                              config["peers"], allowed=set(), connect_timeout=ANNOUNCE_TIMEOUT_S)
    try:
        transport.abort_job(config["job_id"], reason, peers)
    finally:
        transport.close()


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
