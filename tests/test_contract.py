"""The data contract: IDs, label, categories and exclusions declared once in each party's catalog, honoured by
every task downstream, and checked before any party computes; errors that name the column and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sharedml.cli import app
from sharedml.jobs.catalog import Catalog
from sharedml.jobs.contract import ContractError, DataContract, prepare, task_defaults
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import parse_job
from sharedml.ml.tables import feature_matrix, label_column
from sharedml.runtime.simulate import simulate

VERTICAL = """
job: patients
timeout: 60
parties:
  bank: {role: guest, data: {rows: patients}}
  insurer: {role: host, data: {rows: patients}}
tasks:
  align: {component: psi, inputs: {data: $rows}}
  boost: {component: hetero_secureboost, inputs: {train: align.data},
          params: {n_estimators: 2, max_depth: 3, key_bits: 1024, seed: 1}}
  score: {component: hetero_secureboost_predict, inputs: {model: boost.model, data: align.data}}
  report: {component: evaluate, inputs: {predictions: score.predictions}, parties: [bank]}
"""


def _catalogs(tmp_path, tables: dict[str, pd.DataFrame], entries: dict[str, dict]) -> dict[str, Catalog]:
    catalogs = {}
    for party, table in tables.items():
        folder = tmp_path / party
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "patients.csv", index=False)
        entry = {"path": "patients.csv", **entries.get(party, {})}
        catalogs[party] = Catalog.from_mapping({"datasets": {"patients": entry}}, f"{party}/catalog.yaml", folder)
    return catalogs


def _breast(data_dir) -> dict[str, pd.DataFrame]:
    """The breast data split vertically, IDs called `customer_id` (numeric, so they would pass as a feature)
    and the label `diagnosis`: nothing is called `id` or `y`."""
    guest = pd.read_csv(data_dir / "breast_hetero_guest.csv.gz").rename(columns={"id": "customer_id", "y": "diagnosis"})
    host = pd.read_csv(data_dir / "breast_hetero_host.csv.gz").rename(columns={"id": "customer_id"})
    return {"bank": guest, "insurer": host}


def test_ids_and_label_declared_only_in_the_catalogs_reach_every_task(tmp_path, data_dir):
    tables = _breast(data_dir)
    entries = {"bank": {"id_columns": "customer_id", "label": "diagnosis"}, "insurer": {"id_columns": ["customer_id"]}}
    result = LocalRunner(tmp_path / "runs").run(parse_job(VERTICAL), _catalogs(tmp_path, tables, entries))
    assert result.state == "succeeded", result.error
    for party in ("bank", "insurer"):
        features = result.output(party, "boost", "model")["features"]
        assert "customer_id" not in features and len(features) == len(tables[party].columns) - 1 - (party == "bank")
    predictions = result.output("bank", "score", "predictions")
    assert {"customer_id", "diagnosis", "score"} <= set(predictions.columns)
    assert result.output("bank", "report", "report")["auc"] > 0.95  # evaluate found `diagnosis` by itself


def test_a_text_column_stops_the_job_by_name_unless_declared_categorical(tmp_path, data_dir):
    tables = _breast(data_dir)
    rng = np.random.default_rng(0)
    tables["insurer"]["segment"] = rng.choice(["retail", "sme", "corporate"], len(tables["insurer"]))
    tables["insurer"]["balance"] = [f"{v:,}" for v in rng.integers(1000, 900000, len(tables["insurer"]))]
    entries = {"bank": {"id_columns": "customer_id", "label": "diagnosis"}, "insurer": {"id_columns": "customer_id"}}
    refused = LocalRunner(tmp_path / "a").run(parse_job(VERTICAL), _catalogs(tmp_path / "a", tables, entries))
    assert refused.state == "failed"
    assert "column(s) 'segment', 'balance'" in refused.error and "not numeric" in refused.error
    assert "'balance' look like numbers with thousands separators" in refused.error
    assert "retail" not in refused.error  # an error reaches the peers: it never carries a data value

    entries["insurer"] = {"id_columns": "customer_id", "categorical": ["segment"], "exclude": ["balance"]}
    result = LocalRunner(tmp_path / "b").run(parse_job(VERTICAL), _catalogs(tmp_path / "b", tables, entries))
    assert result.state == "succeeded", result.error
    features = result.output("insurer", "boost", "model")["features"]
    assert {"segment=corporate", "segment=retail", "segment=sme"} <= set(features) and "balance" not in features


def test_prepare_applies_the_contract_and_names_what_is_wrong():
    table = pd.DataFrame({"key": ["a", "b", "c"], "outcome": ["yes", "no", "yes"], "name": ["x", "y", "z"],
                          "segment": ["s", None, "t"], "amount": ["1", "2", "3"]})
    contract = DataContract(id_columns="key", label="outcome", positive_class="yes", categorical=["segment"],
                            exclude=["name"], dtypes={"amount": "float"})
    ready = prepare(table, contract, "party 'bank', dataset 'p' (p.csv)")
    assert list(ready.columns) == ["key", "outcome", "amount", "segment=s", "segment=t"]
    assert ready["outcome"].tolist() == [1, 0, 1] and ready["amount"].dtype == np.float64
    assert ready[["segment=s", "segment=t"]].to_numpy().tolist() == [[1, 0], [0, 0], [0, 1]]

    for bad, match in (
        ({"label": "missing"}, r"party 'bank', dataset 'p' \(p.csv\): column\(s\) 'missing' declared"),
        ({"dtypes": {"name": "int"}}, r"'name' is declared int.*3 of its 3 values are not"),
        ({"id_columns": ["segment"]}, r"1 row\(s\) have no value in ID column"),
        ({"label": "outcome", "positive_class": "maybe"}, "no row of label 'outcome' equals the declared"),
        ({"categorical": {"segment": ["s"]}}, "1 value\\(s\\) outside its declared categories"),
    ):
        with pytest.raises(ContractError, match=match) as info:
            prepare(table, DataContract(**bad), "party 'bank', dataset 'p' (p.csv)")
        assert "maybe" not in str(info.value).replace("'maybe'", "") and "'t'" not in str(info.value)
    doubled = pd.DataFrame({"key": [1, 2, 1, 3]})
    with pytest.raises(ContractError, match=r"2 rows share an ID in \['key'\] \(data rows 1, 3, \.\.\.\)"):
        prepare(doubled, DataContract(id_columns="key"), "here")


def test_contracts_of_one_task_must_agree_and_params_still_win():
    one, other = DataContract(id_columns="key", label="y1"), DataContract(id_columns="key")
    assert task_defaults([one, other], "fit", "here") == {"id_columns": ["key"], "label": "y1"}
    with pytest.raises(ContractError, match="declare different label .'y1' and 'y2'.; set label in the task"):
        task_defaults([one, DataContract(label="y2")], "fit", "here")


def _checked(fn):
    return simulate(fn, ["bank"])["bank"]


@pytest.mark.parametrize("labels, task, match", [
    ([0, 1, np.nan, 1], None, "missing or infinite on 1 of 4 rows"),
    ([0, 2, 1, 1], "binary", "must hold 0/1 for a binary model; declare `positive_class`"),
    ([1, 1, 1, 1], "binary", "holds one class only"),
    (["a", "b", "a", "b"], "binary", "is not numeric; declare `positive_class`"),
    ([0, 1.5, 2, 1], "multiclass", "class numbers 0, 1, 2"),
])
def test_labels_are_checked_before_any_party_computes(labels, task, match):
    table = pd.DataFrame({"y": labels, "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(Exception, match=match):
        _checked(lambda ctx: label_column(ctx, table, "y", "train", task))
    assert _checked(lambda ctx: label_column(ctx, table.assign(y=[0, 1, 0, 1]), "y", "train", "binary")).sum() == 2


def test_feature_matrix_refuses_empty_tables_and_warns_of_useless_columns(caplog):
    with pytest.raises(Exception, match="its `train` table has no rows .after a psi task: the parties share no IDs"):
        _checked(lambda ctx: feature_matrix(ctx, pd.DataFrame({"id": [], "x": []}), ["id"]))
    table = pd.DataFrame({"id": [1, 2, 3], "same": [5.0, 5.0, 5.0], "gone": [np.nan] * 3, "x": [1.0, 2.0, 3.0],
                          "flag": [True, False, True]})
    names, X = _checked(lambda ctx: feature_matrix(ctx, table, ["id"]))
    assert names == ["same", "gone", "x", "flag"] and X.shape == (3, 4)
    assert "'gone' of its `train` table are all missing" in caplog.text and "'same'" in caplog.text


def test_the_cli_prints_a_data_error_once_and_without_a_traceback(tmp_path, data_dir):
    tables = _breast(data_dir)
    tables["bank"].loc[3, "diagnosis"] = np.nan
    entries = {"bank": {"id_columns": "customer_id", "label": "diagnosis"}, "insurer": {"id_columns": "customer_id"}}
    catalogs = _catalogs(tmp_path, tables, entries)
    for party in catalogs:
        (tmp_path / party / "catalog.yaml").write_text(
            "datasets:\n  patients: " + str({"path": "patients.csv", **entries[party]}).replace("'", '"') + "\n")
    (tmp_path / "job.yaml").write_text(VERTICAL)
    args = ["run", str(tmp_path / "job.yaml"), "--workdir", str(tmp_path / "runs"),
            *[f"--catalog={p}={tmp_path / p / 'catalog.yaml'}" for p in catalogs]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # the console wraps at its width
    assert "label column 'diagnosis' of its `train` table is missing or infinite on 1 of" in output
    assert "Traceback" not in output and output.count("is missing or infinite") == 1
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert "Traceback" in debug.output


def test_a_node_can_check_declared_columns_from_the_header_alone(tmp_path):
    """At approval a node checks its contract against the file's header, without reading the rows."""
    pd.DataFrame({"key": [1, 2], "y": [0, 1]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"key": [1, 2], "y": [0, 1]}).to_parquet(tmp_path / "a.parquet")
    for path in ("a.csv", "a.parquet"):
        entry = {"path": path, "id_columns": "key", "label": "y"}
        good = Catalog.from_mapping({"datasets": {"d": entry}}, "c.yaml", tmp_path)
        good.check_columns("d", "bank")
        bad = Catalog.from_mapping({"datasets": {"d": {"path": path, "label": "outcome"}}}, "c.yaml", tmp_path)
        with pytest.raises(ContractError, match=r"party 'bank', dataset 'd' .*column\(s\) 'outcome' declared"):
            bad.check_columns("d", "bank")
