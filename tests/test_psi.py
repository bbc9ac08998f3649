"""ECDH-PSI: against Python set intersection, row alignment across parties, 3 and 4 parties,
receivers, cardinality, bad input, a hostile peer, what crosses the wire, and resuming a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.jobs.store import JobStore, sqlite_url
from sharedml.psi import ecdh, intersect
from sharedml.psi.checkpoint import BucketCheckpoint
from sharedml.psi.components import PsiParams, psi
from sharedml.psi.curve import BlindingError
from sharedml.psi.ecdh import PsiProtocolError, ecdh_psi
from sharedml.psi.ids import hash_to_points
from sharedml.runtime.simulate import SimulationError, simulate


def run_psi(sets: dict[str, list], **kwargs) -> dict[str, tuple[list | None, int | None]]:
    """Each party's intersection (as its own IDs, in its output order) and size."""
    def fn(ctx):
        ids = sets[ctx.party]
        result = ecdh_psi(ctx, hash_to_points(ids), **kwargs)
        return (None if result.rows is None else [ids[i] for i in result.rows]), result.size
    return simulate(fn, list(sets), timeout=60)


def run_component(frames: dict[str, pd.DataFrame], recorder=None, **params) -> dict[str, dict]:
    p = PsiParams(**params)
    return simulate(lambda ctx: psi(ctx, p, frames[ctx.party]), list(frames), timeout=60, recorder=recorder)


ids = st.lists(st.integers(0, 60).map(str), unique=True, max_size=40)


@settings(max_examples=25, deadline=None)
@given(a=ids, b=ids)
def test_two_party_intersection_equals_python_sets_in_one_shared_order(a, b):
    out = run_psi({"a": a, "b": b}, bucket_size=16)
    truth = set(a) & set(b)
    assert set(out["a"][0]) == truth and out["a"][1] == len(truth)
    assert out["a"][0] == out["b"][0]  # the same order at both parties: rows line up


def test_intersect_takes_text_integers_and_bytes_alike():
    sets = {"a": [1, 2, b"x", "y"], "b": ["1", b"y", "x", 3]}
    out = simulate(lambda ctx: intersect(ctx, sets[ctx.party]), list(sets), timeout=20)
    assert sorted(map(str, (sets["a"][i] for i in out["a"].rows))) == ["1", "b'x'", "y"]
    assert [sets["a"][i] for i in out["a"].rows] == [{"1": 1, b"y": "y", "x": b"x"}[sets["b"][i]]
                                                     for i in out["b"].rows]
    with pytest.raises(SimulationError, match=r"ids\[2\] repeats ids\[0\]"):
        simulate(lambda ctx: intersect(ctx, [5, 6, "5"]), ["a", "b"], timeout=20)


def test_empty_and_disjoint_sets():
    assert run_psi({"a": [], "b": ["1", "2"]})["b"] == ([], 0)
    assert run_psi({"a": ["1", "2"], "b": ["3", "4"]})["a"] == ([], 0)


@pytest.mark.parametrize("n_parties", [3, 4])
def test_many_parties_learn_the_common_ids_aligned(n_parties):
    rng = np.random.default_rng(n_parties)
    sets = {f"p{i}": [f"user-{v}" for v in rng.choice(400, 250, replace=False)] for i in range(n_parties)}
    out = run_psi(sets, bucket_size=64)
    truth = set.intersection(*map(set, sets.values()))
    assert truth and all(set(rows) == truth and size == len(truth) for rows, size in out.values())
    assert len({tuple(rows) for rows, _ in out.values()}) == 1


@pytest.mark.parametrize("n_parties", [2, 3])
def test_only_the_receiver_learns(n_parties):
    sets = {f"p{i}": [str(v) for v in range(i * 10, 100 + i * 10)] for i in range(n_parties)}
    out = run_psi(sets, reveal_to=["p1"])
    truth = set.intersection(*map(set, sets.values()))
    assert set(out["p1"][0]) == truth and out["p1"][1] == len(truth)
    assert all(out[p] == (None, None) for p in sets if p != "p1")


@pytest.mark.parametrize("n_parties", [2, 3])
def test_cardinality_only_reveals_the_size_alone(n_parties):
    sets = {f"p{i}": [str(v) for v in range(i * 10, 100 + i * 10)] for i in range(n_parties)}
    out = run_psi(sets, cardinality_only=True)
    assert all(result == (None, 100 - 10 * (n_parties - 1)) for result in out.values())


