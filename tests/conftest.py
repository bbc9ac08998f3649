"""Shared fixtures: the example data (shipped in the package), and the test-only component plugins."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sharedml import datasets

TESTS = Path(__file__).resolve().parent
DATA = datasets.folder()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures logging for its process (`logging.basicConfig(force=True)`, `--debug`); in a test that
    process is pytest's, and a handler left on a closed test stream would break later tests' log records."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def faulty_plugin(monkeypatch):
    """Register tests/plugins/faulty.py here and in any party process started by the test."""
    monkeypatch.setenv("SHAREDML_COMPONENT_MODULES", "plugins.faulty")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(TESTS))
    import plugins.faulty  # noqa: F401  (registers the component in this process)


@pytest.fixture(scope="session")
def paillier_keys():
    """One 1024-bit Paillier key pair for the whole session (keygen and tables cost seconds)."""
    from sharedml.crypto import paillier

    with pytest.warns(UserWarning, match="for tests only"):
        return paillier.generate_keypair(1024)


@pytest.fixture(scope="session")
def pk(paillier_keys):
    return paillier_keys[0]


@pytest.fixture(scope="session")
def sk(paillier_keys):
    return paillier_keys[1]


@pytest.fixture
def write_catalogs(tmp_path):
    """`write_catalogs({party: table})`: each party gets a folder with its table as CSV and a catalog
    naming it "clients"; returns {party: Catalog}."""
    from sharedml.jobs.catalog import Catalog

    def write(frames: dict, dataset: str = "clients") -> dict:
        catalogs = {}
        for party, frame in frames.items():
            folder = tmp_path / party
            folder.mkdir(parents=True)
            frame.to_csv(folder / f"{dataset}.csv", index=False)
            catalogs[party] = Catalog.from_mapping({"datasets": {dataset: {"path": f"{dataset}.csv"}}}, party,
                                                   folder)
        return catalogs
    return write


@pytest.fixture
def run_breast_homo_job(tmp_path, data_dir):
    """`run_breast_homo_job(job_yaml)`: a data-less aggregator `hub` and clients `bank` and `shop` holding
    breast_homo's two training files (alias `train`) and its test file (`test`); returns the JobResult."""
    import pandas as pd

    from sharedml.jobs.catalog import Catalog
    from sharedml.jobs.runner import LocalRunner
    from sharedml.jobs.spec import parse_job

    def run(job: str, **options):
        test = pd.read_csv(data_dir / "breast_homo_test.csv.gz")
        catalogs = {"hub": Catalog.from_mapping({"datasets": {}}, "hub", tmp_path)}
        for party, name in (("bank", "guest"), ("shop", "host")):
            folder = tmp_path / party
            folder.mkdir(exist_ok=True)
            pd.read_csv(data_dir / f"breast_homo_{name}.csv.gz").to_csv(folder / "train.csv", index=False)
            test.to_csv(folder / "test.csv", index=False)
            catalogs[party] = Catalog.from_mapping({"datasets": {"train": {"path": "train.csv"},
                                                                 "test": {"path": "test.csv"}}}, party, folder)
        return LocalRunner(tmp_path / "runs").run(parse_job(job), catalogs, **options)
    return run
