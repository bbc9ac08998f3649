"""Online joint prediction: a guest and a host, each its own process over mutual TLS on loopback, answer
exactly what the batch prediction of the same trained model answers; unknown ids get 404 naming the party;
a host that is down gets 503, or the configured guest-only fallback, stated in the answer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from sharedml.jobs.catalog import Catalog
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.net.loopback import free_port
from sharedml.serving import Client
from sharedml.serving.cli import app as serve_app
from sharedml.serving.client import Rejected
from sharedml.serving.loopback import LocalCluster

JOB = """
job: serve
timeout: 120
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}}
  boost: {component: hetero_secureboost, inputs: {train: align.data},
          params: {n_estimators: 3, max_depth: 3, key_bits: 1024, seed: 1}}
  boost_score: {component: hetero_secureboost_predict, inputs: {model: boost.model, data: align.data}}
  lr: {component: hetero_lr, inputs: {train: align.data},
       params: {epochs: 2, batch_size: 64, key_bits: 1024, seed: 1}}
  lr_score: {component: hetero_lr_predict, inputs: {model: lr.model, data: align.data}}
"""
ROWS = {"bank": ("guest", slice(0, 500)), "shop": ("host", slice(60, None))}  # shared: rows 60..499


def train(root: Path, data_dir: Path) -> dict:
    """Train SecureBoost and hetero LR on breast_hetero (threads), with batch predictions of both."""
    catalogs, sources = {}, {}
    for party, (name, rows) in ROWS.items():
        folder = root / party
        folder.mkdir(parents=True)
        pd.read_csv(data_dir / f"breast_hetero_{name}.csv.gz").iloc[rows].to_csv(folder / "clients.csv", index=False)
        catalogs[party] = Catalog.from_mapping({"datasets": {"clients": {"path": "clients.csv"}}}, party, folder)
        sources[party] = folder / "clients.csv"
    result = LocalRunner(root / "runs").run(parse_job(JOB), catalogs)
    assert result.state == "succeeded", result.error
    guest_rows = pd.read_csv(sources["bank"])
    return {"workdir": str(root / "runs"), "job": result.job_id, "sources": sources,
            "batch": {m: result.output("bank", f"{m}_score", "predictions") for m in ("boost", "lr")},
            "guest_only_ids": [int(i) for i in guest_rows["id"].iloc[:60]], "guest_rows": guest_rows}


def part(trained: dict, task: str) -> dict:
    return {"artifacts": trained["workdir"], "job": trained["job"], "task": task}


def exported(trained: dict, party: str, task: str) -> dict:
    """A model part as `sharedml node export` leaves it: the task's folder, copied as is."""
    return {"path": str(Path(trained["workdir"]) / trained["job"] / party / task)}


def host_config(trained: dict, models: dict[str, str], registry: str | None = None) -> dict:
    config = {"role": "host", "party": "shop", "guest": "bank", "features": {"path": str(trained["sources"]["shop"])},
              "models": [{"name": name, "version": 1, "part": exported(trained, "shop", task)}
                         for name, task in models.items()]}
    return {**config, "registry": registry} if registry else config


def guest_config(trained: dict, hosts: list[str], models: dict[str, str], **extra: object) -> dict:
    return {"role": "guest", "party": "bank", "hosts": {"shop": hosts}, "timeout": 1.0,
            "features": {"path": str(trained["sources"]["bank"])},
            "models": [{"name": name, "version": 1, "part": part(trained, task),
                        **({"fallback": part(trained, task)} if task == "lr" else {})}
                       for name, task in models.items()], **extra}


MODELS = {"boost": "boost", "lr": "lr"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    return train(tmp_path_factory.mktemp("serving"), data_dir)


@pytest.fixture(scope="module")
def cluster(trained, tmp_path_factory):
    with LocalCluster(tmp_path_factory.mktemp("replicas"), ["bank", "shop"]) as cluster:
        host = cluster.start("shop-1", host_config(trained, MODELS))
        cluster.start("bank-1", guest_config(trained, [host.url], MODELS))
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.tls(), "bank", [cluster.processes["bank-1"].url], timeout=10.0) as client:
        yield client