def test_component_outputs_aligned_tables_and_reads_ints_and_text_alike():
    bank = pd.DataFrame({"id": [5, 3, 9, 1, 7], "income": [50.0, 30.0, 90.0, 10.0, 70.0]})
    shop = pd.DataFrame({"id": ["7", "2", "3", "5", "8"], "spend": [7.0, 2.0, 3.0, 5.0, 8.0]})
    out = run_component({"bank": bank, "shop": shop})
    left, right = out["bank"]["data"], out["shop"]["data"]
    assert out["bank"]["size"] == out["shop"]["size"] == 3
    assert [str(v) for v in left["id"]] == list(right["id"])
    assert sorted(left["id"]) == [3, 5, 7]
    assert np.allclose(left["income"], right["spend"] * 10)  # each row pairs the same client


def test_component_composite_key_normalisation_and_duplicates_policy():
    a = pd.DataFrame({"first": [" Ann", "bob", "Cy", "Cy"], "last": ["Lee", "Ray", "Do", "Do"], "v": [1, 2, 3, 4]})
    b = pd.DataFrame({"first": ["ann ", "BOB", "dee"], "last": ["lee", "ray", "do"], "w": [1, 2, 3]})
    out = run_component({"a": a, "b": b}, id_columns=["first", "last"], trim=True, lower=True, duplicates="first")
    assert sorted(out["a"]["data"]["v"]) == [1, 2] and out["a"]["data"]["v"].tolist() == out["b"]["data"]["w"].tolist()
    with pytest.raises(SimulationError, match=r"row 3 repeats row 2") as caught:
        run_component({"a": a, "b": b}, id_columns=["first", "last"])
    assert "Cy" not in str(caught.value)  # error messages travel to peers: they name rows, not IDs


def test_bad_input_is_named():
    good = pd.DataFrame({"id": ["1", "2"]})
    with pytest.raises(SimulationError, match=r"party 'b'.*ID column\(s\) \['id'\] not in its data"):
        run_component({"a": good, "b": pd.DataFrame({"key": ["1"]})})
    nulls = pd.DataFrame({"id": ["1", None, "2"]})
    with pytest.raises(SimulationError, match=r"1 row\(s\) have a null ID.*first at row 1.*null_ids: skip"):
        run_component({"a": good, "b": nulls})
    assert sorted(run_component({"a": good, "b": nulls}, null_ids="skip")["b"]["data"]["id"].tolist()) == ["1", "2"]
    with pytest.raises(SimulationError, match="non-integer numbers"):
        run_component({"a": good, "b": pd.DataFrame({"id": [1.5, 2.0]})})
    # a CSV column of integers with a gap is read as float: it still matches its integer form
    out = run_component({"a": good, "b": pd.DataFrame({"id": [1.0, np.nan, 2.0]})}, null_ids="skip")
    assert out["b"]["size"] == 2


def test_nothing_identifying_crosses_the_wire():
    ids_a = [f"customer-{i:05d}" for i in range(300)]
    ids_b = [f"customer-{i:05d}" for i in range(150, 450)]
    records = []
    run_component({"a": pd.DataFrame({"id": ids_a}), "b": pd.DataFrame({"id": ids_b})}, recorder=records.append)
    wire = b"".join(r.payload for r in records)
    assert len(wire) > 300 * 32  # the blinded sets did cross
    assert b"customer-" not in wire
    hashes = hash_to_points(ids_a + ids_b)
    assert not any(bytes(h[:16]) in wire for h in hashes)  # nor the unblinded hashes, which anyone could test


def test_peer_settings_must_agree():
    def fn(ctx):
        return ecdh_psi(ctx, hash_to_points(["1"]), cardinality_only=ctx.party == "a")
    with pytest.raises(SimulationError, match="runs PSI with settings"):
        simulate(fn, ["a", "b"], timeout=10)


def test_hostile_peer_cannot_make_us_hang_or_accept_garbage():
    def honest_vs(garbage):
        def fn(ctx):
            if ctx.party == "a":
                return ecdh_psi(ctx, hash_to_points(["1", "2"]))
            ctx.broadcast("psi/setup", {"setup": [["a", "b"], ["a", "b"], False, ecdh.DEFAULT_BUCKET_SIZE],
                                        "size": 2})
            ctx.gather("psi/setup")
            ctx.broadcast("psi/resume", [])
            ctx.send("a", "psi/0/ring1", garbage)
            ctx.recv("a", "psi/0/ring1")
            return ctx.recv("a", "psi/0/full", timeout=5)
        return fn
    with pytest.raises(SimulationError) as caught:
        simulate(honest_vs(np.zeros((2, 16), dtype=np.uint8)), ["a", "b"], timeout=10)
    assert isinstance(caught.value.__cause__, PsiProtocolError)
    with pytest.raises(SimulationError) as caught:
        simulate(honest_vs(np.zeros((2, 32), dtype=np.uint8)), ["a", "b"], timeout=10)  # a low-order point
    assert isinstance(caught.value.__cause__, BlindingError)


