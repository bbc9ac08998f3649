"""Everything the project writes is its owner's alone, whatever the umask: files 0600 in folders 0700
(outputs, PSI checkpoints, databases, logs, certificates, decrypted models), and no CA key is left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from sharedml.deploy.node_store import NodeStore
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.psi import ecdh
from sharedml.tee import cli as tee_cli

PSI_JOB = """
job: align
timeout: 30
parties:
  bank: {role: guest, data: {clients: clients}}
  shop: {role: host, data: {clients: clients}}
tasks:
  align: {component: psi, inputs: {data: $clients}, params: {id_columns: id, bucket_size: 1000}}
"""


@pytest.fixture(autouse=True)
def permissive_umask():
    """The usual umask, which would make new files world-readable (0644) if the code relied on it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def clients(write_catalogs):
    return write_catalogs({party: pd.DataFrame({"id": [f"c{i}" for i in range(start, start + 1500)]})
                           for party, start in (("bank", 0), ("shop", 500))})


def exposed(root: Path) -> list[str]:
    """What under `root` (itself included) others could read or enter: files not 0600-ish, folders not 0700."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if (mode != 0o700) if path.is_dir() else (mode & 0o077):
            found.append(f"{oct(mode)} {path.relative_to(root)}")
    return found


@pytest.mark.parametrize("mode", ["threads", pytest.param("processes", marks=pytest.mark.slow)])
def test_a_run_writes_nothing_others_can_read_and_leaves_no_ca_key(tmp_path, clients, mode):
    root = tmp_path / "runs"
    result = LocalRunner(root).run(parse_job(PSI_JOB), clients, mode=mode)
    assert result.state == "succeeded", result.error
    written = {path.name for path in root.rglob("*")}
    assert {"sharedml.db", "data.parquet", "size.msgpack", "metrics.json", "_SUCCESS", "_resume"} <= written
    if mode == "processes":
        assert {"bank.log", "bank.config.json", "bank.result.json", "bank.key", "ca.crt"} <= written
    assert exposed(root) == []
    assert "ca.key" not in written


def test_psi_checkpoints_are_private_and_belong_to_one_run(tmp_path, clients, monkeypatch):
    real_bucket = ecdh._bucket

    def crash_in_the_second_bucket(ctx, plan, tag, points, blinder):
        if tag == "psi/1":
            raise RuntimeError("power cut")
        return real_bucket(ctx, plan, tag, points, blinder)

    monkeypatch.setattr(ecdh, "_bucket", crash_in_the_second_bucket)
    root = tmp_path / "runs"
    failed = LocalRunner(root).run(parse_job(PSI_JOB), clients)
    assert failed.state == "failed"
    checkpoint = root / "_resume" / failed.job_id / "bank" / "align"  # the run's own: not shared by job name
    assert (checkpoint / "bucket-000000.npz").exists()
    assert exposed(root / "_resume") == []


def test_databases_are_created_private_and_an_existing_one_is_made_private(tmp_path):
    NodeStore(create_engine(f"sqlite:///{tmp_path / 'node' / 'node.db'}"))
    older = tmp_path / "older.db"
    older.touch(mode=0o644)
    NodeStore(create_engine(f"sqlite:///{older}"))
    assert stat.S_IMODE((tmp_path / "node" / "node.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "node").stat().st_mode) == 0o700
    assert stat.S_IMODE(older.stat().st_mode) == 0o600


def test_a_decrypted_tee_model_is_written_owner_only(tmp_path, monkeypatch):
    model = SimpleNamespace(native_bytes=lambda: b"plaintext model", algorithm="xgboost", features=["x"])
    opened = SimpleNamespace(model=model, model_id=b"\x01", datasets=["bank"], verification="verified")
    monkeypatch.setattr(tee_cli, "_report", lambda verification: None)
    monkeypatch.setattr(tee_cli, "decrypt_model", lambda *args: opened)
    CliRunner().invoke(tee_cli.app, ["keygen", "alice", "--out", str(tmp_path)])
    release, output = tmp_path / "model.release", tmp_path / "model.ubj"
    release.write_bytes(b"sealed")
    output.touch(mode=0o644)  # an older download: overwritten, and made private too
    result = CliRunner().invoke(tee_cli.app, ["decrypt-model", str(release), "--key", str(tmp_path / "alice.key"),
                                              "--allowed-measurement", "00" * 32, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == b"plaintext model"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
