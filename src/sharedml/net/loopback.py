"""Services on one machine over loopback addresses (tests, benchmarks, trying things out), each its own OS
process, exactly as across institutions: what the local launchers of deploy and serving share.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..private_files import make_private_dirs, write_bytes_atomic

SRC = Path(__file__).resolve().parents[2]  # the folder holding the `sharedml` package


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a service started soon after may bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_yaml(path: Path, data: Any) -> Path:
    """A config file for a launched service: private, written whole or not at all."""
    write_bytes_atomic(make_private_dirs(path.parent) / path.name, yaml.safe_dump(data, sort_keys=False).encode())
    return path


def child_env() -> dict[str, str]:
    """This process's environment, with this very package first on the path of the processes started with it."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def stop(processes: Iterable[subprocess.Popen], grace: float) -> None:
    """SIGTERM every process, then SIGKILL those still running after `grace` seconds."""
    processes = list(processes)
    for proc in processes:
        proc.terminate()  # nothing for a process that has already ended
    for proc in processes:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
