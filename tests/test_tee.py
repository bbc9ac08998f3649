"""TEE route with simulated attestation: owners encrypt, the enclave trains, recipients decrypt; tampering,
wrong measurements, disallowed recipients and unattested workers are refused."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from sharedml.crypto import kex
from sharedml.ml.metrics import roc_auc
from sharedml.tee import measurement
from sharedml.tee.attestation import InsecureAttestationWarning, SimulatedProvider, verify_quote
from sharedml.tee.enclave import Enclave, EnclaveConfig
from sharedml.tee.envelope import bind, unwrap, wrap
from sharedml.tee.errors import (
    AttestationError,
    EnclaveNotReady,
    EnvelopeError,
    OwnerPolicyError,
    ReleaseError,
    StorageError,
)
from sharedml.tee.gramine import GramineProvider
from sharedml.tee.models import xgboost_params
from sharedml.tee.owner import encrypt_file
from sharedml.tee.owner_policy import OwnerPolicy, load_policy
from sharedml.tee.quotes import Quote, TrustSettings
from sharedml.tee.release import decrypt_model
from sharedml.tee.sealed import iter_plaintext, read_header
from sharedml.tee.storage import open_input
from sharedml.tee.train import TrainJob, train

pytestmark = [pytest.mark.filterwarnings("ignore::sharedml.tee.attestation.InsecureAttestationWarning"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

XGB_PARAMS = {"n_estimators": 8, "max_depth": 4, "learning_rate": 0.3, "max_bin": 64, "nthread": 1}


@pytest.fixture(scope="module")
def enclave() -> Enclave:
    worker = Enclave(SimulatedProvider(), name="primary")
    worker.start()
    return worker


@pytest.fixture(scope="module")
def keys() -> dict:
    return {name: kex.generate_private_key() for name in ("alice", "mallory")}


def pub(key) -> str:
    return kex.public_key_bytes(key).hex()


def policy(enclave: Enclave, dataset_id: str, recipients: dict, **extra) -> OwnerPolicy:
    return OwnerPolicy(dataset_id=dataset_id, id_column="id", allowed_measurements=[enclave.measurement.hex()],
                       allowed_recipients={name: pub(key) for name, key in recipients.items()},
                       allow_simulated=True, **extra)


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory, data_dir, enclave, keys) -> dict:
    """The bank (guest half, labels; allows alice and mallory) and the insurer (host half; alice only)."""
    folder = tmp_path_factory.mktemp("tee")
    files = {}
    for dataset, half, recipients in (("bank", "guest", keys), ("insurer", "host", {"alice": keys["alice"]})):
        files[dataset] = str(folder / f"{dataset}.enc")
        encrypt_file(policy(enclave, dataset, recipients), enclave.quote,
                     data_dir / f"default_credit_hetero_{half}.csv.gz", files[dataset], chunk_size=256 << 10)
    return files


@pytest.fixture(scope="module")
def joined_plaintext(data_dir) -> tuple[np.ndarray, np.ndarray]:
    guest = pd.read_csv(data_dir / "default_credit_hetero_guest.csv.gz")
    host = pd.read_csv(data_dir / "default_credit_hetero_host.csv.gz")
    joined = guest.merge(host, on="id", how="inner", suffixes=("_g", "_h"))
    return joined.drop(columns=["id", "y"]).to_numpy(np.float64), joined["y"].to_numpy()


def trust(enclave: Enclave, **extra) -> TrustSettings:
    return TrustSettings(frozenset({enclave.measurement}), allow_simulated=True, **extra)


def test_enclave_xgboost_matches_plaintext_training(enclave, encrypted, keys, joined_plaintext):
    X, y = joined_plaintext
    result = train(enclave, TrainJob([encrypted["bank"], encrypted["insurer"]], label="bank.y",
                                     recipients=["alice"], params=XGB_PARAMS))
    opened = decrypt_model(result.releases["alice"], keys["alice"], trust(enclave))
    assert opened.verification.insecure and "insecure=True" in str(opened.verification)
    assert opened.datasets == ["bank", "insurer"] and result.rows == len(y) == 30000
    native, rounds = xgboost_params(XGB_PARAMS)
    plain = xgb.train(native, xgb.DMatrix(X, label=y), num_boost_round=rounds).predict(xgb.DMatrix(X))
    ours = opened.model.predict_scores(X)
    assert roc_auc(y, ours) == roc_auc(y, plain) > 0.7
    np.testing.assert_array_equal(ours, plain)
    assert set(result.releases) == {"alice"}
    stored = Path(encrypted["bank"]).read_bytes()  # what the operator's storage holds: no values, no columns
    assert b"-1.486041" not in stored and b"x0,x1" not in stored and b"25115" not in stored
    assert b"bank.x0" not in result.releases["alice"]  # the release holds the model only encrypted


@pytest.mark.parametrize("algorithm, params", [
    ("logistic_regression", {"max_iter": 30}),
    ("mlp", {"hidden_layer_sizes": (8,), "max_iter": 4, "random_state": 0}),
])
def test_enclave_sklearn_models_match_plaintext(enclave, encrypted, keys, joined_plaintext, algorithm, params):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    X, y = joined_plaintext
    result = train(enclave, TrainJob([encrypted["bank"], encrypted["insurer"]], label="bank.y",
                                     recipients=["alice"], algorithm=algorithm, params=params))
    model = decrypt_model(result.releases["alice"], keys["alice"], trust(enclave)).model
    estimator = LogisticRegression if algorithm == "logistic_regression" else MLPClassifier
    plain = estimator(**params).fit(X, y).predict_proba(X)[:, 1]
    np.testing.assert_allclose(model.predict_scores(X), plain, rtol=0, atol=1e-12)


def test_model_goes_only_to_recipients_every_owner_allows(enclave, encrypted, keys, tmp_path):
    model_path = tmp_path / "model.enc"
    with pytest.raises(ReleaseError, match=r"'mallory' is not allowed by the policy of dataset\(s\) insurer"):
        train(enclave, TrainJob([encrypted["bank"], encrypted["insurer"]], label="bank.y",
                                recipients=["alice", "mallory"], params=XGB_PARAMS, model_location=str(model_path)))
    assert not model_path.exists()
    result = train(enclave, TrainJob([encrypted["bank"]], label="bank.y", recipients=["alice"], params=XGB_PARAMS))
    with pytest.raises(EnvelopeError, match="not released to this key"):
        decrypt_model(result.releases["alice"], keys["mallory"], trust(enclave))


def test_no_common_recipient_is_refused(enclave, keys, tmp_path, data_dir):
    files = []
    for dataset, name in (("a", "alice"), ("b", "mallory")):
        files.append(str(tmp_path / f"{dataset}.enc"))
        encrypt_file(policy(enclave, dataset, {name: keys[name]}), enclave.quote,
                     data_dir / "default_credit_hetero_host.csv.gz", files[-1])
    with pytest.raises(ReleaseError, match="no recipient is allowed"):
        train(enclave, TrainJob(files, label="a.x0", recipients=["alice"]))


# -- tampering -------------------------------------------------------------------------------------------


@pytest.fixture
def small_sealed(tmp_path, enclave, keys) -> tuple[bytes, int]:
    """A ~17 KB CSV encrypted in 1 KiB chunks: (file bytes, offset of the first chunk)."""
    source = tmp_path / "small.csv"
    rows = np.arange(1500)
    pd.DataFrame({"id": rows, "v": rows * 0.5}).to_csv(source, index=False)
    target = tmp_path / "small.enc"
    encrypt_file(policy(enclave, "small", {"alice": keys["alice"]}), enclave.quote, source, target, chunk_size=1024)
    raw = target.read_bytes()
    return raw, 9 + struct.unpack(">I", raw[5:9])[0]


def split_chunks(raw: bytes, start: int) -> list[bytes]:
    chunks, at = [], start
    while at < len(raw):
        length = struct.unpack(">I", raw[at:at + 4])[0]
        chunks.append(raw[at:at + 4 + length])
        at += 4 + length
    return chunks


def decrypt_all(enclave: Enclave, path) -> bytes:
    with enclave.open_sealed(str(path)) as (_, chunks):
        return b"".join(chunks)


def tamper(raw: bytes, start: int, how: str) -> bytes:
    head, chunks = raw[:start], split_chunks(raw, start)
    if how == "flip a byte":
        body = bytearray(raw)
        body[start + 4 + 100] ^= 1
        return bytes(body)
    if how == "drop a chunk":
        return head + b"".join(chunks[:3] + chunks[4:])
    if how == "reorder chunks":
        return head + b"".join([chunks[1], chunks[0], *chunks[2:]])
    if how == "drop the final chunk":
        return head + b"".join(chunks[:-1])
    if how == "cut inside a chunk":
        return raw[:-7]
    if how == "append data":
        return raw + chunks[-1]
    if how == "corrupt the header":
        at = raw.index(b'"key_id":"') + 10
        return raw[:at] + b"z" + raw[at + 1:]
    body = bytearray(raw)  # "edit the header": change the owner's terms in place
    at = raw.index(b'"dataset_id":"small"')
    body[at:at + 20] = b'"dataset_id":"smalx"'
    return bytes(body)


@pytest.mark.parametrize("how, message", [
    ("flip a byte", "chunk 0 fails authentication"),
    ("drop a chunk", "chunk 3 fails authentication"),
    ("reorder chunks", "chunk 0 fails authentication"),
    ("drop the final chunk", "truncated: the file ends after"),
    ("cut inside a chunk", "truncated inside chunk"),
    ("append data", "bytes follow the final chunk"),
    ("edit the header", "fails authentication"),
    ("corrupt the header", "header field key_id is not hexadecimal"),
])
def test_tampered_ciphertext_is_refused(enclave, small_sealed, tmp_path, how, message):
    raw, start = small_sealed
    good = tmp_path / "good.enc"
    good.write_bytes(raw)
    assert decrypt_all(enclave, good).startswith(b"id,v\n0,0.0\n")
    assert len(split_chunks(raw, start)) > 8
    bad = tmp_path / "bad.enc"
    bad.write_bytes(tamper(raw, start, how))
    with pytest.raises(EnvelopeError, match=message):
        decrypt_all(enclave, bad)


def test_edited_header_does_not_unwrap_the_key(tmp_path, keys):
    """A replica unwrapping the key itself refuses a header whose owner terms were changed."""
    fresh = Enclave(SimulatedProvider(), name="fresh")
    fresh.start()
    source, target = tmp_path / "t.csv", tmp_path / "t.enc"
    source.write_text("id,v\n1,2\n")
    encrypt_file(policy(fresh, "t", {"alice": keys["alice"]}), fresh.quote, source, target)
    target.write_bytes(target.read_bytes().replace(b'"id_column":"id"', b'"id_column":"ix"'))
    with pytest.raises(EnvelopeError, match="does not unwrap in replica fresh"):
        decrypt_all(fresh, target)
    assert len(fresh.keyring) == 0


def test_chunks_stay_bounded(small_sealed, tmp_path, enclave):
    raw, _ = small_sealed
    path = tmp_path / "s.enc"
    path.write_bytes(raw)
    with open_input(path) as stream:
        header = read_header(stream)
        sizes = [len(c) for c in iter_plaintext(stream, header, enclave.data_key(header).key)]
    assert max(sizes) == header.chunk_size == 1024 and len(sizes) > 8


# -- attestation and policy ------------------------------------------------------------------------------


def test_wrong_measurement_gets_no_key(enclave, keys, tmp_path, data_dir):
    other = Enclave(SimulatedProvider(), EnclaveConfig(chunk_size=4096), name="other")
    other.start()
    assert other.measurement != enclave.measurement
    target = tmp_path / "x.enc"
    with pytest.raises(AttestationError, match="is not an allowed measurement"):
        source = data_dir / "default_credit_hetero_guest.csv.gz"
        encrypt_file(policy(enclave, "bank", keys), other.quote, source, target)
    assert not target.exists() and not (tmp_path / "x.enc.partial").exists()


def test_code_change_changes_measurement(tmp_path):
    config = EnclaveConfig().as_dict()
    for relative in measurement.measured_files():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(measurement.PACKAGE_ROOT / relative, tmp_path / relative)
    assert measurement.code_measurement(config, tmp_path) == measurement.code_measurement(config)
    with (tmp_path / "tee" / "train.py").open("a") as handle:
        handle.write("\n# one more line\n")
    assert measurement.code_measurement(config, tmp_path) != measurement.code_measurement(config)
    assert measurement.code_measurement({**config, "chunk_size": 1}) != measurement.code_measurement(config)


def test_simulated_quote_needs_allow_simulated(enclave, keys, tmp_path, data_dir):
    strict = policy(enclave, "bank", keys).model_copy(update={"allow_simulated": False})
    with pytest.raises(AttestationError, match="does not set allow_simulated: true"):
        encrypt_file(strict, enclave.quote, data_dir / "default_credit_hetero_guest.csv.gz", tmp_path / "x.enc")
    with pytest.warns(InsecureAttestationWarning, match="INSECURE"):
        assert verify_quote(enclave.quote, trust(enclave)).insecure


def test_forged_and_unpinned_quotes_are_refused(enclave):
    q = enclave.quote
    swapped_key = Quote(q.provider, q.measurement, bytes(32), q.report_data, q.evidence, q.signer)
    with pytest.raises(AttestationError, match="the key is not bound to this quote"):
        verify_quote(swapped_key, trust(enclave))
    other_measurement = bytes(32)
    forged = Quote(q.provider, other_measurement, q.public_key, q.report_data, q.evidence, q.signer)
    with pytest.raises(AttestationError, match="signature does not verify"):
        verify_quote(forged, TrustSettings(frozenset({other_measurement}), allow_simulated=True))
    with pytest.raises(AttestationError, match="not by the pinned simulated_root"):
        verify_quote(q, trust(enclave, simulated_root=bytes(32)))
    assert Quote.from_json(q.to_json()) == q


def test_gramine_outside_an_enclave_and_dcap_hook(tmp_path, enclave):
    with pytest.raises(AttestationError, match="not running inside a Gramine SGX enclave"):
        GramineProvider(tmp_path).quote(bytes(32), {})
    q = enclave.quote
    raw = bytearray(1000)
    raw[112:144], raw[368:432] = q.measurement, q.report_data
    hardware = Quote("gramine", q.measurement, q.public_key, q.report_data, bytes(raw))
    strict = TrustSettings(frozenset({q.measurement}))
    try:
        import dcap_qvl  # noqa: F401
    except ImportError:
        with pytest.raises(AttestationError, match="cannot verify an SGX DCAP quote"):
            verify_quote(hardware, strict)
    with pytest.raises(AttestationError, match="DCAP verification refused the quote"):
        verify_quote(hardware, TrustSettings(strict.allowed_measurements, dcap_verify_command=("false",)))
    accepted = verify_quote(hardware, TrustSettings(strict.allowed_measurements, dcap_verify_command=("true",)))
    assert not accepted.insecure
    raw[96] |= 0x02
    debug = Quote("gramine", q.measurement, q.public_key, q.report_data, bytes(raw))
    with pytest.raises(AttestationError, match="DEBUG enclave"):
        verify_quote(debug, TrustSettings(strict.allowed_measurements, dcap_verify_command=("true",)))


def test_enclave_refuses_work_before_attestation(encrypted):
    fresh = Enclave(SimulatedProvider())
    with pytest.raises(EnclaveNotReady, match="call start"):
        decrypt_all(fresh, encrypted["bank"])
    with pytest.raises(EnclaveNotReady):
        fresh.export_keys(fresh.quote)


def test_policy_errors_name_the_field(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("dataset_id: bank\nid_column: id\nallowed_measurements: [abc]\nallow_simulate: true\n")
    with pytest.raises(OwnerPolicyError) as error:
        load_policy(path)
    text = str(error.value)
    assert "line 3, allowed_measurements.0: Value error, must be 64 hexadecimal" in text
    assert "line 4, allow_simulate: Extra inputs are not permitted; did you mean 'allow_simulated'?" in text


def test_envelope_binds_context_and_sender():
    recipient, sender, stranger = (kex.generate_private_key() for _ in range(3))
    blob = wrap(kex.public_key_bytes(recipient), b"secret", bind("t", "ctx"), sender=sender)
    assert unwrap(recipient, blob, bind("t", "ctx"), kex.public_key_bytes(sender)) == b"secret"
    with pytest.raises(EnvelopeError):
        unwrap(recipient, blob, bind("t", "other"), kex.public_key_bytes(sender))
    with pytest.raises(EnvelopeError):
        unwrap(recipient, blob, bind("t", "ctx"), kex.public_key_bytes(stranger))
    with pytest.raises(EnvelopeError, match="not sender-authenticated"):
        unwrap(recipient, wrap(kex.public_key_bytes(recipient), b"x", b"c"), b"c", kex.public_key_bytes(sender))


def test_storage_url_without_fsspec_says_how_to_fix(tmp_path):
    try:
        import fsspec  # noqa: F401
    except ImportError:
        with pytest.raises(StorageError, match="pip install fsspec"):
            with open_input("s3://bucket/data.enc"):
                pass
    else:
        with fsspec.open("memory://tee/x", "wb") as handle:
            handle.write(b"abc")
        with open_input("memory://tee/x") as handle:
            assert handle.read() == b"abc"


def test_a_gzip_bomb_is_refused_while_an_honest_gzip_table_reads(monkeypatch):
    import gzip

    from sharedml.tee import tables
    from sharedml.tee.errors import TrainingError

    honest = gzip.compress(b"id,x\n" + b"".join(b"%d,%d\n" % (i, i % 7) for i in range(50_000)))
    table = tables.read_csv_chunks(iter([honest[:1000], honest[1000:]]), "bank", "id")
    assert table.frame.shape == (50_000, 2) and table.frame["x"].sum() == sum(i % 7 for i in range(50_000))
    monkeypatch.setattr(tables, "INFLATION_SLACK", 1 << 20)
    bomb = gzip.compress(b"id,x\n" + b"1,0\n" + b"0" * (40 << 20), compresslevel=9)  # ~1000x
    assert len(bomb) < 100_000
    chunks = (bomb[i:i + 4096] for i in range(0, len(bomb), 4096))
    with pytest.raises(TrainingError, match="decompression bomb"):
        tables.read_csv_chunks(chunks, "bank", "id")
