"""Every result kind the README allows exports to every format, and a failed
export leaves no file behind (client/table.py)."""

from __future__ import annotations

import csv
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.client.table import Table, json_text
from ttg.core.codec import pack, unpack
from ttg.core.records import ChunkRecords
from ttg.core.sweep import Options, Sweep
from ttg.errors import StoreUnavailable
from ttg.spaces import GridSpace, RangeSpace
from ttg.stores.sqlite import SqliteStore
from ttg.testing import FaultyStore
from ttg.worker.compute import make_storable

from .test_codec import KEYS

FORMATS = [".parquet", ".csv", ".jsonl"]
#: what a function may return (README, "The function"), nested in any way
RESULTS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: (st.lists(inner, max_size=3) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                   | st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=12,
)


def _reject(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def export(values: list[Any], fmt: str, directory: Path, store_class: type = SqliteStore) -> Path:
    """Commit ``values`` as the results of a range sweep (as a worker would, in chunks
    of 4) and export them; returns the file."""
    store = store_class(SqliteStore(directory / "results.db")) if store_class is not SqliteStore \
        else SqliteStore(directory / "results.db")
    sweep = Sweep.create("tests.funcs:square", RangeSpace(len(values)), Options(chunk_size=4))
    store.register(sweep)
    for a in range(0, len(values), 4):
        part = values[a:a + 4]
        rec = ChunkRecords(a, a + len(part), list(part), [1000] * len(part), "w", 1)
        make_storable(rec)
        assert store.commit(sweep.id, rec)
    out = directory / f"results{fmt}"
    try:
        assert Table(store, sweep).write(out) == len(values)
    finally:
        store.close()
    return out


def read_back(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line, parse_constant=_reject) for line in lines]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None)
@given(values=st.lists(RESULTS, min_size=1, max_size=12))
def test_any_result_exports_to_every_format(fmt: str, values: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        rows = read_back(export(values, fmt, Path(d)))
        assert [int(r["index"]) for r in rows] == list(range(len(values)))
        assert not list(Path(d).glob("*.partial"))
        if fmt == ".jsonl":  # each value that is not a dict exactly as stored, in JSON's terms
            stored = [unpack(pack(v)) for v in values]
            pairs = [(r.get("value"), v) for r, v in zip(rows, stored, strict=True)
                     if not isinstance(v, dict)]
            assert [got for got, _ in pairs] == [json.loads(json_text(v)) for _, v in pairs]


@pytest.mark.parametrize("fmt", FORMATS)
def test_lists_arrays_and_bytes_export(fmt: str, tmp_path: Path) -> None:
    values = [[1, 2], np.array([0.5, 1.5]), b"\x00\xff", [{(1, 2): 3}], float("nan"), np.int64(7), {1, 2}]
    rows = read_back(export(values, fmt, tmp_path))
    got = [r["value"] for r in rows]
    if fmt == ".jsonl":  # JSON: lists, bytes as \x hex, tuple keys as their JSON text, NaN as null
        assert got == [[1, 2], [0.5, 1.5], "\\x00ff", [{"[1,2]": 3}], None, 7, [1, 2]]
    elif fmt == ".csv":  # text: nested values as JSON, bytes as \x hex
        assert got[:3] == ["[1,2]", "[0.5,1.5]", "\\x00ff"] and got[3] == '[{"[1,2]":3}]'
        assert got[5] == "7"
    else:  # parquet keeps what Arrow can hold, and JSON text for a column it cannot
        assert got[0] == "[1,2]" and got[2] == "\\x00ff" and got[5] == "7"


def test_jsonl_holds_no_bare_nan_or_infinity(tmp_path: Path) -> None:
    rows = read_back(export([float("nan"), float("inf"), -float("inf"), 1.0], ".jsonl", tmp_path))
    assert [r["value"] for r in rows] == [None, None, None, 1.0]
    assert not any(isinstance(r["value"], float) and not math.isfinite(r["value"]) for r in rows)


class _BreaksMidway(FaultyStore):
    """A store whose reading fails after the first chunk (a connection lost mid-export)."""

    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        for k, rec in enumerate(self.inner.chunks(sweep_id, failed_only=failed_only)):
            if k == 1 and getattr(self, "armed", False):
                raise StoreUnavailable("the store went away")
            yield rec

    def schema_done(self) -> None:
        self.armed = True


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_leaves_no_file(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _BreaksMidway(SqliteStore(tmp_path / "results.db"))
    sweep = Sweep.create("tests.funcs:square", RangeSpace(8), Options(chunk_size=4))
    store.register(sweep)
    for a in (0, 4):
        assert store.commit(sweep.id, ChunkRecords(a, a + 4, [1] * 4, [0] * 4, "w", 1))
    table = Table(store, sweep)
    real_schema = table.schema
    monkeypatch.setattr(table, "schema", lambda: (real_schema(), store.schema_done())[0])
    store.armed = fmt == ".jsonl"  # (JSONL needs no schema pass)
    out = tmp_path / f"out{fmt}"
    with pytest.raises(StoreUnavailable):
        table.write(out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_a_column_mixing_kinds_keeps_each_value_where_the_format_can(tmp_path: Path) -> None:
    """``--grid m=sqrt,log2,0.5``: the function gets 0.5 as a number; JSONL and
    to_pandas keep it one, Parquet (one type per column) holds text."""
    store = SqliteStore(tmp_path / "results.db")
    sweep = Sweep.create("tests.funcs:square", GridSpace({"m": ["sqrt", "log2", 0.5]}), Options(chunk_size=2))
    store.register(sweep)
    for a in (0, 2):
        stop = min(a + 2, 3)
        assert store.commit(sweep.id, ChunkRecords(a, stop, [1] * (stop - a), [0] * (stop - a), "w", 1))
    table = Table(store, sweep)
    assert list(table.to_pandas()["m"]) == ["sqrt", "log2", 0.5]
    table.write(tmp_path / "r.jsonl")
    assert [r["m"] for r in read_back(tmp_path / "r.jsonl")] == ["sqrt", "log2", 0.5]
    table.write(tmp_path / "r.parquet")
    assert [r["m"] for r in read_back(tmp_path / "r.parquet")] == ["sqrt", "log2", "0.5"]
    store.close()