@pytest.mark.parametrize("model", ["boost", "lr"])
def test_online_predictions_equal_the_batch_predictions(trained, client, model):
    batch = trained["batch"][model]
    ids = [int(i) for i in batch["id"]]
    online = [p for start in range(0, len(ids), 100)
              for p in client.predict(ids=ids[start:start + 100], model=model)["predictions"]]
    online += client.predict(id=ids[7], model=model)["predictions"]
    expected = batch.set_index("id")
    assert [p["id"] for p in online] == ids + [ids[7]]
    assert [p["label"] for p in online] == [expected.loc[i, "predicted"].item() for i in ids + [ids[7]]]
    scores, batch_scores = [p["score"] for p in online], [float(expected.loc[i, "score"]) for i in ids + [ids[7]]]
    assert scores == batch_scores  # bit for bit


def test_linear_scores_of_a_row_do_not_depend_on_the_other_rows():
    """What makes online hetero LR bit-exact: BLAS's `X @ w` is not (its order follows the row count)."""
    from sharedml.ml.linear.hetero import row_scores

    rng = np.random.default_rng(3)
    for features, outputs in ((13, 1), (23, 3), (7, 2)):
        X, coef = rng.normal(size=(600, features)), rng.normal(size=(features, outputs))
        whole = row_scores(np.asfortranarray(X), coef)
        for size in (1, 2, 5, 17, 100):
            for start in range(0, 500, 41):
                assert np.array_equal(row_scores(X[start:start + size], coef), whole[start:start + size])


def test_guest_features_in_the_request_give_the_same_answer(trained, client):
    rows = trained["guest_rows"].set_index("id")
    ids = [int(i) for i in trained["batch"]["boost"]["id"][:5]]
    features = [{c: float(rows.loc[i, c]) for c in rows.columns if c != "y"} for i in ids]
    given = client.predict(ids=ids, features=features, model="boost")
    looked_up = client.predict(ids=ids, model="boost")
    assert given["predictions"] == looked_up["predictions"] and given["fallback"] is None
    with pytest.raises(Rejected, match=r"lack column\(s\) \['x0'\]") as error:
        client.predict(id=ids[0], features={c: v for c, v in features[0].items() if c != "x0"}, model="boost")
    assert error.value.status == 400


def test_unknown_ids_get_404_naming_the_party(trained, client):
    with pytest.raises(Rejected, match=r"unknown sample id\(s\) at party 'bank': 987654") as error:
        client.predict(ids=[int(trained["batch"]["boost"]["id"][0]), 987654], model="boost")
    assert error.value.status == 404
    guest_only = trained["guest_only_ids"][0]
    with pytest.raises(Rejected, match=rf"unknown sample id\(s\) at party 'shop': {guest_only}"):
        client.predict(id=guest_only, model="lr")
    with pytest.raises(Rejected, match="model boost:9 is not loaded at party 'bank'"):
        client.predict(id=guest_only, model="boost", version=9)


def test_a_host_that_is_down_gets_503_or_the_stated_fallback(trained, cluster):
    dead = f"https://127.0.0.1:{free_port()}"
    guest = cluster.start("bank-lonely", guest_config(trained, [dead], MODELS))
    ids = [int(i) for i in trained["batch"]["lr"]["id"][:3]]
    with Client(cluster.tls(), "bank", [guest.url], timeout=10.0) as client:
        started = time.monotonic()
        with pytest.raises(Rejected, match="host 'shop' did not answer within 1.0 s") as error:
            client.predict(ids=ids, model="boost")
        assert error.value.status == 503 and time.monotonic() - started < 5
        answer = client.predict(ids=ids, model="lr")
    assert answer["fallback"].startswith("guest-only fallback model: host 'shop' did not answer")
    online = np.array([p["score"] for p in answer["predictions"]])
    assert np.all((online > 0) & (online < 1))
    assert not np.array_equal(online, trained["batch"]["lr"]["score"][:3].to_numpy())


