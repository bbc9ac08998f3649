"""What the SecretFlow baselines share: start a script as two party processes, load a party's half of
the vertical data, measure memory. Standalone (runs in SecretFlow's Python 3.10 venv): no sharedml.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing

PARTIES = ("alice", "bob")


def peak_rss_mb() -> float:
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(kb / 1024, 1)


def free_ports(count: int) -> list[int]:
    ports = []
    for _ in range(count):
        with closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    return ports


def load_party(guest_csv: str, host_csv: str, is_guest: bool, id_column: str = "id", label: str = "y"):
    """This party's features (and label, at the guest) on the rows both have, in the guest's order."""
    import pandas as pd

    own = pd.read_csv(guest_csv if is_guest else host_csv)
    other_ids = pd.read_csv(host_csv if is_guest else guest_csv, usecols=[id_column])
    ids = own[[id_column]].merge(other_ids, on=id_column) if is_guest else other_ids.merge(own[[id_column]],
                                                                                            on=id_column)
    own = ids.merge(own, on=id_column, how="left")
    x = own.drop(columns=[id_column, label], errors="ignore").to_numpy("float32")
    y = own[label].to_numpy("float32").reshape(-1, 1) if is_guest else None
    return x, y


def auc(pred, label) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label.ravel(), pred.ravel()))


def run_parties(script: str, argv: list[str], ports: int) -> dict[str, dict]:
    """Run `script argv --party P --ports ...` for both parties; each prints its result as a last JSON line.
    A party that fails gets its peer killed (which would otherwise wait for it forever)."""
    port_list = ",".join(map(str, free_ports(ports)))
    outputs = {p: tempfile.TemporaryFile("w+") for p in PARTIES}  # not pipes: SPU logs could fill one
    procs = {p: subprocess.Popen([sys.executable, script, *argv, "--party", p, "--ports", port_list],
                                 stdout=outputs[p], text=True) for p in PARTIES}
    while all(proc.poll() is None for proc in procs.values()):
        time.sleep(0.2)
    failed = [p for p, proc in procs.items() if proc.poll() not in (None, 0)]
    for proc in procs.values():
        if failed and proc.poll() is None:
            proc.kill()
    if failed:
        sys.exit(f"party {failed[0]} exited with {procs[failed[0]].returncode}")
    results = {}
    for p, out in outputs.items():
        if procs[p].wait() != 0:
            sys.exit(f"party {p} exited with {procs[p].returncode}")
        out.seek(0)
        results[p] = json.loads([line for line in out.read().splitlines() if line.startswith("{")][-1])
    return results
