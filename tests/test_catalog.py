"""Local dataset catalog: loading, reading CSV/Parquet/SQL, clear errors, atomic table writes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from sharedml import datasets
from sharedml.jobs.artifacts import write_table_atomic
from sharedml.jobs.catalog import Catalog, DatasetEntry, DatasetError, read_table

SHARED_DATA = datasets.folder()

FRAME = pd.DataFrame({"id": [1, 2, 3], "y": [0, 1, 0], "x0": [0.5, -1.25, 2.0]})


def write_catalog(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.yaml"
    path.write_text(text)
    return path


def catalog_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(DatasetError) as info:
        Catalog.load(write_catalog(tmp_path, text))
    return str(info.value)


def test_read_csv_relative_to_catalog_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    FRAME.to_csv(tmp_path / "data" / "x.csv", index=False)
    catalog = Catalog.load(write_catalog(tmp_path / "conf", "datasets:\n  x: {path: ../data/x.csv}\n"))
    assert catalog.names() == ["x"]
    assert "x" in catalog and "y" not in catalog
    pd.testing.assert_frame_equal(catalog.read("x"), FRAME)


def test_read_parquet_inferred_and_explicit_format(tmp_path: Path) -> None:
    FRAME.to_parquet(tmp_path / "x.parquet")
    FRAME.to_parquet(tmp_path / "x.pq")
    FRAME.to_parquet(tmp_path / "x.bin")
    text = """\
datasets:
  a: {path: x.parquet, description: inferred}
  b: {path: x.pq}
  c: {path: x.bin, format: parquet}
"""
    catalog = Catalog.load(write_catalog(tmp_path, text))
    assert catalog.entries["a"].file_format == "parquet"
    for name in ("a", "b", "c"):
        pd.testing.assert_frame_equal(catalog.read(name), FRAME)


def test_read_sql_relative_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "credit.db") as connection:
        FRAME.to_sql("credit", connection, index=False)
    connection.close()
    text = """\
datasets:
  credit_sql: {url: "sqlite:///data/credit.db", query: "SELECT * FROM credit WHERE y = 0 ORDER BY id"}
"""
    catalog = Catalog.load(write_catalog(tmp_path, text))
    frame = catalog.read("credit_sql")
    assert frame["id"].tolist() == [1, 3]
    assert frame.columns.tolist() == ["id", "y", "x0"]


def test_failing_query_names_dataset_and_url(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    catalog = Catalog.from_mapping(
        {"datasets": {"q": {"url": url, "query": "SELECT * FROM missing"}}}, "inline", tmp_path
    )
    with pytest.raises(DatasetError) as info:
        catalog.read("q")
    message = str(info.value)
    assert "dataset 'q'" in message and url in message and "no such table" in message


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    catalog = Catalog.from_mapping(
        {"datasets": {"q": {"url": "sqlite:///gone.db", "query": "SELECT 1"}}}, "inline", tmp_path
    )
    with pytest.raises(DatasetError, match="database file not found: .*gone.db"):
        catalog.read("q")
    assert not (tmp_path / "gone.db").exists()


def test_unknown_dataset_lists_catalog(tmp_path: Path) -> None:
    text = "datasets:\n  b: {path: b.csv}\n  a: {path: a.csv}\n  c: {path: c.csv}\n"
    path = write_catalog(tmp_path, text)
    catalog = Catalog.load(path)
    with pytest.raises(DatasetError) as info:
        catalog.read("x")
    assert str(info.value) == f"dataset 'x' is not in catalog {path}; it holds: b, a, c"


def test_missing_file_names_dataset_and_resolved_path(tmp_path: Path) -> None:
    catalog = Catalog.load(write_catalog(tmp_path, "datasets:\n  gone: {path: sub/gone.csv}\n"))
    with pytest.raises(DatasetError) as info:
        catalog.read("gone")
    assert str(info.value) == f"dataset 'gone': file not found: {tmp_path / 'sub' / 'gone.csv'}"


def test_malformed_files_name_dataset_and_path(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_text("not parquet at all")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    catalog = Catalog.load(
        write_catalog(tmp_path, "datasets:\n  p: {path: bad.parquet}\n  c: {path: bad.csv}\n")
    )
    for name, filename in (("p", "bad.parquet"), ("c", "bad.csv")):
        with pytest.raises(DatasetError) as info:
            catalog.read(name)
        assert f"dataset '{name}'" in str(info.value)
        assert str(tmp_path / filename) in str(info.value)


def test_catalog_typo_with_line_and_allowed_fields(tmp_path: Path) -> None:
    message = catalog_error(tmp_path, "datasets:\n  a: {path: a.csv}\n  b:\n    pth: b.csv\n")
    assert f"{tmp_path / 'catalog.yaml'}, line 4, datasets.b.pth: Extra inputs are not permitted" in message
    assert "did you mean 'path'?" in message
    assert "allowed fields: id_columns, label, positive_class, categorical, exclude, dtypes, path, format" in message


def test_catalog_entry_rules_with_lines(tmp_path: Path) -> None:
    text = """\
