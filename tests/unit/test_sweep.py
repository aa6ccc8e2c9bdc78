"""Sweeps: content-derived ids, records, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from ttg.core.chunking import Chunk
from ttg.core.sweep import Options, Sweep, derive_id
from ttg.errors import ConfigError, FunctionError, SpecError
from ttg.spaces import GridSpace, RandomSpace, RangeSpace, space_from_spec
from ttg.spaces.files import FileSpace

from .strategies import SPECS

FN = "tests.funcs:square"


def test_same_function_and_space_give_the_same_id() -> None:
    a = Sweep.create(FN, RangeSpace(100), Options())
    b = Sweep.create(FN, space_from_spec({"kind": "range", "stop": 100}), Options(chunk_size=7))
    assert a.id == b.id  # options that do not change results do not change the id
    assert a.id.startswith("square-")
    assert a.same_work(b)


def test_different_space_or_function_gives_another_id() -> None:
    base = Sweep.create(FN, RangeSpace(100), Options())
    others = [
        Sweep.create(FN, RangeSpace(101), Options()),
        Sweep.create(FN, RangeSpace(100, start=1), Options()),
        Sweep.create(FN, RangeSpace(100, name="seed"), Options()),
        Sweep.create("tests.funcs:noop", RangeSpace(100), Options()),
        Sweep.create(FN, RangeSpace(100), Options(batched=True)),
        Sweep.create(FN, GridSpace({"x": list(range(100))}), Options()),
    ]
    ids = {base.id, *(o.id for o in others)}
    assert len(ids) == len(others) + 1
    assert not any(base.same_work(o) for o in others)


def test_grid_axis_order_is_part_of_the_identity() -> None:
    """Swapping two axes changes which point each index is: it must not resume the other sweep
    (it would pair the results of one with the points of the other)."""
    ab = Sweep.create(FN, GridSpace({"a": [1, 2], "b": [3, 4]}), Options())
    ba = Sweep.create(FN, GridSpace({"b": [3, 4], "a": [1, 2]}), Options())
    assert ab.make_space()[1] != ba.make_space()[1]
    assert ab.id != ba.id
    assert not ab.same_work(ba)


def test_random_space_seed_is_part_of_the_identity() -> None:
    params = {"x": {"uniform": [0, 1]}}
    assert (Sweep.create(FN, RandomSpace(10, 1, params), Options()).id
            != Sweep.create(FN, RandomSpace(10, 2, params), Options()).id)


@settings(max_examples=50, deadline=None)
@given(SPECS)
def test_id_is_stable_through_a_json_round_trip(spec: dict[str, object]) -> None:
    space = space_from_spec(spec)
    if len(space) == 0:
        return
    sweep = Sweep.create(FN, space, Options())
    again = Sweep.create(FN, space_from_spec(json.loads(json.dumps(sweep.space))), Options())
    assert again.id == sweep.id
    assert sweep.id == derive_id(FN, sweep.space, False)


def test_name_overrides_the_id() -> None:
    sweep = Sweep.create(FN, RangeSpace(10), Options(), name="my-sweep_v1.2")
    assert sweep.id == "my-sweep_v1.2"


@pytest.mark.parametrize("name", ["", "has space", "slash/y", "x" * 101, "semi;colon", "tab\tname"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        Sweep.create(FN, RangeSpace(10), Options(), name=name)


def test_empty_space_is_refused() -> None:
    for space in (RangeSpace(0), RangeSpace(start=5, stop=5), RandomSpace(0, 1, {"x": {"uniform": [0, 1]}})):
        with pytest.raises(SpecError, match="the space is empty"):
            Sweep.create(FN, space, Options())


def test_bad_function_reference_is_refused() -> None:
    with pytest.raises(FunctionError):
        Sweep.create("no colon here", RangeSpace(10), Options())


def test_record_round_trip() -> None:
    options = Options(chunk_size=50, max_attempts=2, timeout=1.5, priority=3, batched=True,
                      target_chunk_seconds=0.5)
    sweep = Sweep.create(FN, GridSpace({"a": [1, 2], "b": {"linspace": [0, 1, 3]}}), options)
    record = sweep.to_record()
    assert Sweep.from_record(record) == sweep
    assert Sweep.from_record(json.loads(json.dumps(record))) == sweep
    assert record["total"] == 6
    assert record["fields"] == ["a", "b"]
    assert record["options"]["chunk_size"] == 50


def test_file_path_reference_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = Sweep.create("work.py:f", RangeSpace(3), Options())
    assert sweep.function == f"{tmp_path / 'work.py'}:f"
    assert sweep.id.startswith("f-")


def test_file_space_identity_is_its_content(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n2\n")
    (tmp_path / "b.csv").write_text("x\n1\n2\n")
    (tmp_path / "c.csv").write_text("x\n1\n3\n")
    a, b, c = (Sweep.create(FN, FileSpace(tmp_path / n), Options()) for n in ("a.csv", "b.csv", "c.csv"))
    assert a.id == b.id
    assert a.same_work(b)
    assert a.id != c.id
    assert a.is_file


def test_task_bodies() -> None:
    sweep = Sweep.create(FN, RangeSpace(100), Options(chunk_size=10, timeout=2.0))
    body = sweep.task(Chunk(10, 20))
    assert body["sweep"] == sweep.id
    assert (body["start"], body["stop"], body["fn"], body["timeout"]) == (10, 20, FN, 2.0)
    assert body["space"] == sweep.space
    assert body["auto"] is None
    assert "rows" not in body
    auto = Sweep.create(FN, RangeSpace(100), Options(target_chunk_seconds=0.25))
    with_rows = auto.task(Chunk(0, 2), rows=[{"x": 1}, {"x": 2}])
    assert with_rows["rows"] == [{"x": 1}, {"x": 2}]
    assert "space" not in with_rows
    assert with_rows["auto"] == 0.25


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"chunk_size": 0}, "chunk size"),
    ({"max_attempts": 0}, "max attempts"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1.0}, "timeout"),
    ({"target_chunk_seconds": 0}, "target chunk seconds"),
])
def test_bad_options(kwargs: dict[str, float], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Options(**kwargs)  # type: ignore[arg-type]
