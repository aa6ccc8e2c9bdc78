"""Space specs from CLI flags: --range, --grid, --param."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.errors import SpecError
from ttg.spaces import space_from_spec
from ttg.spaces.flags import grid_axis, parse_range, random_param, scalar


@pytest.mark.parametrize(("text", "spec"), [
    ("10", {"kind": "range", "start": 0, "stop": 10, "step": 1, "name": "x"}),
    ("5:15", {"kind": "range", "start": 5, "stop": 15, "step": 1, "name": "x"}),
    ("0:100:7", {"kind": "range", "start": 0, "stop": 100, "step": 7, "name": "x"}),
    ("10:0:-2", {"kind": "range", "start": 10, "stop": 0, "step": -2, "name": "x"}),
    ("-3:3", {"kind": "range", "start": -3, "stop": 3, "step": 1, "name": "x"}),
])
def test_parse_range(text: str, spec: dict[str, Any]) -> None:
    assert parse_range(text) == spec
    assert space_from_spec(spec).spec() == spec


@settings(max_examples=50, deadline=None)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-50, 50).filter(bool))
def test_parse_range_agrees_with_python(start: int, stop: int, step: int) -> None:
    space = space_from_spec(parse_range(f"{start}:{stop}:{step}"))
    assert list(space.points(0, len(space))) == list(range(start, stop, step))


@pytest.mark.parametrize("text", ["", "ten", "1.5", "1:2:3:4", "1::2", "0x10", "1:2:x"])
def test_parse_range_errors(text: str) -> None:
    with pytest.raises(SpecError, match="--range") as info:
        parse_range(text)
    assert "START:STOP" in str(info.value)


def test_range_step_zero_is_caught_by_the_space() -> None:
    with pytest.raises(SpecError, match=r"space\.step"):
        space_from_spec(parse_range("0:10:0"))


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("-7", -7), ("0.5", 0.5), ("1e-3", 0.001), ("true", True), ("False", False),
    ("TRUE", True), ("adam", "adam"), ("", ""), ("1.2.3", "1.2.3"), ("x=1", "x=1"),
])
def test_scalar(text: str, value: Any) -> None:
    got = scalar(text)
    assert got == value
    assert type(got) is type(value)


@settings(max_examples=50, deadline=None)
@given(st.integers() | st.floats(allow_nan=False))
def test_scalar_round_trips_numbers(v: float) -> None:
    assert scalar(repr(v)) == v


@pytest.mark.parametrize(("item", "expected"), [
    ("x=1,2,3", ("x", [1, 2, 3])),
    ("opt=adam,sgd", ("opt", ["adam", "sgd"])),
    ("mixed=1,0.5,true,a", ("mixed", [1, 0.5, True, "a"])),
    ("one=7", ("one", [7])),
    (" y =1", ("y", [1])),
    ("vol=linspace:0.1:0.5:9", ("vol", {"linspace": [0.1, 0.5, 9]})),
    ("lr=logspace:-5:-1:5", ("lr", {"logspace": [-5, -1, 5]})),
    ("n=range:0:10", ("n", {"range": [0, 10, 1]})),
    ("n=range:10:0:-2", ("n", {"range": [10, 0, -2]})),
])
def test_grid_axis(item: str, expected: tuple[str, Any]) -> None:
    assert grid_axis(item) == expected
    name, axis = expected
    assert len(space_from_spec({"kind": "grid", "axes": {name: axis}})) >= 1


@pytest.mark.parametrize("item", [
    "x", "=1,2", "x=", "  =1", "x=linspace:0:1", "x=linspace:0:1:5:6", "x=linspace:a:1:5",
    "x=logspace:0", "x=range:0", "x=range:0:a",
])
def test_grid_axis_errors(item: str) -> None:
    with pytest.raises(SpecError, match="--grid") as info:
        grid_axis(item)
    assert repr(item) in str(info.value)


def test_grid_axis_bad_numbers_are_caught_by_the_space() -> None:
    name, axis = grid_axis("x=linspace:0:1:2.5")
    with pytest.raises(SpecError, match=r"space\.axes\.x\.linspace"):
        space_from_spec({"kind": "grid", "axes": {name: axis}})


@pytest.mark.parametrize(("item", "expected"), [
    ("x=uniform:0:1", ("x", {"uniform": [0, 1]})),
    ("lr=loguniform:1e-5:0.1", ("lr", {"loguniform": [1e-5, 0.1]})),
    ("z=normal:0:2.5", ("z", {"normal": [0, 2.5]})),
    ("depth=integers:2:12", ("depth", {"integers": [2, 12]})),
    ("opt=choice:adam,sgd,3", ("opt", {"choice": ["adam", "sgd", 3]})),
    (" x =uniform:0:1", ("x", {"uniform": [0, 1]})),
])
def test_random_param(item: str, expected: tuple[str, Any]) -> None:
    assert random_param(item) == expected
    name, dist = expected
    space = space_from_spec({"kind": "random", "n": 3, "seed": 0, "params": {name: dist}})
    assert len(space.points(0, 3)) == 3


@pytest.mark.parametrize("item", ["x", "x=", "=uniform:0:1", "x=uniform", "x=uniform:", "x=:0:1"])
def test_random_param_errors(item: str) -> None:
    with pytest.raises(SpecError, match="--param") as info:
        random_param(item)
    assert "NAME=DIST:ARGS" in str(info.value)


@pytest.mark.parametrize(("item", "field"), [
    ("x=gauss:0:1", "space.params.x"),
    ("x=uniform:1:0", "space.params.x.uniform"),
    ("x=uniform:0:1:2", "space.params.x.uniform"),
    ("x=integers:0:2.5", "space.params.x.integers"),
    ("x=uniform:a:b", "space.params.x.uniform"),
])
def test_random_param_bad_values_are_caught_by_the_space(item: str, field: str) -> None:
    name, dist = random_param(item)
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        space_from_spec({"kind": "random", "n": 3, "seed": 0, "params": {name: dist}})
