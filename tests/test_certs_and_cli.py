"""Certificates and the command line as a user meets them."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from sharedml.cli import app
from sharedml.net.certs import common_name, init_federation, load_identity

runner = CliRunner()


def test_certs_init_writes_a_ca_and_a_signed_certificate_per_party(tmp_path):
    result = runner.invoke(app, ["certs", "init", "--parties", "bank,telco,shop", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    for party in ("bank", "telco", "shop"):
        identity = load_identity(tmp_path, party)
        cert = x509.load_pem_x509_certificate(identity.cert_pem)
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        assert common_name(identity.cert_pem) == party
        assert (tmp_path / f"{party}.key").stat().st_mode & 0o077 == 0  # private keys are owner-only
    assert cert.public_key().curve.key_size >= 256


def test_adding_a_party_reuses_the_federation_ca(tmp_path):
    first = init_federation(["bank"], tmp_path)
    second = init_federation(["shop"], tmp_path)
    assert first["bank"].ca_pem == second["shop"].ca_pem


def test_bad_party_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid party name"):
        init_federation(["bad name"], tmp_path)


def test_missing_certificates_say_how_to_create_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="sharedml certs init"):
        load_identity(tmp_path, "bank")


def test_validate_reports_file_line_and_field(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("job: j\nparties:\n  a: {role: x}\ntasks:\n  t:\n    componnt: secure_sum\n")
    result = runner.invoke(app, ["validate", str(job)])
    assert result.exit_code == 2
    assert "job.yaml, line 6, tasks.t.componnt" in " ".join(result.output.split())


def test_validate_locates_component_param_errors(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("job: j\nparties: {a: {role: x, data: {d: d}}, b: {role: x, data: {d: d}}}\ntasks:\n"
                   "  t:\n    component: secure_sum\n    inputs: {data: $d}\n    params:\n      colums: [v]\n")
    result = runner.invoke(app, ["validate", str(job)])
    assert result.exit_code == 2
    assert ("job.yaml, line 8, tasks.t.params.colums: secure_sum has no parameter 'colums'; did you mean 'columns'?"
            in " ".join(result.output.split()))


def test_run_with_a_malformed_catalog_argument_is_a_usage_error(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("job: j\nparties: {a: {role: x}, b: {role: x}}\ntasks: {t: {component: secure_sum}}\n")
    result = runner.invoke(app, ["run", str(job), "--catalog", "nonsense"])
    assert result.exit_code == 2 and "PARTY=FILE" in result.output


QUICK = ["--rows", "15500", "--trees", "2", "--depth", "3"]  # the demo's vertical job, shortened for tests


def test_demo_in_threads_prints_the_total_and_matching_statistics(tmp_path):
    result = runner.invoke(app, ["demo", "--mode", "threads", "--workdir", str(tmp_path), *QUICK])
    assert result.exit_code == 0, result.output
    assert "bank and insurer share 1,000 clients (expected 1,000)" in result.output
    auc = " ".join(result.output.split()).split("(difference ")[1].split(")")[0]
    assert abs(float(auc)) <= 0.002  # SecureBoost's AUC against xgboost's on the joined plaintext
    text = " ".join(result.output.split())
    evaluated = float(text.split("report at bank: auc ")[1].split(",")[0])
    trained = float(text.split("SecureBoost AUC at the bank: ")[1].split()[0])
    assert evaluated == pytest.approx(trained, abs=1e-4)  # evaluate's AUC of the same predictions
    assert "insurer:x" in text.split("information value at the bank")[1].split("hetero_secureboost")[0]
    assert "100 of 100 online scores equal the batch job's bit for bit" in text  # served by `sharedml serve`
    assert result.output.count("learned the total 45") == 3
    figures = text.split("(which no party has): ")[1].split(" job file")[0].split()
    assert figures[0::2] == ["count", "mean", "std", "min", "max"]
    assert all(float(v.rstrip(",")) < 1e-9 for v in figures[1::2])
    runs = list((tmp_path / "horizontal" / "runs").glob("demo-*/bank/total/_SUCCESS"))
    assert len(runs) == 1


@pytest.mark.slow
def test_demo_over_grpc_processes(tmp_path):
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path), *QUICK])
    assert result.exit_code == 0, result.output
    assert result.output.count("learned the total 45") == 3
    config = json.loads(next((tmp_path / "horizontal" / "runs").glob("demo-*/_local/bank.config.json")).read_text())
    assert config["peers"] and all(a.startswith("127.0.0.1:") for a in config["peers"].values())
