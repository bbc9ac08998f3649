"""The optional spu PSI engine (SecretFlow's `spu.psi`): results, TLS, receivers, and failures.

Every test but the first needs the `spu` package (`pip install 'sharedml[spu]'`) and is skipped
without it. Each run starts one spu process per party, so these tests take seconds.
"""

from __future__ import annotations

import socket
import time

import pytest

from sharedml.net.certs import init_federation
from sharedml.psi import spu_engine
from sharedml.psi.spu_engine import spu_intersect
from sharedml.runtime.simulate import SimulationError, simulate

ROLES = {"a": "guest", "b": "host"}
# Keys that trip up CSV files and type guessing: separators, quotes, newlines, nulls, numbers.
AWKWARD = ["a,b", 'q"x', "", "NULL", "nan", "é\n", " 7", "1e3", b"\xff\x00raw"]


@pytest.fixture(scope="module")
def spu():
    return pytest.importorskip("spu")


def _key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _expected(sets: dict[str, list]) -> list:
    common = set(sets["a"]).intersection(sets["b"])
    return sorted(common, key=_key_bytes)


def _run(sets: dict[str, list], timeout: float = 60.0, **kwargs):
    def fn(ctx):
        return spu_intersect(ctx, sets[ctx.party], workdir=ctx.workdir, timeout=timeout, **kwargs)

    return simulate(fn, ROLES, timeout=timeout + 30)


def _sets(n: int = 2000) -> dict[str, list]:
    return {
        "a": [f"id-{i}" for i in range(0, n, 2)] + AWKWARD + ["1", "only-a"],
        "b": [f"id-{i}" for i in range(0, n, 3)] + AWKWARD + ["01", "only-b"],
    }


def test_missing_spu_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(spu_engine, "spu_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'sharedml\[spu\]'"):
        spu_intersect(None, ["x"], workdir=".")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["rr22", "kkrt", "ecdh"])
def test_both_parties_get_the_intersection_in_key_order(spu, protocol, tmp_path):
    sets = _sets()
    out = _run(sets, protocol=protocol)
    expected = _expected(sets)
    assert len(expected) == 334 + len(AWKWARD)
    for party, rows in out.items():
        assert rows.dtype.kind == "i"
        assert [sets[party][i] for i in rows] == expected


@pytest.mark.slow
def test_mutual_tls_with_federation_certificates(spu, tmp_path):
    ids = init_federation(["a", "b"], tmp_path / "certs")
    sets = _sets(1000)

    def fn(ctx):
        return spu_intersect(ctx, sets[ctx.party], workdir=ctx.workdir, identity=ids[ctx.party], timeout=30)

    out = simulate(fn, ROLES, timeout=60)
    for party, rows in out.items():
        assert [sets[party][i] for i in rows] == _expected(sets)


@pytest.mark.slow
def test_a_certificate_from_another_federation_is_refused(spu, tmp_path):
    ours = init_federation(["a", "b"], tmp_path / "ours")
    theirs = init_federation(["b"], tmp_path / "theirs")  # same party name, foreign CA
    ids = {"a": ours["a"], "b": theirs["b"]}

    def fn(ctx):
        return spu_intersect(ctx, ["x", "y"], workdir=ctx.workdir, identity=ids[ctx.party], timeout=4)

    with pytest.raises(SimulationError) as err:
        simulate(fn, ROLES, timeout=60)
    assert isinstance(err.value.errors[err.value.party], RuntimeError)
    assert "connect" in str(err.value)


@pytest.mark.slow
def test_only_the_receiver_learns_the_intersection(spu, tmp_path):
    sets = _sets(1000)
    out = _run(sets, protocol="ecdh", receiver="b")
    assert out["a"].size == 0
    assert [sets["b"][i] for i in out["b"]] == _expected(sets)


@pytest.mark.slow
def test_empty_intersection_and_empty_input(spu):
    out = _run({"a": ["x", "y"], "b": []}, protocol="rr22")
    assert out["a"].size == 0 and out["b"].size == 0


def test_more_than_two_parties_is_refused(spu):
    def fn(ctx):
        return spu_intersect(ctx, ["x"], workdir=ctx.workdir, timeout=5)

    with pytest.raises(SimulationError, match="exactly two parties; this task has 3"):
        simulate(fn, ["a", "b", "c"], timeout=10)


def test_parties_must_agree_on_the_protocol(spu):
    def fn(ctx):
        return spu_intersect(ctx, ["x"], workdir=ctx.workdir, protocol="rr22" if ctx.party == "a" else "kkrt",
                             timeout=10)

    with pytest.raises(SimulationError, match="disagree"):
        simulate(fn, ROLES, timeout=20)


def test_duplicate_keys_are_refused(spu):
    with pytest.raises(SimulationError, match="unique"):
        _run({"a": ["x", "x"], "b": ["x"]}, timeout=5)


@pytest.mark.slow
def test_a_peer_that_never_connects_fails_the_call_in_bounded_time(spu):
    """Party b agrees on the link but never starts it: a's call must fail, not hang."""

    def fn(ctx):
        if ctx.party == "a":
            return spu_intersect(ctx, ["x", "y"], workdir=ctx.workdir, timeout=4)
        with socket.socket() as sock:  # a port where nothing will listen
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = {"protocol": "rr22", "receiver": None, "tls": False, "curve": "25519", "bucket_size": None}
        ctx.broadcast(spu_engine._TAG, {"address": f"127.0.0.1:{port}", "nonce": "00", "settings": settings})
        ctx.gather(spu_engine._TAG)
        ctx.send("a", spu_engine._TAG + "/ready", True)
        ctx.recv("a", spu_engine._TAG + "/ready")
        return None

    started = time.monotonic()
    with pytest.raises(SimulationError) as err:
        simulate(fn, ROLES, timeout=60)
    assert err.value.party == "a"
    assert isinstance(err.value.errors["a"], RuntimeError)
    assert time.monotonic() - started < 40


def test_plain_tcp_only_on_loopback(spu):
    def fn(ctx):
        return spu_intersect(ctx, ["x"], workdir=ctx.workdir, host="10.1.2.3", timeout=5)

    with pytest.raises(SimulationError, match="only allowed on loopback"):
        simulate(fn, ROLES, timeout=10)


@pytest.mark.slow
def test_psi_job_with_the_spu_engine_over_mutual_tls(spu, tmp_path, write_catalogs):
    import pandas as pd

    from sharedml.jobs.runner import LocalRunner
    from sharedml.jobs.spec import parse_job

    catalogs = write_catalogs({
        party: pd.DataFrame({"id": [f"c{v}" for v in range(start, start + 600)], party: range(600)})
        for party, start in (("bank", 0), ("shop", 300))})
    job = parse_job("""
job: align
timeout: 60
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}, params: {engine: spu, spu_protocol: rr22}}
""")
    result = LocalRunner(tmp_path / "runs").run(job, catalogs, mode="processes")
    assert result.state == "succeeded", result.error
    bank, shop = result.output("bank", "align", "data"), result.output("shop", "align", "data")
    assert bank["id"].tolist() == shop["id"].tolist() == sorted(f"c{v}" for v in range(300, 600))
    assert result.output("shop", "align", "size") == 300
