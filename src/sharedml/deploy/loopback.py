"""A whole deployment on one machine, for tests, benchmarks and trying things out: a federation CA, a
coordinator and nodes, each its own OS process started through the CLI, everything over mutual TLS
exactly as across institutions (only the addresses are loopback ones).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..net.certs import init_federation
from ..net.loopback import child_env, free_port, stop, write_yaml
from ..private_files import make_private_dirs, open_log, write_bytes_atomic
from .client import ApiError, CoordinatorClient

FINISHED = ("succeeded", "failed", "cancelled")
ADMIN = "admin"
STOP_GRACE_S = 10.0
BOARD_PASSWORD = "loopback-board-password"  # a throw-away deployment's accounts only


class Deployment:
    """`nodes`: {party: {"datasets": {name: csv text or source path}, "policy": {...}}}; a node's optional
    "board_users" ({name: role}) turns its board on with those accounts (password `board_password`)."""

    def __init__(self, root: Path, nodes: dict[str, dict[str, Any]], max_concurrent_jobs: int = 4,
                 node_timeout: float = 5.0, poll_interval: float = 0.2, node_niceness: int = 0,
                 board_users: dict[str, tuple[str, str | None]] | None = None,
                 board_password: str = BOARD_PASSWORD, coordinator_port: int | None = None) -> None:
        """`board_users` ({name: (role, party)}), when given, turns the coordinator's board on with these
        accounts, each with the password `board_password`."""
        self.root = root
        self.node_niceness = node_niceness  # >0 stands in for the nodes' own machines when measuring the coordinator
        self.certs = root / "certs"
        init_federation(["coordinator", ADMIN, *nodes], self.certs)
        self.ports = {party: free_port() for party in nodes}
        self.node_configs: dict[str, Path] = {}
        for party, spec in nodes.items():
            home = root / party
            datasets = {}
            for name, source in spec["datasets"].items():
                suffix = "".join(source.suffixes) if isinstance(source, Path) else ".csv"  # keeps .csv.gz readable
                target = make_private_dirs(home) / f"{name}{suffix}"
                write_bytes_atomic(target, source.read_bytes() if isinstance(source, Path) else source.encode())
                datasets[name] = {"path": target.name}
            write_yaml(home / "catalog.yaml", {"datasets": datasets})
            write_yaml(home / "policy.yaml", spec["policy"])
            self.node_configs[party] = write_yaml(home / "node.yaml", {
                "party": party, "certs": str(self.certs), "listen": f"127.0.0.1:{self.ports[party]}",
                "peers": {p: "127.0.0.1" for p in nodes if p != party}, "catalog": "catalog.yaml",
                "policy": "policy.yaml", **({"board": {}} if "board_users" in spec else {}), **spec.get("extra", {})})
            for name, role in spec.get("board_users", {}).items():
                from ..board.accounts import add_user
                add_user(home / "board-accounts.yaml", name, board_password, role, party)
        self.url = f"https://127.0.0.1:{coordinator_port or free_port()}"
        self.coordinator_config = write_yaml(root / "coordinator" / "coordinator.yaml", {
            "certs": str(self.certs), "listen": self.url.removeprefix("https://"),
            "nodes": {p: f"https://127.0.0.1:{port}" for p, port in self.ports.items()},
            "max_concurrent_jobs": max_concurrent_jobs, "node_timeout": node_timeout,
            "poll_interval": poll_interval, **({"board": {}} if board_users is not None else {})})
        if board_users is not None:
            from ..board.accounts import add_user
            for name, (role, party) in board_users.items():
                add_user(self.coordinator_config.parent / "board-accounts.yaml", name, board_password, role, party)
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = child_env()  # fixed now, so that services restarted later see the same one (component plugins)
        self._client: CoordinatorClient | None = None

    # ---- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], niceness: int = 0) -> None:
        log = open_log(self.root / f"{name}.log")
        prefix = ["nice", "-n", str(niceness)] if niceness else []
        try:
            self.procs[name] = subprocess.Popen([*prefix, sys.executable, "-m", "sharedml.cli", *args], stdout=log,
                                                stderr=subprocess.STDOUT, env=self.env)
        finally:
            os.close(log)  # the process has its own copy

    def start_node(self, party: str) -> None:
        self._spawn(party, ["node", "start", "--config", str(self.node_configs[party])], self.node_niceness)

    def start_coordinator(self) -> None:
        self._spawn("coordinator", ["coordinator", "start", "--config", str(self.coordinator_config)])

    def start(self, timeout: float = 60.0) -> Deployment:
        for party in self.node_configs:
            self.start_node(party)
        self.start_coordinator()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the coordinator answers and reaches every node."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(info["ok"] for info in self.client.call("GET", "/nodes").values()):
                    return
            except ApiError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment not ready after {timeout} s; logs: {self.log_tails()}")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        stop(self.procs.values(), STOP_GRACE_S)
        self.procs.clear()

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    # ---- API ----------------------------------------------------------------------------------
    @property
    def client(self) -> CoordinatorClient:
        if self._client is None:
            self._client = CoordinatorClient(self.url, self.certs, ADMIN, timeout=10)
        return self._client

    def wait(self, job_id: str, timeout: float = 60.0, until: Callable[[dict], bool] | None = None) -> dict:
        """Poll a job until it finished (or `until` holds); a TimeoutError shows the service logs."""
        until = until or (lambda job: job["state"] in FINISHED)
        deadline = time.monotonic() + timeout
        while not until(job := self.client.job(job_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s: {job}\n{self.log_tails()}")
            time.sleep(0.1)
        return job
