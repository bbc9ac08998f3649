"""The example data sets ship inside the package and read as they are, through the API and a catalog."""

from __future__ import annotations

import pytest

import sharedml.datasets as datasets
from sharedml.jobs.catalog import Catalog, DatasetError


def test_every_data_set_has_its_parties_and_rows():
    assert datasets.catalogue()["breast_hetero"] == ("guest", "host")
    assert datasets.catalogue()["default_credit_homo"] == ("guest", "host_1", "host_2", "test")
    guest, host = datasets.load("breast_hetero", "guest"), datasets.load("breast_hetero", "host")
    assert len(guest) == len(host) == 569
    assert {"id", "y"} <= set(guest.columns) and "y" not in host.columns
    assert sorted(datasets.load("breast_homo")) == ["guest", "host", "test"]


def test_unknown_names_get_a_hint():
    with pytest.raises(KeyError, match="did you mean 'breast_hetero'"):
        datasets.path("breast_hetro", "guest")
    with pytest.raises(KeyError, match="its parties: guest, host"):
        datasets.path("breast_hetero", "arbiter")


def test_a_catalog_reads_gzip_csv_by_its_suffix(tmp_path):
    entry = {"path": str(datasets.path("breast_hetero", "guest")), "id_columns": ["id"], "label": "y"}
    catalog = Catalog.from_mapping({"datasets": {"breast": entry}}, "bank", tmp_path)
    catalog.check_columns("breast", "bank")
    assert catalog.read("breast", "bank").equals(datasets.load("breast_hetero", "guest"))
    unknown = {"datasets": {"x": {"path": "table.gz"}}}
    with pytest.raises(DatasetError, match="cannot infer the file format"):
        Catalog.from_mapping(unknown, "bank", tmp_path)
