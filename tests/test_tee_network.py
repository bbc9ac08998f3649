"""The network form of the enclave cluster, as separate processes on loopback (simulated attestation): a
manager and three replicas of one measurement sync keys an owner gave to one of them; a fourth replica
of another measurement registers but every peer refuses it; a client keeps predicting with zero failed
requests while a replica is killed; the manager stops listing a replica that misses its heartbeats."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import kex
from sharedml.net.certs import init_federation
from sharedml.net.https import bound_url
from sharedml.net.loopback import child_env, free_port
from sharedml.tee.client import ClusterClient, ReplicaAdmin
from sharedml.tee.enclave import EnclaveConfig
from sharedml.tee.errors import ClusterError, RequestRejected
from sharedml.tee.manager import manager_app
from sharedml.tee.measurement import code_measurement
from sharedml.tee.owner import encrypt_file
from sharedml.tee.owner_policy import OwnerPolicy
from sharedml.tee.quotes import TrustSettings
from sharedml.tee.release import decrypt_model
from sharedml.tee.tls_options import TlsOptions, server_for

pytestmark = pytest.mark.filterwarnings("ignore::sharedml.tee.attestation.InsecureAttestationWarning")

HEARTBEAT_TIMEOUT = 2.0


def wait_for(check: Callable[[], object], what: str, seconds: float = 25.0) -> object:
    """Poll `check` until it returns a truthy value (exceptions count as not yet)."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001  (not ready yet: retry until the deadline)
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def tee_process(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen([sys.executable, "-m", "sharedml.tee.cli", *args], stdout=handle,
                                stderr=subprocess.STDOUT, env=child_env())


def replica_config(folder: Path, name: str, manager: str, listen: str, **extra: object) -> Path:
    config = {"name": name, "provider": "simulated", "listen": listen, "manager": manager,
              "enclave": {"allow_simulated_peers": True, **extra.pop("enclave", {})},
              "heartbeat_interval": 0.2, "sync_interval": 0.5, "timeout": 2.0,
              "workdir": str(folder / name), **extra}
    if config["workdir"] is None:
        del config["workdir"]
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def tables(rows: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] + x[:, 2] - x[:, 3] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    bank = pd.DataFrame({"id": np.arange(rows), "y": y, "a": x[:, 0], "b": x[:, 1]})
    insurer = pd.DataFrame({"id": np.arange(rows)[::-1], "c": x[::-1, 2], "d": x[::-1, 3]})
    return bank, insurer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """Manager + r1, r2, r3 (one measurement) + rogue (another measurement, polling r1..r3 as static peers)."""
    folder = tmp_path_factory.mktemp("tee-network")
    manager = f"http://127.0.0.1:{free_port()}"
    urls = {name: f"http://127.0.0.1:{free_port()}" for name in ("r1", "r2", "r3")}
    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["manager"] = tee_process(["cluster", "--listen", manager.removeprefix("http://"),
                                            "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)], folder / "manager.log")
        for name, url in urls.items():
            config = replica_config(folder, name, manager, url.removeprefix("http://"))
            processes[name] = tee_process(["serve", "--config", str(config)], folder / f"{name}.log")
        rogue = replica_config(folder, "rogue", manager, "127.0.0.1:0", enclave={"chunk_size": 4096},
                               peers=list(urls.values()))
        processes["rogue"] = tee_process(["serve", "--config", str(rogue)], folder / "rogue.log")

        def listed() -> dict[str, str]:
            replicas = httpx.get(f"{manager}/v1/replicas", timeout=2).json()["replicas"]
            return {r["name"]: r["url"] for r in replicas}

        wait_for(lambda: len(listed()) == 4, "four replicas registered", 40)
        admins = {name: ReplicaAdmin(url, timeout=10) for name, url in listed().items()}
        yield {"folder": folder, "manager": manager, "processes": processes, "admins": admins, "listed": listed}
        for admin in admins.values():
            admin.close()
    finally:
        for process in processes.values():
            process.kill()
        for process in processes.values():
            process.wait(10)


@pytest.fixture(scope="module")
def owners(cluster) -> dict:
    """Two owners encrypt to r1 (after checking its quote) and hand r1 their data keys."""
    folder, r1 = cluster["folder"], cluster["admins"]["r1"]
    alice, mallory = kex.generate_private_key(), kex.generate_private_key()
    quote = r1.quote()
    recipients = {"alice": kex.public_key_bytes(alice).hex(), "mallory": kex.public_key_bytes(mallory).hex()}
    files = []
    for dataset, table in zip(("bank", "insurer"), tables(), strict=True):
        table.to_csv(folder / f"{dataset}.csv", index=False)
        policy = OwnerPolicy(dataset_id=dataset, id_column="id", allowed_measurements=[quote.measurement.hex()],
                             allowed_recipients=recipients, allow_simulated=True)
        files.append(folder / f"{dataset}.enc")
        encrypt_file(policy, quote, folder / f"{dataset}.csv", files[-1])
        assert r1.add_dataset(str(files[-1]))["new"] is True
    trust = TrustSettings(frozenset({quote.measurement}), allow_simulated=True)
    return {"alice": alice, "mallory": mallory, "files": files, "trust": trust, "measurement": quote.measurement}


def job(folder: Path, replica: str, files: list[Path], model: str) -> Path:
    """Drop a training job into a replica's work folder; returns the path of its outcome (.done/.failed)."""
    path = folder / replica / "jobs" / f"{model}.yaml"
    path.write_text(json.dumps({"datasets": [str(f) for f in files], "label": "bank.y", "recipients": ["alice"],
                                "model_location": str(folder / f"{model}.enc"),
                                "params": {"n_estimators": 5, "max_depth": 3, "nthread": 1}}))
    return path


def test_keys_reach_every_replica_of_the_measurement_and_no_other(cluster, owners):
    admins, folder, files = cluster["admins"], cluster["folder"], owners["files"]
    wait_for(lambda: all(admins[n].health()["keys"] == 2 for n in ("r2", "r3")), "r2 and r3 to sync both keys")
    # r2 and r3 decrypt the owners' files themselves: each trains on them; the rogue cannot
    jobs = {name: job(folder, name, files, f"model-{name}") for name in ("r2", "r3", "rogue")}
    for name in ("r2", "r3"):
        wait_for(lambda n=name: jobs[n].with_suffix(".done").exists(), f"{name}'s training job", 40)
    failed = wait_for(lambda: jobs["rogue"].with_suffix(".failed").exists() and jobs["rogue"].with_suffix(
        ".failed").read_text(), "the rogue's job to fail")
    assert "this enclave runs" in failed and "the owner must encrypt to an approved enclave" in failed
    with pytest.raises(ClusterError, match="422.*encrypted for measurement"):
        admins["rogue"].add_dataset(str(files[0]))
    # the rogue asked every peer for keys and each refused it; it holds no key and was never sent one
    rogue = wait_for(lambda: (h := admins["rogue"].health())["sync"].keys() >= {a.url for n, a in admins.items()
                                                                                if n != "rogue"} and h, "rogue polls")
    assert rogue["keys"] == 0 and rogue["sync"]["manager"] == "ok"
    for name in ("r1", "r2", "r3"):
        assert rogue["sync"][admins[name].url].startswith("refused (403)")
        health = admins[name].health()
        assert any(r["measurement"] == rogue["measurement"] and "refusing to release keys" in r["detail"]
                   for r in health["refusals"])
        assert all(e["measurement"] == owners["measurement"].hex() for e in health["exports"])
    # the manager never offered the rogue a peer: its measurement group is itself alone
    alone = httpx.get(f"{cluster['manager']}/v1/replicas", params={"measurement": rogue["measurement"]}).json()
    assert [r["name"] for r in alone["replicas"]] == ["rogue"]


@pytest.fixture(scope="module")
def served(cluster, owners) -> dict:
    """The model r2 trained, served by r1, r2 and r3 (r1 and r3 got its key by sync); alice's copy of it."""
    folder, admins = cluster["folder"], cluster["admins"]
    wait_for(lambda: (folder / "model-r2.enc").exists(), "r2's sealed model")
    model = str(folder / "model-r2.enc")
    for name in ("r1", "r2", "r3"):
        wait_for(lambda n=name: admins[n].load_model(model), f"{name} to load the model (after syncing its key)")
    opened = decrypt_model((folder / "r2" / "out" / "model-r2" / "alice.release").read_bytes(), owners["alice"],
                           owners["trust"])
    bank, insurer = tables()
    rows = bank.merge(insurer, on="id").drop(columns=["id", "y"]).to_numpy(np.float64)
    return {"model_id": opened.model_id, "model": opened.model, "rows": rows}


def test_only_model_recipients_may_query(cluster, owners, served):
    with ClusterClient(cluster["manager"], owners["mallory"], owners["trust"], served["model_id"]) as mallory:
        with pytest.raises(RequestRejected, match="not a recipient of this model"):
            mallory.predict(served["rows"][:2])
        assert {r.name for r in mallory.replicas()} == {"r1", "r2", "r3"}  # a refusal marks nobody down
        assert "rogue" in mallory.refused  # its quote fails the client's trust settings: nothing is sent to it


def test_predictions_survive_a_replica_killed_under_load(cluster, owners, served):
    rows, expected = served["rows"], served["model"].predict_scores(served["rows"])
    client = ClusterClient(cluster["manager"], owners["alice"], owners["trust"], served["model_id"], timeout=3)

    def one(i: int) -> np.ndarray:
        if i == 40:
            cluster["processes"]["r1"].send_signal(signal.SIGKILL)
        return client.predict(rows[i % 200:][:5])

    with client, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(150)))  # any failed request raises here
    for i, scores in enumerate(results):
        np.testing.assert_allclose(scores, expected[i % 200:][:5], rtol=1e-12)
    assert "r1" in client.failovers  # requests did reach the dead r1, and were served elsewhere
    assert all(cluster["admins"][name].health()["served"] > 10 for name in ("r2", "r3"))
    cluster["processes"]["r1"].wait(5)
    # the manager drops r1 once it misses heartbeats for HEARTBEAT_TIMEOUT seconds
    wait_for(lambda: set(cluster["listed"]()) == {"r2", "r3", "rogue"}, "the manager to drop r1",
             HEARTBEAT_TIMEOUT + 5)


def test_manager_and_replica_over_mutual_tls(tmp_path):
    """HTTPS with client certificates between the SDK, the manager and a replica; no certificate, no access."""
    certs = init_federation(["manager", "r9", "client"], tmp_path / "certs")
    measurement = code_measurement(EnclaveConfig(allow_simulated_peers=True).as_dict())
    trust = TrustSettings(frozenset({measurement}), allow_simulated=True)
    tls = {name: TlsOptions(cert=tmp_path / "certs" / f"{name}.crt", key=tmp_path / "certs" / f"{name}.key",
                            ca=tmp_path / "certs" / "ca.crt", require_client_cert=name != "client")
           for name in certs}
    srv = server_for(manager_app(HEARTBEAT_TIMEOUT), "127.0.0.1:0", tls["manager"])
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    replica = None
    try:
        manager = bound_url(srv)
        assert manager.startswith("https://")
        config = replica_config(tmp_path, "r9", manager, "127.0.0.1:0", workdir=None,
                                tls=json.loads(tls["r9"].model_dump_json()))
        replica = tee_process(["serve", "--config", str(config)], tmp_path / "r9.log")
        with ClusterClient(manager, kex.generate_private_key(), trust, bytes(16), tls=tls["client"]) as client:
            listed = wait_for(lambda: client.replicas(), "r9 to register over TLS", 30)
            assert [r.name for r in listed] == ["r9"] and listed[0].url.startswith("https://")
            admin = ReplicaAdmin(listed[0].url, tls=tls["client"])
            assert admin.health()["name"] == "r9"
            admin.close()
        for url in (manager, listed[0].url):
            with pytest.raises(httpx.HTTPError):  # the CA is right, but no client certificate
                httpx.get(f"{url}/v1/health", verify=TlsOptions(ca=tmp_path / "certs" / "ca.crt").client_context(),
                          timeout=5).raise_for_status()
    finally:
        srv.should_exit = True
        thread.join(10)
        if replica is not None:
            replica.kill()
            replica.wait(10)