datasets:
  both: {path: a.csv, url: "sqlite:///a.db", query: "SELECT 1"}
  neither: {description: nothing}
  no_query: {url: "sqlite:///a.db"}
  unknown_suffix: {path: a.txt}
  bad_format: {path: a.txt, format: excel}
"""
    lines = catalog_error(tmp_path, text).splitlines()
    assert len(lines) == 5
    assert "line 2, datasets.both: give exactly one of 'path'" in lines[0]
    assert "line 3, datasets.neither: give exactly one of 'path'" in lines[1]
    assert "line 4, datasets.no_query.url: a 'url' dataset needs a 'query'" in lines[2]
    assert "line 5, datasets.unknown_suffix.path: cannot infer the file format" in lines[3]
    assert "line 6, datasets.bad_format.format: Input should be 'csv', 'parquet' or 'model'" in lines[4]


def test_catalog_yaml_syntax_error_with_line(tmp_path: Path) -> None:
    message = catalog_error(tmp_path, "datasets:\n  a: {path: a.csv}\n  b: [unclosed\n")
    assert message.startswith(f"{tmp_path / 'catalog.yaml'}, line 4: invalid YAML")


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.yaml: file not found"):
        Catalog.load(tmp_path / "nope.yaml")


def test_from_mapping_validates_without_lines(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"^inline, datasets\.a\.format: Input should be"):
        Catalog.from_mapping({"datasets": {"a": {"path": "a.csv", "format": "xls"}}}, "inline", tmp_path)


def test_entry_requires_one_source() -> None:
    assert DatasetEntry(path="x.csv").file_format == "csv"
    with pytest.raises(ValueError, match="exactly one"):
        DatasetEntry()


def test_write_table_atomic_round_trip_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.parquet"
    write_table_atomic(FRAME, target)
    write_table_atomic(FRAME.iloc[:2], target)  # replacing an existing file
    assert [p.name for p in target.parent.iterdir()] == ["table.parquet"]
    pd.testing.assert_frame_equal(read_table(target), FRAME.iloc[:2])


def test_write_table_atomic_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    write_table_atomic(FRAME, target)
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's exact error type is not the point
        write_table_atomic(pd.DataFrame({"mixed": [1, "a"]}), target)
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
    pd.testing.assert_frame_equal(read_table(target), FRAME)


def test_read_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        read_table(tmp_path / "none.parquet")


def test_read_real_shared_csv(tmp_path: Path) -> None:
    catalog_dir = tmp_path / "party" / "conf"
    relative = Path(os.path.relpath(SHARED_DATA / "breast_homo_guest.csv.gz", catalog_dir))
    assert not relative.is_absolute()
    catalog = Catalog.load(
        write_catalog(catalog_dir, f"datasets:\n  breast: {{path: {relative.as_posix()}}}\n")
    )
    assert catalog.resolve_path("breast").resolve() == (SHARED_DATA / "breast_homo_guest.csv.gz").resolve()
    frame = catalog.read("breast")
    assert frame.shape == (227, 32)
    assert frame.columns[:3].tolist() == ["id", "y", "x0"]
    assert set(frame["y"].unique()) <= {0, 1}


def test_a_model_entry_reads_a_saved_model_part_and_takes_no_contract(tmp_path):
    from sharedml.net.serialization import dumps_bytes

    (tmp_path / "part.msgpack").write_bytes(dumps_bytes({"role": "host", "coef": [1.0, 2.0]}))
    catalog = Catalog.from_mapping({"datasets": {"m": {"path": "part.msgpack"}}}, "bank", tmp_path)
    assert catalog.read("m", "bank") == {"role": "host", "coef": [1.0, 2.0]}
    with pytest.raises(DatasetError, match="a model entry takes no data contract"):
        Catalog.from_mapping({"datasets": {"m": {"path": "part.msgpack", "label": "y"}}}, "bank", tmp_path)
    (tmp_path / "bad.msgpack").write_bytes(b"\xc1 not msgpack")
    bad = Catalog.from_mapping({"datasets": {"m": {"path": "bad.msgpack"}}}, "bank", tmp_path)
    with pytest.raises(DatasetError, match="party 'bank', model 'm'.*not a saved model part"):
        bad.read("m", "bank")
