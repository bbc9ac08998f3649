"""Serving replicas on one machine, each its own OS process over mutual TLS on loopback (tests, benchmarks,
trying things out): exactly what runs across institutions, with loopback addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..net.certs import init_federation
from ..net.https import MtlsClient, TlsFiles
from ..net.loopback import child_env, free_port, stop, write_yaml

APP = "app"  # the certificate name of the applications calling the guest
REGISTRY = "registry"
STOP_GRACE_S = 5.0


@dataclass
class Process:
    name: str
    party: str
    url: str
    config: Path
    proc: subprocess.Popen

    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalCluster:
    """Start replicas from serve.yaml mappings (`certs` and `listen` are filled in); stop them all on close."""

    def __init__(self, root: Path, parties: list[str], niceness: int = 0) -> None:
        self.root, self.niceness = root, niceness
        self.certs = root / "certs"
        init_federation([*parties, REGISTRY, APP], self.certs)
        self.processes: dict[str, Process] = {}

    def tls(self, name: str = APP) -> TlsFiles:
        return TlsFiles.in_dir(self.certs, name)

    def start(self, name: str, config: dict[str, Any], ready: float = 30.0) -> Process:
        """Start replica `name` and wait until it answers /v1/health."""
        port = free_port()
        config = {**config, "certs": str(self.certs), "listen": f"127.0.0.1:{port}", "name": name}
        path = write_yaml(self.root / name / "serve.yaml", config)
        with open(self.root / name / "replica.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "sharedml.serving", "--config", str(path),
                                     "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                    preexec_fn=(lambda: os.nice(self.niceness)) if self.niceness else None)
        process = Process(name, config["party"], f"https://127.0.0.1:{port}", path, proc)
        self.processes[name] = process
        self.wait(lambda: self.health(name) is not None, ready, f"replica {name} to start")
        return process

    def health(self, name: str) -> dict | None:
        process = self.processes[name]
        if not process.alive():
            log = (self.root / name / "replica.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"replica {name} exited with code {process.proc.returncode}: {log}")
        client = MtlsClient(process.url, self.tls(), process.party, timeout=2.0)
        try:
            return client.request("GET", "/v1/health").json()
        except httpx.HTTPError:
            return None
        finally:
            client.close()

    def admin(self, name: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to replica `name` with its own party's certificate (an admin by default)."""
        process = self.processes[name]
        client = MtlsClient(process.url, self.tls(process.party), process.party, timeout=10.0)
        try:
            return client.request(method, path, **kwargs)
        finally:
            client.close()

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting {timeout} s for {what}")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        """SIGKILL: the replica dies mid-request, as on a crash."""
        process = self.processes[name]
        process.proc.send_signal(signal.SIGKILL)
        process.proc.wait()

    def close(self) -> None:
        stop((process.proc for process in self.processes.values()), STOP_GRACE_S)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
