"""Whole jobs: threads and separate processes over gRPC + mTLS, states, outputs, failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sharedml.jobs.catalog import Catalog, DatasetError
from sharedml.jobs.components import check_components
from sharedml.jobs.runner import LocalRunner
from sharedml.jobs.spec import JobSpecError, parse_job
from sharedml.jobs.store import JobStore

SECURE_SUM_JOB = """
job: abc
timeout: {timeout}
parties:
  A: {{role: member, data: {{mine: wealth}}}}
  B: {{role: member, data: {{mine: wealth}}}}
  C: {{role: member, data: {{mine: wealth}}}}
tasks:
  total: {{component: secure_sum, inputs: {{data: $mine}}}}
"""


def catalogs(tmp_path: Path, values: dict[str, float]) -> dict[str, Catalog]:
    out = {}
    for party, value in values.items():
        folder = tmp_path / party
        folder.mkdir()
        (folder / "wealth.csv").write_text(f"value\n{value}\n")
        out[party] = Catalog.from_mapping({"datasets": {"wealth": {"path": "wealth.csv"}}}, party, folder)
    return out


def test_secure_sum_job_in_threads_records_states_and_outputs(tmp_path):
    runner = LocalRunner(tmp_path / "runs")
    result = runner.run(parse_job(SECURE_SUM_JOB.format(timeout=10)), catalogs(tmp_path, {"A": 10, "B": 15, "C": 20}))
    assert result.state == "succeeded", result.error
    assert [float(result.output(p, "total", "result")["total"].iloc[0]) for p in "ABC"] == [45.0] * 3
    store = JobStore(runner.db_url)
    assert store.job(result.job_id).state == "succeeded"
    assert {(t.party, t.state) for t in store.tasks(result.job_id)} == {(p, "succeeded") for p in "ABC"}
    task_dir = tmp_path / "runs" / result.job_id / "A" / "total"
    assert (task_dir / "_SUCCESS").exists() and (task_dir / "metrics.json").exists()
    assert result.parties["A"].traffic["total"]["B"]["bytes_sent"] > 0


@pytest.mark.slow
def test_secure_sum_with_each_party_in_its_own_process_over_grpc(tmp_path):
    result = LocalRunner(tmp_path / "runs").run(parse_job(SECURE_SUM_JOB.format(timeout=30)),
                                                catalogs(tmp_path, {"A": 10, "B": 15, "C": 20}), mode="processes")
    assert result.state == "succeeded", result.error
    assert [float(result.output(p, "total", "result")["total"].iloc[0]) for p in "ABC"] == [45.0] * 3
    certs = tmp_path / "runs" / result.job_id / "_local" / "certs"
    assert (certs / "ca.crt").exists() and (certs / "A.key").exists()
    assert not (certs / "ca.key").exists()  # nothing may mint another certificate for the run's parties


FAULTY_JOB = """
job: faulty
timeout: {timeout}
parties: {{A: {{role: member}}, B: {{role: member}}, C: {{role: member}}}}
tasks:
  first: {{component: faulty, params: {{culprit: B, fault: {fault}}}}}
  after: {{component: faulty, params: {{culprit: nobody, fault: none}}, depends_on: [first]}}
