"""`sharedml tee` commands around a running enclave worker (simulated attestation): an owner verifies the
quote and encrypts, the operator drops a job, the recipient decrypts a model xgboost can load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from typer.testing import CliRunner

from sharedml.ml.metrics import roc_auc
from sharedml.tee.attestation import SimulatedProvider
from sharedml.tee.cli import app
from sharedml.tee.enclave import Enclave
from sharedml.tee.worker import serve

pytestmark = pytest.mark.filterwarnings("ignore::sharedml.tee.attestation.InsecureAttestationWarning")


def wait_for(path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_owner_operator_recipient_round_trip(tmp_path, data_dir):
    work = tmp_path / "enclave"
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(Enclave(SimulatedProvider()), work, stop, 0.05), daemon=True)
    worker.start()
    try:
        wait_for(work / "quote.json")
        measurement = invoke("measurement").split()[0]
        assert measurement in (work / "quote.json").read_text()
        invoke("keygen", "alice", "--out", tmp_path / "keys")
        alice = (tmp_path / "keys" / "alice.pub").read_text().strip()
        for dataset, half in (("bank", "guest"), ("insurer", "host")):
            policy = tmp_path / f"{dataset}.yaml"
            policy.write_text(f"dataset_id: {dataset}\nid_column: id\nallowed_measurements: [{measurement}]\n"
                              f"allowed_recipients: {{alice: {alice}}}\nallow_simulated: true\n")
            assert "insecure=True" in invoke("quote", work / "quote.json", "--policy", policy)
            invoke("encrypt", data_dir / f"default_credit_hetero_{half}.csv.gz", "--policy", policy,
                   "--quote", work / "quote.json", "-o", work / "data" / f"{dataset}.enc")
        (work / "jobs" / "credit.yaml").write_text(
            "datasets: [../data/bank.enc, ../data/insurer.enc]\nlabel: bank.y\nrecipients: [alice]\n"
            "params: {n_estimators: 5, max_depth: 3, nthread: 1}\n")
        (work / "jobs" / "leak.yaml").write_text(
            "datasets: [../data/bank.enc, ../data/insurer.enc]\nlabel: bank.y\nrecipients: [mallory]\n")
        wait_for(work / "jobs" / "credit.done")
        wait_for(work / "jobs" / "leak.failed")
        assert "recipient 'mallory' is not allowed by the policy of dataset(s) bank, insurer" in \
            (work / "jobs" / "leak.failed").read_text()
        assert not (work / "out" / "leak").exists()
        strict = tmp_path / "strict.yaml"
        strict.write_text(policy.read_text().replace("allow_simulated: true", "allow_simulated: false"))
        refused = CliRunner().invoke(app, ["quote", str(work / "quote.json"), "--policy", str(strict)])
        assert refused.exit_code == 2 and "allow_simulated: true" in " ".join(refused.output.split())
    finally:
        stop.set()
        worker.join()
    output = invoke("decrypt-model", work / "out" / "credit" / "alice.release", "--key", tmp_path / "keys" /
                    "alice.key", "--allowed-measurement", measurement, "--allow-simulated", "-o", tmp_path / "m.ubj")
    assert "xgboost model" in output and "insecure=True" in output
    booster = xgb.Booster()
    booster.load_model(tmp_path / "m.ubj")
    guest = pd.read_csv(data_dir / "default_credit_hetero_guest.csv.gz")
    joined = guest.merge(pd.read_csv(data_dir / "default_credit_hetero_host.csv.gz"), on="id")
    X = joined.drop(columns=["id", "y"]).to_numpy(np.float64)
    assert roc_auc(joined["y"], booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names))) > 0.7


def test_cli_errors_are_clear(tmp_path):
    result = CliRunner().invoke(app, ["decrypt-model", str(tmp_path / "none.release"), "--key",
                                      str(tmp_path / "k.key"), "--allowed-measurement", "00" * 32, "-o",
                                      str(tmp_path / "m")])
    assert result.exit_code == 2 and "none.release" in " ".join(result.output.split())
    refused = CliRunner().invoke(app, ["decrypt-model", __file__, "--key", str(tmp_path / "k.key"),
                                       "--allowed-measurement", "00" * 32, "-o", str(tmp_path / "m")])
    assert refused.exit_code == 2 and "key file not found" in " ".join(refused.output.split())
