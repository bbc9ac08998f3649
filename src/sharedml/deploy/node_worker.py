"""A node's task worker: jobs/worker.py (one party's share of a job, here restricted to the dispatched
task) started from a fork server that has already imported the code and the components.

Starting a fresh interpreter costs seconds of CPU for the imports alone (pandas, scipy, grpc, every
component); forking a process that already holds them costs milliseconds, which matters when a
node runs many short tasks. The worker also runs at lower CPU priority, so the control APIs stay
responsive under protocol load, and ends itself when the node process is gone, so a killed node
never leaves a worker behind talking to its peers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import warnings
from multiprocessing.process import BaseProcess

from ..crypto import parallel
from ..jobs import worker
from ..jobs.components import builtin_modules
from ..lifeline import exit_with
from ..private_files import open_log

NICENESS = 5
_CONTEXT = multiprocessing.get_context("forkserver")
# A child re-runs the node's main module (e.g. `python -m sharedml.cli`: the CLI) before its task; with that
# module's imports preloaded too, this costs milliseconds instead of most of a second.
_MAIN = getattr(sys.modules["__main__"], "__spec__", None)
# ... and runpy would warn, in every child, that the module it re-runs is already imported: expected here.
warnings.filterwarnings("ignore", message=r".* found in sys\.modules after import of package", category=RuntimeWarning)
_CONTEXT.set_forkserver_preload([__name__, *builtin_modules(), *([_MAIN.name] if _MAIN is not None else [])])


def warm_up() -> None:
    """Start the fork server and wait until it has imported everything (seconds), so that the node
    starts serving only once a task can start at once, well within the coordinator's request timeout."""
    probe = _CONTEXT.Process(target=os.getpid, name="sharedml-warm-up")
    probe.start()
    probe.join()


def start(config_path: str, log_path: str) -> BaseProcess:
    """Start a worker for the config file; its stdout and stderr go to `log_path`."""
    process = _CONTEXT.Process(target=_run, args=(config_path, log_path, os.getpid()), name="sharedml-worker")
    process.start()
    return process


def _run(config_path: str, log_path: str, node_pid: int) -> None:
    os.setsid()  # a signal to the node's process group (e.g. Ctrl-C) is the node's to relay, not ours
    log = open_log(log_path)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # cancel = SIGINT = KeyboardInterrupt
    exit_with(node_pid)
    code = worker.main(config_path)
    # A forked multiprocessing child joins its non-daemon children *before* atexit handlers run, so an HE
    # process pool still waiting for work would hang the exit: stop it, then leave without further ado.
    parallel.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