def test_a_crashed_bucketed_run_resumes_from_its_finished_buckets(tmp_path, monkeypatch):
    sets = {"a": [str(v) for v in range(0, 600)], "b": [str(v) for v in range(300, 900)]}
    done_before = []
    real_bucket = ecdh._bucket

    def crashing_bucket(ctx, plan, tag, points, blinder):
        if tag == "psi/3" and ctx.party == "b":
            raise RuntimeError("power cut")
        done_before.append(tag)
        return real_bucket(ctx, plan, tag, points, blinder)

    def fn(ctx):
        ids = sets[ctx.party]
        result = ecdh_psi(ctx, hash_to_points(ids), bucket_size=100,
                          checkpoint=BucketCheckpoint(tmp_path / ctx.party))
        return [ids[i] for i in result.rows]

    monkeypatch.setattr(ecdh, "_bucket", crashing_bucket)
    with pytest.raises(SimulationError, match="power cut"):
        simulate(fn, list(sets), timeout=20)
    redone = []
    monkeypatch.setattr(ecdh, "_bucket", lambda ctx, *a: redone.append(a[1]) or real_bucket(ctx, *a))
    out = simulate(fn, list(sets), timeout=20)
    assert set(out["a"]) == set(sets["a"]) & set(sets["b"]) and out["a"] == out["b"]
    assert {t for t in redone} == {f"psi/{b}" for b in range(3, 6)}  # buckets 0-2 came from disk
    assert not (tmp_path / "a").exists()  # a finished run leaves no checkpoint behind


def result_progress(tmp_path):
    store = JobStore(sqlite_url(tmp_path / "runs" / "sharedml.db"))
    return store.progress(store.jobs()[0].id)


PSI_JOB = """
job: align
timeout: 30
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}, params: {id_columns: id}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_psi_job_aligns_the_bundled_vertical_data(tmp_path, data_dir, mode, write_catalogs):
    frames = {"bank": pd.read_csv(data_dir / "breast_hetero_guest.csv.gz").iloc[:400],
              "shop": pd.read_csv(data_dir / "breast_hetero_host.csv.gz").iloc[200:]}
    catalogs = write_catalogs(frames)
    seen = []
    result = LocalRunner(tmp_path / "runs").run(parse_job(PSI_JOB), catalogs, mode=mode, on_progress=seen.append)
    assert result.state == "succeeded", result.error
    final = {(r.task, r.party): (r.done, r.total) for r in result_progress(tmp_path)}
    assert final == {("align", "bank"): (1, 1), ("align", "shop"): (1, 1)}  # one bucket, finished
    assert all(r.task == "align" for batch in seen for r in batch)  # what a progress bar is fed
    bank, shop = result.output("bank", "align", "data"), result.output("shop", "align", "data")
    truth = set(frames["bank"]["id"]) & set(frames["shop"]["id"])
    assert len(bank) == len(shop) == len(truth) == result.output("bank", "align", "size")
    assert bank["id"].tolist() == shop["id"].tolist() and set(bank["id"]) == truth
    assert list(bank.columns) == list(frames["bank"].columns)


def test_rerunning_a_failed_psi_job_resumes_it(tmp_path, monkeypatch, write_catalogs):
    catalogs = write_catalogs({party: pd.DataFrame({"id": [f"c{v}" for v in range(start, start + 3000)]})
                                         for party, start in (("bank", 0), ("shop", 1500))})
    job = parse_job(PSI_JOB.replace("id_columns: id", "bucket_size: 1000"))
    real_bucket, ran, crash = ecdh._bucket, [], [True]

    def bucket(ctx, plan, tag, points, blinder):
        if tag == "psi/2" and crash[0]:
            raise RuntimeError("power cut")
        ran.append(tag)
        return real_bucket(ctx, plan, tag, points, blinder)

    monkeypatch.setattr(ecdh, "_bucket", bucket)
    runner = LocalRunner(tmp_path / "runs")
    failed = runner.run(job, catalogs)
    assert failed.state == "failed"
    assert sorted(ran) == ["psi/0", "psi/0", "psi/1", "psi/1"]
    crash[0] = False
    fresh = runner.run(job, catalogs)  # a new run of the same job shares nothing with the failed one
    assert fresh.state == "succeeded" and sorted(ran[4:]) == ["psi/0", "psi/0", "psi/1", "psi/1", "psi/2", "psi/2"]
    del ran[4:]
    result = runner.run(job, catalogs, rerun=failed.job_id)
    assert result.state == "succeeded", result.error
    assert sorted(ran[4:]) == ["psi/2", "psi/2"]  # buckets 0 and 1 were not run again
    assert len(result.output("bank", "align", "data")) == 1500
    assert not (tmp_path / "runs" / "_resume" / failed.job_id / "bank" / "align").exists()
