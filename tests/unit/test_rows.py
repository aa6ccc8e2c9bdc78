"""File spaces: the rows of CSV, JSONL and Parquet files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ttg.errors import SpecError
from ttg.spaces import load_spec_file, space_from_spec
from ttg.spaces.files import FileSpace

N = 20_000  # more than one 8192-row block


def _table(n: int = N) -> pa.Table:
    return pa.table({
        "id": list(range(n)),
        "x": [i / 4 for i in range(n)],
        "name": [f"row-{i}" for i in range(n)],
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rows")
    table = _table()
    pacsv.write_csv(table, d / "rows.csv")
    pq.write_table(table, d / "rows.parquet", row_group_size=5000)
    with (d / "rows.jsonl").open("w") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row) + "\n")
    return {"csv": d / "rows.csv", "jsonl": d / "rows.jsonl", "parquet": d / "rows.parquet"}


def _expected(i: int) -> dict[str, Any]:
    return {"id": i, "x": i / 4, "name": f"row-{i}"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_format_gives_the_same_rows(files: dict[str, Path], fmt: str) -> None:
    space = FileSpace(files[fmt])
    assert space.format == fmt
    assert len(space) == N
    assert space.fields == ["id", "x", "name"]
    rows = list(space.iter_rows())
    assert rows == [_expected(i) for i in range(N)]
    assert space[0] == _expected(0)
    assert space[-1] == _expected(N - 1)
    assert space[8192] == _expected(8192)  # the first row of the second block
    assert space.points(8190, 8195) == [_expected(i) for i in range(8190, 8195)]
    assert space.columns(3, 5) == {"id": [3, 4], "x": [0.75, 1.0], "name": ["row-3", "row-4"]}
    with pytest.raises(IndexError):
        space[N]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("size", [1, 7, 8192, 10_000, 50_000])
def test_batches(files: dict[str, Path], fmt: str, size: int) -> None:
    batches = list(FileSpace(files[fmt]).batches(size))
    assert all(len(b) == size for b in batches[:-1])
    assert 0 < len(batches[-1]) <= size
    assert [r["id"] for b in batches for r in b] == list(range(N))


def test_spec_carries_the_files_sha256_and_round_trips(files: dict[str, Path]) -> None:
    path = files["parquet"]
    space = FileSpace(path)
    spec = space.spec()
    assert spec == {"kind": "file", "path": str(path), "format": "parquet",
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert space_from_spec(spec).spec() == spec
    assert space_from_spec(json.loads(json.dumps(spec))).spec() == spec
    assert space_from_spec(load_spec_file(path)).spec() == spec


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    space = space_from_spec({"kind": "file", "path": str(path), "format": "jsonl"})
    assert list(space.iter_rows()) == [{"a": 1}, {"a": 2}]  # blank lines are skipped
    assert space.spec()["format"] == "jsonl"


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n")
    spec = FileSpace(path).spec()
    path.write_text("a,b\n1,3\n")  # the file changed since the sweep was submitted
    with pytest.raises(SpecError, match=r"'rows\.csv' changed since the sweep was submitted"):
        space_from_spec(spec).spec()
    with pytest.raises(SpecError, match="SHA-256"):
        _ = FileSpace(path, sha256="0" * 64).sha256


def _one_sentence(exc: pytest.ExceptionInfo[SpecError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert message.endswith(".")
    return message


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(SpecError) as info:
        len(FileSpace(path))
    assert "'rows.jsonl' line 2 is not valid JSON" in _one_sentence(info)


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(SpecError) as info:
        list(FileSpace(path).iter_rows())
    assert "'rows.jsonl' line 2 is not a JSON object" in _one_sentence(info)


def test_missing_rows_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        space_from_spec(load_spec_file(tmp_path / "nope.csv"))
    assert "does not exist" in _one_sentence(info)
    assert "space.path" in str(info.value)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "rows.xlsx"
    path.write_text("a\n1\n")
    with pytest.raises(SpecError) as info:
        FileSpace(path)
    assert "cannot tell the format of 'rows.xlsx'" in _one_sentence(info)
    with pytest.raises(SpecError, match=r"space\.format"):
        space_from_spec({"kind": "file", "path": str(path), "format": "xlsx"})


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("bad.csv", b"a,b\n1,2\n3,4,5\n", "'bad.csv' is not valid CSV"),
    ("bad.parquet", b"this is not parquet", "'bad.parquet' is not valid Parquet"),
])
def test_malformed_csv_and_parquet(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        len(FileSpace(path))
    assert expected in _one_sentence(info)


def test_path_must_be_a_string() -> None:
    with pytest.raises(SpecError, match=r"space\.path"):
        space_from_spec({"kind": "file", "path": 3})


def test_empty_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("")
    space = FileSpace(path)
    assert len(space) == 0
    assert space.fields == []
    assert list(space.batches(10)) == []
