"""Split large big-integer vector operations across local worker processes.

Why: a 2048-bit Paillier encryption or decryption costs hundreds of microseconds to milliseconds of
GMP work, and gmpy2 holds the GIL for most of it, so threads do not help; processes do. The key
classes in `sharedml.crypto.paillier` call `enabled(size)` and, above a size threshold, hand chunks
of their arrays to `map_chunks` / `run`. Below the threshold (default 1,000 elements) everything
stays in the calling process: the pool's start-up (a second or so) and the pickling of arguments
would cost more than they save.

The pool is a `ProcessPoolExecutor` with the *spawn* start method (no inherited locks or threads,
no copy of the parent's memory), created on first use, reused, and sized to `os.cpu_count()`.
`configure(workers=1)` turns parallelism off; `SHAREDML_HE_WORKERS` sets the default worker count.
Unlike plain spawn, a worker does not import the caller's main script (on POSIX): workers only run
this package's functions, and a user's script that trains at its top level, with no
`if __name__ == "__main__":`, would otherwise run again in every worker, which multiprocessing refuses
(`BrokenProcessPool`).

Security notes: arguments, including private keys, travel to the workers with pickle. That is local
IPC between this process and the children it spawned, never network input: data from peers is
decoded with `sharedml.net.serialization` and never unpickled. Worker processes hold copies of the
keys they were given (and their precomputed tables) until the pool is shut down; they run as the
same user as the caller. Each worker also ends itself once the process that created the pool is gone
(`sharedml.lifeline`): an idle worker waits on a queue whose write end the other workers hold open too, so
a parent killed with SIGKILL would otherwise leave them (and the resource tracker that they keep
alive) running with those keys until the machine reboots.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from ..lifeline import exit_with

__all__ = ["DEFAULT_MIN_SIZE", "configure", "enabled", "map_chunks", "run", "shutdown", "split", "workers"]

DEFAULT_MIN_SIZE = 1000
_CHUNKS_PER_WORKER = 2  # a little slack so one slow worker (a busy core) does not hold up the rest

_lock = threading.Lock()
_executor: ProcessPoolExecutor | None = None
_workers = int(os.environ.get("SHAREDML_HE_WORKERS", 0)) or os.cpu_count() or 1
_min_size = DEFAULT_MIN_SIZE


def configure(workers: int | None = None, min_size: int | None = None) -> None:
    """Set the number of worker processes (1 disables parallelism) and the smallest size worth splitting."""
    global _workers, _min_size
    if workers is not None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if workers != _workers:
            shutdown()
            _workers = workers
    if min_size is not None:
        if min_size < 1:
            raise ValueError("min_size must be at least 1")
        _min_size = min_size


def workers() -> int:
    """The configured number of worker processes."""
    return _workers


def enabled(size: int) -> bool:
    """Whether an operation on `size` elements should be split across processes."""
    return _workers > 1 and size >= _min_size


def split(size: int) -> list[slice]:
    """Contiguous, nearly equal slices covering range(size), a few per worker."""
    count = max(1, min(size, _workers * _CHUNKS_PER_WORKER))
    bounds = [size * i // count for i in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]


if sys.platform == "win32":  # plain spawn: a script there needs `if __name__ == "__main__":`
    def _spawn_context() -> multiprocessing.context.BaseContext:
        return multiprocessing.get_context("spawn")
else:
    from multiprocessing import context as mp_context
    from multiprocessing import popen_spawn_posix, spawn

    _MAIN_KEYS = ("init_main_from_path", "init_main_from_name")  # spawn's instruction to import the parent's main
    _launching = threading.Lock()

    class _PopenWithoutMain(popen_spawn_posix.Popen):
        """Starts a worker from the parent's start-up data minus the main module."""

        def _launch(self, process_obj: Any) -> None:
            prepare = spawn.get_preparation_data
            with _launching:
                spawn.get_preparation_data = lambda name: {k: v for k, v in prepare(name).items()
                                                           if k not in _MAIN_KEYS}
                try:
                    super()._launch(process_obj)
                finally:
                    spawn.get_preparation_data = prepare

    class _WorkerProcess(mp_context.SpawnProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> _PopenWithoutMain:
            return _PopenWithoutMain(process_obj)

    class _WorkerContext(mp_context.SpawnContext):
        Process = _WorkerProcess

    def _spawn_context() -> multiprocessing.context.BaseContext:
        return _WorkerContext()


def _pool() -> ProcessPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ProcessPoolExecutor(max_workers=_workers, mp_context=_spawn_context(),
                                            initializer=exit_with, initargs=(os.getpid(),))
        return _executor


def run(fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
    """`[fn(*task) for task in tasks]`, computed in the worker processes; `fn` must be a module-level function."""
    pool = _pool()
    futures = [pool.submit(fn, *task) for task in tasks]
    return [future.result() for future in futures]


def map_chunks(fn: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], *args: Any) -> np.ndarray:
    """Apply `fn(*chunks, *args)` to matching slices of 1-D `arrays` in the workers; concatenate the results."""
    size = len(arrays[0])
    if any(len(a) != size for a in arrays):
        raise ValueError("arrays must have the same length")
    parts = run(fn, [(*(a[s] for a in arrays), *args) for s in split(size)])
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def shutdown() -> None:
    """Stop the worker processes (a later parallel call starts new ones)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)
