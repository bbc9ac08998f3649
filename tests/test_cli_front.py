"""The command line explains itself: version, components and their parameters, JSON, results of a job."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sharedml import __version__
from sharedml.cli import app

runner = CliRunner(env={"COLUMNS": "80"})

SUM_JOB = """\
job: sums
parties:
  a: {role: member, data: {values: values}}
  b: {role: member, data: {values: values}}
tasks:
  total: {component: secure_sum, inputs: {data: $values}, params: {columns: [v]}}
"""


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sharedml {__version__}"


def test_components_fit_80_columns_one_line_each():
    result = runner.invoke(app, ["components"])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line and not line.startswith("`")]
    assert all(len(line) <= 80 for line in result.output.splitlines())
    names = [line.split()[0] for line in lines]
    assert {"psi", "hetero_secureboost_predict", "ss_lr", "homo_nn"} <= set(names)
    assert len(names) == len(set(names))


def test_a_component_lists_every_parameter_with_type_default_and_range():
    result = runner.invoke(app, ["components", "hetero_lr"])
    assert result.exit_code == 0
    assert "  learning_rate: float = 0.05, > 0" in result.output
    assert "inputs:   train, validate (optional)" in result.output
    about = json.loads(runner.invoke(app, ["components", "hetero_secureboost", "--json"]).output)
    max_bin = next(p for p in about["parameters"] if p["name"] == "max_bin")
    assert max_bin["default"] == 32 and max_bin["range"] == ">= 2, <= 255"


def test_unknown_component_and_parameter_get_a_suggestion(tmp_path):
    result = runner.invoke(app, ["components", "hetro_lr"])
    assert result.exit_code == 2 and "did you mean 'hetero_lr'?" in result.output
    job = tmp_path / "job.yaml"
    job.write_text(SUM_JOB.replace("columns: [v]", "colums: [v]"))
    result = runner.invoke(app, ["validate", str(job)])
    assert result.exit_code == 2 and "did you mean 'columns'?" in " ".join(result.output.split())


@pytest.fixture
def finished_job(tmp_path):
    catalogs = []
    for party, value in (("a", 3), ("b", 4)):
        (tmp_path / f"{party}.csv").write_text(f"v\n{value}\n")
        (tmp_path / f"{party}.yaml").write_text(f"datasets:\n  values: {{path: {party}.csv}}\n")
        catalogs += ["--catalog", f"{party}={tmp_path / f'{party}.yaml'}"]
    (tmp_path / "job.yaml").write_text(SUM_JOB)
    workdir = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(tmp_path / "job.yaml"), *catalogs, "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    return workdir


def test_jobs_show_and_report_of_a_finished_job(finished_job, tmp_path):
    listed = json.loads(runner.invoke(app, ["jobs", "--workdir", str(finished_job), "--json"]).output)
    assert len(listed) == 1 and listed[0]["state"] == "succeeded" and listed[0]["tasks"] == {"succeeded": 2}
    job_id = listed[0]["id"]
    text = runner.invoke(app, ["jobs", "--workdir", str(finished_job)]).output
    assert job_id in text  # the full id, never cut

    shown = json.loads(runner.invoke(app, ["show", job_id, "--workdir", str(finished_job), "--json"]).output)
    assert {(t["task"], t["party"], t["state"]) for t in shown["tasks"]} == {("total", "a", "succeeded"),
                                                                              ("total", "b", "succeeded")}
    result = runner.invoke(app, ["show", job_id, "totl", "--workdir", str(finished_job)])
    assert result.exit_code == 2 and "did you mean 'total'?" in " ".join(result.output.split())

    pytest.importorskip("matplotlib")
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", job_id, "-o", str(page), "--workdir", str(finished_job)])
    assert result.exit_code == 0 and job_id in page.read_text()