"""


def test_exception_in_one_party_fails_the_job_everywhere_with_its_error(tmp_path, faulty_plugin):
    spec = parse_job(FAULTY_JOB.format(timeout=30, fault="raise"))
    start = time.monotonic()
    result = LocalRunner(tmp_path).run(spec, {p: Catalog({}, p, tmp_path) for p in "ABC"})
    assert time.monotonic() - start < 10  # the abort notice arrives long before the 30 s timeout
    assert result.state == "failed"
    assert "party 'B' failed in task 'first'" in result.error and "deliberate failure" in result.error
    assert {p: r.state for p, r in result.parties.items()} == {"A": "failed", "B": "failed", "C": "failed"}
    assert result.parties["A"].caused_by == "B"
    assert (tmp_path / result.job_id / "A" / "first" / "_FAILED").exists()
    assert not (tmp_path / result.job_id / "A" / "first" / "_SUCCESS").exists()
    tasks = {(t.task, t.party): t.state for t in JobStore(LocalRunner(tmp_path).db_url).tasks(result.job_id)}
    assert tasks[("after", "A")] == "cancelled"


@pytest.mark.slow
def test_a_party_process_that_crashes_makes_the_others_fail_at_once(tmp_path, faulty_plugin):
    spec = parse_job(FAULTY_JOB.format(timeout=60, fault="exit"))
    start = time.monotonic()
    result = LocalRunner(tmp_path).run(spec, {p: Catalog({}, p, tmp_path) for p in "ABC"}, mode="processes")
    elapsed = time.monotonic() - start
    assert result.state == "failed"
    assert "party 'B' died (exit code 3)" in result.parties["B"].error
    for party in "AC":
        assert result.parties[party].state == "failed"
        assert "aborted by party 'B': party 'B' died (exit code 3)" in result.parties[party].error
        assert result.parties[party].caused_by == "B"
    assert elapsed < 15  # process start-up and the crash, far below the job's 60 s timeout


def test_missing_dataset_names_the_catalog_and_lists_its_entries(tmp_path):
    spec = parse_job(SECURE_SUM_JOB.format(timeout=5).replace("mine: wealth", "mine: riches", 1))
    result = LocalRunner(tmp_path / "runs").run(spec, catalogs(tmp_path, {"A": 1, "B": 2, "C": 3}))
    assert result.state == "failed"
    assert "dataset 'riches' is not in catalog A; it holds: wealth" in result.error


def test_component_checks_happen_before_anything_runs():
    spec = parse_job("""
job: bad
parties: {a: {role: x, data: {d: d}}, b: {role: x, data: {d: d}}}
tasks:
  s: {component: secure_sum, inputs: {data: $d}, params: {colums: [v]}}
  t: {component: no_such_thing}
  u: {component: federated_stats, inputs: {data: s.total}}
""")
    with pytest.raises(JobSpecError) as info:
        check_components(spec)
    message = str(info.value)
    assert "tasks.s.params.colums: secure_sum has no parameter 'colums'; did you mean 'columns'?" in message
    assert "unknown component 'no_such_thing'" in message
    assert "task 's' (secure_sum) has no output 'total'; its outputs are: result" in message


def test_unreadable_dataset_file_is_a_clear_error(tmp_path):
    catalog = Catalog.from_mapping({"datasets": {"x": {"path": "missing.csv"}}}, "cat.yaml", tmp_path)
    with pytest.raises(DatasetError, match="missing.csv"):
        catalog.read("x")


@pytest.mark.slow
def test_ctrl_c_cancels_every_party_process_cleanly(tmp_path, faulty_plugin):
    import os
    import signal
    import subprocess
    import sys

    job = tmp_path / "job.yaml"
    job.write_text(FAULTY_JOB.format(timeout=60, fault="hang"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("datasets: {}\n")
    command = [sys.executable, "-m", "sharedml.cli", "run", str(job), "--mode", "processes",
               "--workdir", str(tmp_path / "runs"), *[f"--catalog={p}={catalog}" for p in "ABC"]]
    # SIGINT back to its default: a test suite started in the background (`... &`) inherits it ignored
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)  # parties started and waiting on the hanging culprit
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out.decode()
    assert b"cancelled" in out
    store = JobStore(f"sqlite:///{tmp_path / 'runs' / 'sharedml.db'}")
    (job_record,) = store.jobs()
    assert job_record.state == "cancelled"
    states = {(t.task, t.party): t.state for t in store.tasks(job_record.id)}
    assert states[("first", "B")] == "cancelled"
    # A and C were interrupted too, or heard B's abort notice first: either way nothing is left running
    assert set(states.values()) <= {"cancelled", "failed"} and states[("after", "A")] == "cancelled"