def test_sharedml_serve_reports_a_bad_config_naming_the_field(tmp_path):
    root = typer.Typer()
    root.add_typer(serve_app, name="serve")

    @root.command()
    def other() -> None:  # a second command, as in the real CLI, so `serve` is a sub-command
        pass

    config = tmp_path / "serve.yaml"
    config.write_text("role: host\nparty: shop\ncerts: certs\nlisten: 127.0.0.1:1\nmodels: []\n")
    result = CliRunner().invoke(root, ["serve", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "a host needs `guest`" in result.output


def test_snapshot_and_sql_feature_sources_agree(tmp_path, data_dir):
    import sqlalchemy

    from sharedml.serving.features import SnapshotSource, SqlSource

    table = pd.read_csv(data_dir / "breast_hetero_host.csv.gz")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'host.db'}")
    table.to_sql("clients", engine, index=False)
    engine.dispose()
    ids = [int(table["id"][5]), 987654, str(table["id"][0]), int(table["id"][9])]
    snapshot = SnapshotSource(table, "id", "breast_hetero_host.csv.gz")
    sql = SqlSource(f"sqlite:///{tmp_path / 'host.db'}", "clients", "id")
    for source in (snapshot, sql):
        X, unknown = source.rows(ids, ["x3", "x0"])
        assert unknown == [1]
        np.testing.assert_array_equal(X[[0, 2, 3]], table.set_index("id").loc[[ids[0], int(ids[2]), ids[3]],
                                                                               ["x3", "x0"]].to_numpy())
        assert np.isnan(X[1]).all()
    sql.close()


def test_traffic_split_is_stable_per_id_and_rolls_back():
    from sharedml.serving.errors import BadRequest, UnknownModel
    from sharedml.serving.versions import ModelBook

    book: ModelBook[str] = ModelBook("bank")
    book.add("credit", 1, "v1")
    book.add("credit", 2, "v2")
    assert {book.choose(None, None, i)[1] for i in range(200)} == {1}  # the first version keeps all traffic
    book.set_traffic("credit", {1: 80, 2: 20})
    picks = [book.choose("credit", None, i)[1] for i in range(2000)]
    assert 0.16 < picks.count(2) / 2000 < 0.24
    assert picks == [book.choose("credit", None, i)[1] for i in range(2000)]  # stable per id
    assert book.choose("credit", 2, 0) == ("credit", 2)  # a pinned version wins
    with pytest.raises(BadRequest, match="still gets traffic"):
        book.remove("credit", 2)
    book.set_traffic("credit", {1: 100})  # rollback
    book.remove("credit", 2)
    with pytest.raises(UnknownModel, match="not loaded at party 'bank'"):
        book.set_traffic("credit", {2: 100})
    with pytest.raises(BadRequest, match="summing to 100"):
        book.set_traffic("credit", {1: 50})


def test_the_fast_paths_equal_the_batch_functions(trained):
    from sharedml.serving.parts import GuestPart, HostPart, load_model
    from sharedml.serving.wire import decode_answer, encode_answer

    guest_model = load_model(part(trained, "boost"), "bank")
    host_model = load_model(part(trained, "boost"), "shop")
    ids = list(trained["batch"]["boost"]["id"].sample(40, random_state=1))
    guest_rows = trained["guest_rows"].set_index("id").loc[ids, guest_model["features"]].to_numpy(dtype=float)
    host_rows = pd.read_csv(trained["sources"]["shop"]).set_index("id").loc[ids, host_model["features"]].to_numpy(
        dtype=float)
    guest_rows[::7, ::2], host_rows[::5, 1::2] = np.nan, np.nan  # missing values take the default direction
    for n in (1, 3, 8, 40):
        fast, slow = (HostPart(host_model, "shop", "test", fast=f).answer(host_rows[:n]) for f in (True, False))
        assert fast["keys"] == slow["keys"] and fast["rows"] == slow["rows"] == n
        np.testing.assert_array_equal(fast["bits"], slow["bits"])
        received = decode_answer(encode_answer({"unknown": [], **fast}), "shop", n)  # as the guest gets it
        scores = [GuestPart(guest_model, "bank", ["shop"], "test", fast=f).combine(guest_rows[:n], {"shop": received})
                  for f in (True, False)]
        np.testing.assert_array_equal(scores[0][0], scores[1][0])
        np.testing.assert_array_equal(scores[0][1], scores[1][1])


def test_small_batch_binning_gives_the_binners_codes():
    from sharedml.ml.preprocess.binning import QuantileBinner
    from sharedml.serving.fastpath import SmallBatchBinner

    rng = np.random.default_rng(5)
    train = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500), np.full(500, 7.0),
                             np.full(500, np.nan), rng.exponential(size=500)])
    binner = QuantileBinner(16).fit(train)
    rows = np.vstack([train[:50], rng.normal(scale=10, size=(20, 5)), [[np.inf, -np.inf, np.nan, 1.0, 0.0]]])
    rows[::3, ::2] = np.nan
    for n in (1, 2, len(rows)):
        np.testing.assert_array_equal(SmallBatchBinner(binner).transform(rows[:n]), binner.transform(rows[:n]))


