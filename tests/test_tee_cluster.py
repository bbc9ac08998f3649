"""TEE cluster: attested key sync across replicas of one measurement (never to another), prediction with
encrypted requests, round robin and failover when a replica dies under load."""

from __future__ import annotations

import gzip
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from sharedml.crypto import kex
from sharedml.tee.attestation import SimulatedProvider
from sharedml.tee.cluster import ClusterManager, Heartbeat, Replica
from sharedml.tee.enclave import Enclave, EnclaveConfig
from sharedml.tee.errors import AttestationError, ClusterError, EnvelopeError, RequestRejected
from sharedml.tee.owner import encrypt_file
from sharedml.tee.owner_policy import OwnerPolicy
from sharedml.tee.predict import PredictionClient, PredictionService
from sharedml.tee.quotes import TrustSettings
from sharedml.tee.train import TrainJob, train

pytestmark = pytest.mark.filterwarnings("ignore::sharedml.tee.attestation.InsecureAttestationWarning")

CONFIG = EnclaveConfig(allow_simulated_peers=True)


class FlakyReplica(Replica):
    """A replica that counts what it serves and can be made to crash."""

    def __init__(self, enclave: Enclave) -> None:
        super().__init__(enclave)
        self.crashed = threading.Event()
        self.served = self.refused = 0

    def handle(self, request: bytes) -> bytes:
        if self.crashed.is_set():
            self.refused += 1
            raise ConnectionError(f"{self.name} is gone")
        response = super().handle(request)
        self.served += 1
        return response


def started(name: str, config: EnclaveConfig = CONFIG) -> Enclave:
    enclave = Enclave(SimulatedProvider(), config, name=name)
    enclave.start()
    return enclave


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir):
    """Three replicas of one measurement and a rogue one; two owners encrypted to r1; r1 trained a model."""
    folder = tmp_path_factory.mktemp("cluster")
    replicas = [FlakyReplica(started(f"r{i}")) for i in (1, 2, 3)]
    rogue = FlakyReplica(started("rogue", EnclaveConfig(allow_simulated_peers=True, chunk_size=4096)))
    alice, mallory = kex.generate_private_key(), kex.generate_private_key()
    r1 = replicas[0].enclave
    files = []
    for dataset, half in (("bank", "guest"), ("insurer", "host")):
        recipients = {"alice": kex.public_key_bytes(alice).hex(), "mallory": kex.public_key_bytes(mallory).hex()}
        policy = OwnerPolicy(dataset_id=dataset, id_column="id", allowed_measurements=[r1.measurement.hex()],
                             allowed_recipients=recipients, allow_simulated=True)
        files.append(str(folder / f"{dataset}.enc"))
        encrypt_file(policy, r1.quote, data_dir / f"default_credit_hetero_{half}.csv.gz", files[-1])
    model_path = str(folder / "model.enc")
    result = train(r1, TrainJob(files, label="bank.y", recipients=["alice"], model_location=model_path,
                                params={"n_estimators": 5, "max_depth": 3, "nthread": 1}))
    guest = pd.read_csv(data_dir / "default_credit_hetero_guest.csv.gz", nrows=40)
    host = pd.read_csv(data_dir / "default_credit_hetero_host.csv.gz", nrows=40)
    rows = guest.merge(host, on="id").drop(columns=["id", "y"]).to_numpy(np.float64)
    return {"replicas": replicas, "rogue": rogue, "files": files, "model": model_path, "result": result,
            "alice": alice, "mallory": mallory, "rows": rows}


def decrypts(enclave: Enclave, location: str) -> bool:
    with enclave.open_sealed(location) as (_, chunks):
        return gzip.decompress(b"".join(chunks)).startswith(b"id,")  # the owners encrypted the example .csv.gz


