"""The serving cluster: replicas register with a registry and heartbeat; the client SDK and the guest's
fan-out balance over healthy replicas. Under load, a version switch (gray release, full switch, rollback)
and killing a host replica and a guest replica fail no request, and each answer uses one version at every
party (its scores equal that version's batch predictions)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from test_serving import guest_config, host_config, part, train

from sharedml.serving import Client
from sharedml.serving.loopback import LocalCluster

MODELS = {"credit": "boost"}  # version 1: SecureBoost; version 2 (loaded live): hetero LR
HOSTS, GUESTS = ("shop-1", "shop-2"), ("bank-1", "bank-2")
FAST = {"heartbeat_interval": 0.2, "refresh": 0.2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    return train(tmp_path_factory.mktemp("serving-cluster"), data_dir)


@pytest.fixture(scope="module")
def cluster(trained, tmp_path_factory):
    with LocalCluster(tmp_path_factory.mktemp("replicas"), ["bank", "shop"]) as cluster:
        registry = cluster.start("registry", {"role": "registry", "party": "registry", "heartbeat_timeout": 1.0})
        for name in HOSTS:
            cluster.start(name, {**host_config(trained, MODELS, registry.url), **FAST})
        for name in GUESTS:
            cluster.start(name, guest_config(trained, [], MODELS, registry=registry.url, **FAST))
        for name in GUESTS:
            cluster.wait(lambda name=name: len(cluster.health(name)["hosts"]["shop"]) == 2, 10, f"{name} to see hosts")
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.tls(), "bank", registry=cluster.processes["registry"].url, refresh=0.2) as client:
        cluster.wait(lambda: len(client.replicas.candidates("bank")) == 2, 10, "the client to see both guests")
        yield client


class Load:
    """`threads` clients asking for one random id each, until stopped; answers and errors are kept."""

    def __init__(self, client: Client, ids: list[int], threads: int = 3) -> None:
        self.client, self.ids = client, ids
        self.answers: list[tuple[int, dict]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            sample = rng.choice(self.ids)
            try:
                self.answers.append((sample, self.client.predict(id=sample, model="credit")))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def expected_scores(trained: dict) -> dict[int, dict[int, float]]:
    return {version: dict(zip(trained["batch"][m]["id"].astype(int), trained["batch"][m]["score"], strict=True))
            for version, m in ((1, "boost"), (2, "lr"))}


def check(load: Load, trained: dict) -> set[int]:
    """No errors, and every answer equals the batch prediction of the version it names; the versions seen."""
    assert load.errors == [], load.errors[:5]
    assert len(load.answers) > 50
    expected = expected_scores(trained)
    for sample, answer in load.answers:  # bit for bit, SecureBoost (version 1) and hetero LR (version 2)
        assert answer["predictions"][0]["score"] == expected[answer["version"]][sample], answer
    return {answer["version"] for _, answer in load.answers}


def test_a_version_switch_under_load_fails_no_request(trained, cluster, client):
    ids = [int(i) for i in trained["batch"]["boost"]["id"]]
    lr = {"name": "credit", "version": 2, "part": part(trained, "lr")}
    for name in HOSTS + GUESTS:  # hosts first: a guest gives a version traffic only once every host holds it
        assert cluster.admin(name, "POST", "/v1/models", json=lr).status_code == 200
    with Load(client, ids) as load:
        time.sleep(0.5)
        for split in ({1: 50, 2: 50}, {2: 100}, {1: 100}):  # gray release, full switch, rollback
            for guest in GUESTS:
                cluster.wait(lambda guest=guest, split=split: cluster.admin(
                    guest, "PUT", "/v1/models/credit/traffic", json=split).status_code == 200, 5, f"traffic {split}")
            time.sleep(0.7)
    assert check(load, trained) == {1, 2}
    assert {answer["version"] for _, answer in load.answers[-5:]} == {1}
    refused = cluster.admin(GUESTS[0], "DELETE", "/v1/models/credit/1")  # it has all the traffic
    assert refused.status_code in (400, 409) and "traffic" in refused.text, refused.text
    for name in GUESTS + HOSTS:  # version 2 has none left: unloaded everywhere
        assert cluster.admin(name, "DELETE", "/v1/models/credit/2").json()["versions"] == ["credit:1"]


def test_killing_a_host_replica_and_a_guest_replica_under_load_fails_no_request(trained, cluster, client):
    ids = [int(i) for i in trained["batch"]["boost"]["id"]]
    with Load(client, ids) as load:
        time.sleep(0.7)
        cluster.kill("shop-1")
        time.sleep(0.7)
        cluster.kill("bank-1")
        time.sleep(1.0)
    check(load, trained)
    cluster.wait(lambda: cluster.health("bank-2")["hosts"]["shop"] == ["shop-2"], 5, "shop-1 to leave the registry")
    assert [r.name for r in client.replicas.candidates("bank")] == ["bank-2"]