def test_a_party_the_registry_stops_listing_keeps_its_last_replicas():
    """Heartbeats late on a starved machine must not empty the guest's host list while hosts still answer."""
    from sharedml.serving.registration import ServingMember
    from sharedml.serving.replicas import ReplicaSet

    class Registry:
        url = "https://registry"
        listing: list[ServingMember] = []

        def replicas(self, role: str) -> list[dict]:
            return [m.model_dump() for m in self.listing if m.role == role]

    def member(name: str) -> ServingMember:
        return ServingMember(party="shop", role="host", name=name, url=f"https://{name}:1", versions=["boost:1"])

    registry = Registry()
    registry.listing = [member("shop-1"), member("shop-2")]
    replicas = ReplicaSet({}, registry, "host")  # type: ignore[arg-type]
    assert [r.name for r in replicas.candidates("shop", "boost:1")] == ["shop-1", "shop-2"]
    registry.listing = [member("shop-2")]  # one left: the registry is believed
    replicas.reload()
    assert [r.name for r in replicas.candidates("shop", "boost:1")] == ["shop-2"]
    registry.listing = []  # none listed: the last ones stay, for calls to decide
    replicas.reload()
    assert [r.name for r in replicas.candidates("shop", "boost:1")] == ["shop-2"]
    replicas.failed(replicas.candidates("shop")[0])
    assert replicas.candidates("shop") == []


def test_replicas_reading_sql_sources_give_the_batch_predictions(trained, cluster, tmp_path):
    """SQL lookups block, so both replicas run them in a thread beside their event loop."""
    import sqlalchemy

    urls = {}
    for party in ("bank", "shop"):
        urls[party] = f"sqlite:///{tmp_path / f'{party}.db'}"
        engine = sqlalchemy.create_engine(urls[party])
        pd.read_csv(trained["sources"][party]).to_sql("clients", engine, index=False)
        engine.dispose()
    sql = lambda party: {"features": {"url": urls[party], "table": "clients", "id_column": "id"}}  # noqa: E731
    host = cluster.start("shop-sql", {**host_config(trained, MODELS), **sql("shop")})
    guest = cluster.start("bank-sql", {**guest_config(trained, [host.url], MODELS), **sql("bank")})
    batch = trained["batch"]["boost"]
    ids = [int(i) for i in batch["id"][:50]]
    with Client(cluster.tls(), "bank", [guest.url], timeout=10.0) as client:
        online = client.predict(ids=ids, model="boost")["predictions"]
        with pytest.raises(Rejected, match=r"unknown sample id\(s\) at party 'shop'"):
            client.predict(id=trained["guest_only_ids"][0], model="boost")
    assert [p["score"] for p in online] == [float(s) for s in batch["score"][:50]]


@pytest.mark.parametrize("behaviour", ["garbage", "close", "silent", "oversize", "wrong_party"])
def test_the_guests_host_calls_fail_fast_on_a_bad_host(tmp_path, behaviour):
    """A host that answers garbage, hangs up, says nothing or floods must not hang the guest: each call
    raises (for the fan-out to fail over) within its timeout."""
    import asyncio
    import ssl

    from sharedml.net import https_pool
    from sharedml.net.certs import init_federation
    from sharedml.net.https import TlsFiles

    init_federation(["bank", "shop"], tmp_path)
    host = TlsFiles.in_dir(tmp_path, "shop")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif behaviour == "oversize":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (https_pool.MAX_ANSWER_BYTES + 1))
            writer.write(b"x" * (1 << 20) * 2)
        elif behaviour == "close":
            writer.close()
            return
        await asyncio.sleep(5)  # silent, or after the above: never finishes

    async def main() -> Exception:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(host.ca))
        server_tls.load_cert_chain(str(host.cert), str(host.key))
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        if behaviour == "oversize":
            https_pool.MAX_ANSWER_BYTES = 1 << 20  # a smaller bound, so the test sends little
        pool = https_pool.ConnectionPool(TlsFiles.in_dir(tmp_path, "bank").client_context())
        party = "bank" if behaviour == "wrong_party" else "shop"  # the certificate must carry the party's name
        try:
            await pool.post(f"https://127.0.0.1:{port}", party, "/v1/partial", b"{}", "application/x-test", 1.0)
        except Exception as exc:  # noqa: BLE001 - the kind is what the test looks at
            return exc
        finally:
            server.close()
        raise AssertionError("the call succeeded")

    original = https_pool.MAX_ANSWER_BYTES
    started = time.monotonic()
    try:
        error = asyncio.run(main())
    finally:
        https_pool.MAX_ANSWER_BYTES = original
    assert time.monotonic() - started < 3
    expected = {"garbage": ConnectionError, "close": ConnectionError, "silent": TimeoutError,
                "oversize": ConnectionError, "wrong_party": ssl.SSLCertVerificationError}[behaviour]
    assert isinstance(error, expected), repr(error)