def test_key_sync_reaches_every_replica_of_the_measurement_and_no_other(world):
    replicas, rogue = world["replicas"], world["rogue"]
    r1, r2, r3 = (r.enclave for r in replicas)
    with pytest.raises(EnvelopeError, match="does not unwrap in replica r2"):
        decrypts(r2, world["files"][0])
    manager = ClusterManager()
    for replica in [*replicas, rogue]:
        manager.register(replica)
    assert manager.sync_keys() == 4
    for enclave in (r2, r3):
        assert all(decrypts(enclave, location) for location in world["files"])
        assert len(enclave.keyring) == len(r1.keyring) == 3  # two data keys and the model key
    assert manager.releases_to("rogue") == 0 and len(rogue.enclave.keyring) == 0
    assert {(k.source, k.target) for k in manager.releases} == {("r2", "r1"), ("r3", "r1"), ("r1", "r2"),
                                                                ("r1", "r3")}
    with pytest.raises(EnvelopeError):
        decrypts(rogue.enclave, world["files"][0])
    with pytest.raises(AttestationError, match="refusing to release keys"):
        r1.export_keys(rogue.enclave.quote)
    with pytest.raises(AttestationError, match="refusing keys from an unattested peer"):
        r1.import_keys(rogue.enclave.quote, rogue.enclave.export_keys(rogue.enclave.quote))
    strict = Enclave(SimulatedProvider(), EnclaveConfig(), name="strict")
    strict.start()
    with pytest.raises(AttestationError, match="allow_simulated"):
        strict.export_keys(strict.quote)


def test_prediction_fails_over_when_a_replica_dies_under_load(world):
    replicas = world["replicas"]
    manager = ClusterManager(heartbeat_timeout=2.0)
    for replica in replicas:
        manager.register(replica)
    manager.sync_keys()
    for replica in replicas:
        replica.service = PredictionService(replica.enclave, world["model"])
    beats = {r.name: Heartbeat(manager, r.name, interval=0.05) for r in replicas}
    for beat in beats.values():
        beat.start()
    r1 = replicas[0].enclave
    client = PredictionClient(world["alice"], TrustSettings(frozenset({r1.measurement}), allow_simulated=True),
                              world["result"].model_id)
    rows = world["rows"]
    expected = replicas[0].service.model.predict_scores(rows)

    def one(i: int) -> np.ndarray:
        if i == 40:
            replicas[1].crashed.set()
            beats["r2"].stop()
        return manager.call(lambda replica: client.ask(replica, rows[i % len(rows):][:5]))

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(120)))
    finally:
        for beat in beats.values():
            beat.stop()
    for i, scores in enumerate(results):
        np.testing.assert_array_equal(scores, expected[i % len(rows):][:5])
    assert [r.name for r in manager.healthy()] == ["r1", "r3"]
    served = [r.served for r in replicas]
    assert sum(served) == 120 and min(served) > 0 and served[0] + served[2] > 80
    assert replicas[1].refused >= 1  # requests did reach the dead replica, and were served elsewhere


def test_only_model_recipients_may_query(world):
    replicas = world["replicas"]
    manager = ClusterManager()
    for replica in replicas:
        manager.register(replica)
    manager.sync_keys()
    for replica in replicas:
        replica.service = PredictionService(replica.enclave, world["model"])
    r1 = replicas[0].enclave
    mallory = PredictionClient(world["mallory"], TrustSettings(frozenset({r1.measurement}), allow_simulated=True),
                               world["result"].model_id)
    with pytest.raises(RequestRejected, match="not a recipient of this model"):
        manager.call(lambda replica: mallory.ask(replica, world["rows"][:2]))
    assert len(manager.healthy()) == 3


def test_replicas_that_miss_heartbeats_are_skipped_until_they_return(world):
    now = [0.0]
    manager = ClusterManager(heartbeat_timeout=1.0, clock=lambda: now[0])
    replicas = world["replicas"]
    for replica in replicas:
        manager.register(replica)
    now[0] = 1.5
    manager.heartbeat("r1")
    manager.heartbeat("r3")
    assert [r.name for r in manager.healthy()] == ["r1", "r3"]
    assert {manager.call(lambda replica: replica.name) for _ in range(6)} == {"r1", "r3"}
    manager.heartbeat("r2")
    assert {manager.call(lambda replica: replica.name) for _ in range(6)} == {"r1", "r2", "r3"}
    now[0] = 10.0
    with pytest.raises(ClusterError, match="no healthy replica"):
        manager.call(lambda replica: replica.name)


def test_a_replica_marked_down_is_skipped_even_without_a_heartbeat_timeout():
    from sharedml.net.replicas import HealthTable

    table: HealthTable[str] = HealthTable(float("inf"))
    table.put("r1", "one")
    table.put("r2", "two")
    table.mark_down("r1")
    assert table.healthy() == ["two"]
    table.beat("r1")  # a heartbeat brings it back
    assert table.healthy() == ["one", "two"]
