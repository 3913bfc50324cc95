"""DatasetCatalog: resolution, safety limits, parsing errors, built-ins, descriptions and load_xy."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mcp_server.datasets import DatasetCatalog, load_xy
from mcp_server.error_handling import (
    InvalidRequestError,
    NotFoundError,
    ResourceLimitError,
)
from mcp_server.settings import Settings
from tests.support import NBA_DATA, needs_nba_data

SMALL_CSV = "a,b,label\n1,x,0\n2,y,1\n3,x,0\n"


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "small.csv").write_text(SMALL_CSV)
    (folder / "sub").mkdir()
    pd.DataFrame({"x": [1.5, 2.5], "y": [0, 1]}).to_parquet(folder / "sub" / "table.parquet")
    return folder


def make_catalog(tmp_path: Path, folder: Path, **limits: int) -> DatasetCatalog:
    return DatasetCatalog(Settings(data_dirs=[folder], data_home=tmp_path / "home", **limits))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("small", (3, 3)),
        ("small.csv", (3, 3)),
        ("sub/table", (2, 2)),
        ("sub/table.parquet", (2, 2)),
        ("iris", (150, 5)),
        ("sklearn:breast_cancer", (569, 31)),
        ("sklearn:wine", (178, 14)),
        ("diabetes", (442, 11)),
    ],
)
def test_load_by_name(tmp_path, data_dir, name, shape):
    frame = make_catalog(tmp_path, data_dir).load(name)
    assert frame.shape == shape
    if name.removeprefix("sklearn:") in {"iris", "breast_cancer", "wine", "diabetes"}:
        assert frame.columns[-1] == "target"


def test_a_file_shadows_a_builtin_of_the_same_plain_name(tmp_path, data_dir):
    (data_dir / "iris.csv").write_text("only,two\n1,2\n")
    catalog = make_catalog(tmp_path, data_dir)
    assert catalog.load("iris").shape == (1, 2)
    assert catalog.load("sklearn:iris").shape == (150, 5)


def test_list_names_files_and_builtins(tmp_path, data_dir):
    infos = {info.name: info for info in make_catalog(tmp_path, data_dir).list()}
    assert infos["small"].source == "file"
    assert infos["small"].path == "small.csv"
    assert infos["small"].size_bytes == len(SMALL_CSV)
    assert infos["sub/table"].format == "parquet"
    assert {"sklearn:iris", "sklearn:breast_cancer", "sklearn:wine", "sklearn:diabetes"} <= set(infos)


def test_loaded_frames_are_cached_by_mtime_and_returned_as_copies(tmp_path, data_dir):
    catalog = make_catalog(tmp_path, data_dir)
    first = catalog.load("small")
    first.loc[0, "a"] = 999
    assert catalog.load("small").loc[0, "a"] == 1  # the cache is not mutated through a copy
    (data_dir / "small.csv").write_text("a,b,label\n7,x,0\n")
    stat = (data_dir / "small.csv").stat()
    os.utime(data_dir / "small.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert catalog.load("small")["a"].tolist() == [7]


@pytest.mark.parametrize("name", ["../secret", "sub/../../secret.csv", "/etc/passwd", "~/x.csv", ""])
def test_names_leaving_the_data_folder_are_refused(tmp_path, data_dir, name):
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with pytest.raises(InvalidRequestError):
        make_catalog(tmp_path, data_dir).load(name)


@pytest.mark.parametrize("target_exists", [True, False])
def test_symlink_out_of_the_folder_is_refused_alike_whether_target_exists(tmp_path, data_dir, target_exists):
    outside = tmp_path / "outside.csv"
    if target_exists:
        outside.write_text("a\n1\n")
    (data_dir / "link.csv").symlink_to(outside)
    catalog = make_catalog(tmp_path, data_dir)
    with pytest.raises(InvalidRequestError) as refused:
        catalog.load("link")
    assert str(outside) not in str(refused.value)
    assert "exist" not in str(refused.value)
    assert "link" not in [info.name for info in catalog.list()]


def test_symlink_inside_the_folder_is_followed(tmp_path, data_dir):
    (data_dir / "alias.csv").symlink_to(data_dir / "small.csv")
    assert make_catalog(tmp_path, data_dir).load("alias").shape == (3, 3)


@pytest.mark.parametrize(
    ("limits", "limit_name"),
    [({"max_data_bytes": 10}, "max_data_bytes=10"), ({"max_data_rows": 2}, "max_data_rows=2")],
)
def test_size_limits(tmp_path, data_dir, limits, limit_name):
    with pytest.raises(ResourceLimitError, match=limit_name):
        make_catalog(tmp_path, data_dir, **limits).load("small")


def test_row_limit_applies_to_parquet_and_builtins(tmp_path, data_dir):
    catalog = make_catalog(tmp_path, data_dir, max_data_rows=1)
    with pytest.raises(ResourceLimitError, match="has 2 rows, above max_data_rows=1"):
        catalog.load("sub/table")
    with pytest.raises(ResourceLimitError, match="max_data_rows=1"):
        catalog.load("iris")


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("broken.csv", b'a,b\n1,2\n3,"4\n', "not a readable CSV"),
        ("empty.csv", b"", "not a readable CSV"),
        ("binary.csv", b"\xff\xfe\x00\x81,\x82\n\x83,\x84\n", "not a readable CSV"),
        ("fake.parquet", b"this is not parquet", "not a readable parquet"),
    ],
)
def test_malformed_files_name_the_file_and_problem(tmp_path, data_dir, file_name, content, problem):
    (data_dir / file_name).write_bytes(content)
    with pytest.raises(InvalidRequestError, match=problem) as error:
        make_catalog(tmp_path, data_dir).load(file_name)
    assert file_name in str(error.value)


@pytest.mark.parametrize("name", ["missing", "sklearn:missing", "sub/none.csv"])
def test_unknown_names_list_available_ones(tmp_path, data_dir, name):
    with pytest.raises(NotFoundError, match="small") if not name.startswith("sklearn:") else pytest.raises(
        NotFoundError, match="sklearn:iris"
    ):
        make_catalog(tmp_path, data_dir).load(name)


def test_resolve_path_returns_the_file_inside_the_folder(tmp_path, data_dir):
    catalog = make_catalog(tmp_path, data_dir)
    assert catalog.resolve_path("sub/table") == (data_dir / "sub" / "table.parquet").resolve()
    with pytest.raises(NotFoundError):
        catalog.resolve_path("iris")  # built-ins have no file


def test_describe_builtin_classification_and_regression(tmp_path, data_dir):
    catalog = make_catalog(tmp_path, data_dir)
    iris = catalog.describe("iris")
    assert iris.target is not None and iris.target.class_counts == {"0": 50, "1": 50, "2": 50}
    diabetes = catalog.describe("sklearn:diabetes")
    assert diabetes.target.task == "regression" and diabetes.target.min == 25.0


def test_describe_frame_columns(tmp_path, data_dir):
    frame = pd.DataFrame({"n": [1.0, None, 3.0, 3.0], "c": ["a", "b", "a", "a"], "y": [0, 1, 0, 0]})
    description = make_catalog(tmp_path, data_dir).describe(frame, target="y", name="toy")
    columns = {c.name: c for c in description.columns}
    assert (columns["n"].missing, columns["n"].min, columns["n"].max, columns["n"].mean) == (1, 1.0, 3.0, 2.33333)
    assert columns["c"].top_values == {"a": 3, "b": 1}
    assert description.duplicate_rows == 1
    assert description.target.class_counts == {"0": 3, "1": 1}
    with pytest.raises(InvalidRequestError, match="valid columns: n, c, y"):
        make_catalog(tmp_path, data_dir).describe(frame, target="nope")


@needs_nba_data
def test_nba_files_read_with_documented_defaults(tmp_path):
    catalog = make_catalog(tmp_path, NBA_DATA)
    seasons = catalog.load("all_seasons")
    assert seasons.shape == (12844, 22)
    assert (seasons["draft_round"] == "Undrafted").sum() == 2411  # kept as strings
    assert seasons["college"].isna().sum() == 1854  # literal "None" read as missing
    rookies = catalog.describe("nba_logreg", target="TARGET_5Yrs")
    assert (rookies.n_rows, rookies.duplicate_rows) == (1340, 12)
    assert rookies.target.class_counts == {"1": 831, "0": 509}
    assert len(rookies.model_dump_json()) < 6000  # compact enough for an LLM


@pytest.mark.parametrize(
    ("kwargs", "columns"),
    [
        ({}, ["a", "b"]),
        ({"features": ["b"]}, ["b"]),
        ({"drop": ["a"]}, ["b"]),
    ],
)
def test_load_xy_selects_columns(kwargs, columns):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "label": [0, None, 1]})
    X, y = load_xy(frame, "label", **kwargs)
    assert list(X.columns) == columns
    assert y.tolist() == [0, 1]  # the unlabelled row is dropped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "nope"}, "valid columns: a, label"),
        ({"target": "label", "features": ["a", "zz"]}, "'zz'"),
        ({"target": "label", "features": ["label"]}, "must not include the target"),
        ({"target": "label", "drop": ["zz"]}, "drop names unknown"),
        ({"target": "label", "drop": ["a"]}, "no feature columns left"),
    ],
)
def test_load_xy_refuses_bad_columns(kwargs, message):
    frame = pd.DataFrame({"a": [1, 2], "label": [0, 1]})
    with pytest.raises(InvalidRequestError, match=message):
        load_xy(frame, **kwargs)


def test_describe_is_bounded_for_wide_frames_and_many_classes(tmp_path, data_dir):
    wide = pd.DataFrame({f"c{i}": range(30) for i in range(120)}).assign(label=[f"k{i}" for i in range(30)])
    description = make_catalog(tmp_path, data_dir).describe(wide, target="label")
    assert len(description.columns) == 101 and description.columns[-1].name == "label"
    assert description.omitted_columns == 20
    assert (description.target.n_classes, len(description.target.class_counts)) == (30, 20)
