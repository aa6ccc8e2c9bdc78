"""Generated spaces (range, grid, random): indexing, canonical specs, determinism, errors."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.errors import SpecError
from ttg.spaces import GridSpace, RandomSpace, RangeSpace, Space, load_spec_file, space_from_spec
from ttg.spaces.generated import _mix, _name_key

from .strategies import (
    EXACT_GRID_SPECS,
    GRID_SPECS,
    INT64,
    RANDOM_SPECS,
    SMALL_RANGE_SPECS,
    SPECS,
    loguniform_dists,
    to_toml,
    uniform_dists,
)

FAST = settings(max_examples=50, deadline=None)
M64 = (1 << 64) - 1


def freeze(point: Any) -> Any:
    return tuple(point.values()) if isinstance(point, dict) else point


def check_indexing(space: Space) -> list[Any]:
    """Every index maps to exactly one point, whichever way it is asked for."""
    n = len(space)
    pts = [space[i] for i in range(n)]
    assert pts == [space[i] for i in range(n)]
    assert pts == list(space.points(0, n))
    if n:
        assert space[-1] == pts[-1]
        assert space[-n] == pts[0]
        cols = space.columns(0, n)
        assert list(cols) == space.fields
        if isinstance(space, RangeSpace):
            assert cols[space.name] == pts
        else:
            assert [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)] == pts
    for bad in (n, n + 1, -n - 1):
        with pytest.raises(IndexError):
            space[bad]
    return pts


# -- every kind ---------------------------------------------------------------------------


@FAST
@given(SMALL_RANGE_SPECS)
def test_range_indices_map_to_points(spec: dict[str, Any]) -> None:
    space = space_from_spec(spec)
    pts = check_indexing(space)
    assert pts == list(range(spec["start"], spec["stop"], spec["step"]))
    assert all(type(p) is int for p in pts)
    assert space.fields == [spec["name"]]


@FAST
@given(GRID_SPECS)
def test_grid_indices_map_to_distinct_points(spec: dict[str, Any]) -> None:
    space = space_from_spec(spec)
    pts = check_indexing(space)
    assert len(pts) == math.prod(len(_expected_axis(a)) for a in spec["axes"].values())
    assert len({freeze(p) for p in pts}) == len(pts)
    assert all(list(p) == list(spec["axes"]) for p in pts)


@FAST
@given(RANDOM_SPECS)
def test_random_indices_map_to_points(spec: dict[str, Any]) -> None:
    space = space_from_spec(spec)
    check_indexing(space)
    assert len(space) == spec["n"]
    assert space.fields == list(spec["params"])


@FAST
@given(SPECS)
def test_canonical_specs_round_trip(spec: dict[str, Any]) -> None:
    canonical = space_from_spec(spec).spec()
    assert canonical == spec  # the strategies generate canonical specs
    assert space_from_spec(canonical).spec() == canonical
    assert space_from_spec(json.loads(json.dumps(canonical))).spec() == canonical
    assert space_from_spec(yaml.safe_load(yaml.safe_dump(canonical))).spec() == canonical
    assert space_from_spec(tomllib.loads(to_toml(canonical))).spec() == canonical


@FAST
@given(SPECS)
def test_rebuilt_space_has_the_same_points(spec: dict[str, Any]) -> None:
    a = space_from_spec(spec)
    b = space_from_spec(json.loads(json.dumps(a.spec())))
    n = min(len(a), 30)
    assert list(a.points(0, n)) == list(b.points(0, n))


def test_specs_with_tuples_and_mapping_arguments_are_canonicalized() -> None:
    space = GridSpace({"a": (1, 2), "b": {"linspace": {"start": 0, "stop": 1, "num": 3}},
                       "c": {"range": (0, 4, 2)}})
    assert space.spec() == {"kind": "grid", "axes": {"a": [1, 2], "b": {"linspace": [0, 1, 3]},
                                                    "c": {"range": [0, 4, 2]}}}
    assert len(space) == 12
    assert space_from_spec({"kind": "range", "stop": 5}).spec() == {
        "kind": "range", "start": 0, "stop": 5, "step": 1, "name": "x"}
    assert space_from_spec({"kind": "random", "n": 2, "params": {"x": {"uniform": (0, 1)}}}).spec() == {
        "kind": "random", "n": 2, "seed": 0, "params": {"x": {"uniform": [0, 1]}}}
    assert repr(RangeSpace(3)) == ('RangeSpace({"kind": "range", "start": 0, "stop": 3, "step": 1, '
                                   '"name": "x"})')


# -- grids --------------------------------------------------------------------------------


def _expected_axis(axis: Any) -> list[Any]:
    if isinstance(axis, list):
        return axis
    ((gen, args),) = axis.items()
    if gen == "range":
        return list(range(*args))
    return (np.linspace(*args) if gen == "linspace" else np.logspace(*args)).tolist()


@FAST
@given(EXACT_GRID_SPECS)
def test_grid_order_is_itertools_product(spec: dict[str, Any]) -> None:
    space = space_from_spec(spec)
    names = list(spec["axes"])
    expected = [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(_expected_axis(a) for a in spec["axes"].values()))]
    assert list(space.points(0, len(space))) == expected


def test_grid_last_axis_varies_fastest() -> None:
    space = GridSpace({"a": [1, 2], "b": ["x", "y", "z"]})
    assert [tuple(p.values()) for p in space.points(0, 6)] == [
        (1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]


@FAST
@given(st.one_of(st.integers(-100, 100), st.floats(-1e6, 1e6)), st.floats(-1e6, 1e6),
       st.integers(1, 200))
def test_linspace_matches_numpy(start: float, stop: float, num: int) -> None:
    space = GridSpace({"v": {"linspace": [start, stop, num]}})
    got = [p["v"] for p in space.points(0, num)]
    want = np.linspace(start, stop, num).tolist()
    scale = max(abs(start), abs(stop), 1e-300)
    for g, w in zip(got, want, strict=True):
        assert type(g) is float
        assert math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-12 * scale)
    assert got[0] == start
    if num > 1:
        assert got[-1] == stop


@FAST
@given(st.floats(-300, 300), st.floats(-300, 300), st.integers(1, 100))
def test_logspace_matches_numpy(start: float, stop: float, num: int) -> None:
    space = GridSpace({"v": {"logspace": [start, stop, num]}})
    got = [p["v"] for p in space.points(0, num)]
    want = np.logspace(start, stop, num).tolist()
    for g, w in zip(got, want, strict=True):
        assert g > 0
        assert math.isclose(g, w, rel_tol=1e-12)


def test_range_axis_and_mixed_axes() -> None:
    space = GridSpace({"n": {"range": [10, 0, -3]}, "lr": {"logspace": [-3, -1, 3]}})
    assert len(space) == 4 * 3
    assert space[0] == {"n": 10, "lr": pytest.approx(1e-3)}
    assert space[11] == {"n": 1, "lr": pytest.approx(0.1)}
    assert [p["n"] for p in space.points(0, 12)][::3] == [10, 7, 4, 1]


# -- random spaces ------------------------------------------------------------------------

DETERMINISM_SPECS = [
    {"kind": "random", "n": 10**8, "seed": 7, "params": {
        "u": {"uniform": [-2.5, 4]}, "lu": {"loguniform": [1e-5, 1e-1]}, "z": {"normal": [3, 0.5]},
        "k": {"integers": [2, 12]}, "c": {"choice": ["adam", "sgd", 3, None]}}},
    {"kind": "random", "n": 1000, "seed": 2**63 - 1, "params": {"x": {"uniform": [0, 1]}}},
    {"kind": "random", "n": 1000, "seed": -5, "params": {"x": {"normal": [0, 1]}}},
]
DETERMINISM_INDICES = [0, 1, 2, 17, 999, 12345, 10**8 - 1]

_CHILD = """
import json, sys
from ttg.spaces import space_from_spec
specs, indices = json.load(sys.stdin)
out = []
for spec in specs:
    s = space_from_spec(spec)
    out.append([s[i] for i in indices if i < len(s)])
json.dump(out, sys.stdout)
"""


def test_random_points_are_the_same_in_a_fresh_process() -> None:
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(
        [DETERMINISM_SPECS, DETERMINISM_INDICES]), capture_output=True, text=True, check=True,
        timeout=60)
    theirs = json.loads(proc.stdout)
    for spec, their_points in zip(DETERMINISM_SPECS, theirs, strict=True):
        s = space_from_spec(spec)
        # drawn in reverse order in this process, in order in the other one
        ours = [s[i] for i in reversed(DETERMINISM_INDICES) if i < len(s)][::-1]
        assert ours == their_points


@FAST
@given(RANDOM_SPECS.filter(lambda s: s["n"] > 0), st.randoms(use_true_random=False))
def test_random_point_does_not_depend_on_draw_order(spec: dict[str, Any], rnd: random.Random) -> None:
    a, b = space_from_spec(spec), space_from_spec(spec)
    order = list(range(len(a)))
    rnd.shuffle(order)
    shuffled = {i: b[i] for i in order}
    assert [shuffled[i] for i in range(len(a))] == list(a.points(0, len(a)))
    assert a[len(a) - 1] == b[-1]


@FAST
@given(INT64, INT64)
def test_different_seeds_give_different_points(s1: int, s2: int) -> None:
    params = {"x": {"uniform": [0, 1]}, "y": {"normal": [0, 1]}}
    a, b = RandomSpace(8, s1, params), RandomSpace(8, s2, params)
    if s1 == s2:
        assert list(a.points(0, 8)) == list(b.points(0, 8))
    else:
        assert list(a.points(0, 8)) != list(b.points(0, 8))


def test_parameters_are_independent_of_each_other() -> None:
    one = RandomSpace(50, 3, {"x": {"uniform": [0, 1]}})
    two = RandomSpace(50, 3, {"y": {"normal": [0, 1]}, "x": {"uniform": [0, 1]}})
    assert [p["x"] for p in one.points(0, 50)] == [p["x"] for p in two.points(0, 50)]
    xs = [p["x"] for p in one.points(0, 50)]
    renamed = RandomSpace(50, 3, {"z": {"uniform": [0, 1]}})
    assert xs != [p["z"] for p in renamed.points(0, 50)]


@FAST
@given(st.data(), st.integers(1, 20), INT64)
def test_distributions_respect_their_bounds(data: st.DataObject, n: int, seed: int) -> None:
    uni = data.draw(uniform_dists())
    logu = data.draw(loguniform_dists())
    lo_i = data.draw(st.integers(-(10**9), 10**9))
    hi_i = lo_i + data.draw(st.integers(1, 10**9))
    choices = data.draw(st.lists(st.integers() | st.text(max_size=3), min_size=1, max_size=6))
    space = RandomSpace(n, seed, {"u": uni, "lu": logu, "k": {"integers": [lo_i, hi_i]},
                                  "c": {"choice": choices}, "z": {"normal": [0, 0]}})
    (ulo, uhi), (llo, lhi) = uni["uniform"], logu["loguniform"]
    for p in space.points(0, n):
        # [low, high): high itself could only come from rounding low + (high - low) * u
        assert ulo <= p["u"] <= uhi
        assert p["lu"] > 0
        assert llo * (1 - 1e-12) <= p["lu"] <= lhi * (1 + 1e-12)
        assert type(p["k"]) is int and lo_i <= p["k"] < hi_i
        assert p["c"] in choices
        assert p["z"] == 0


def _inverse_mix(z: int) -> int:
    """The inverse of splitmix64's finalizer (it is a bijection)."""

    def unshift(y: int, s: int) -> int:
        x = y
        for _ in range(64 // s + 1):
            x = y ^ (x >> s)
        return x & M64

    z = unshift(z, 31)
    z = (z * pow(0x94D049BB133111EB, -1, 1 << 64)) & M64
    z = unshift(z, 27)
    z = (z * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & M64
    z = unshift(z, 30)
    return (z - 0x9E3779B97F4A7C15) & M64


def test_the_largest_draw_stays_below_one() -> None:
    """A seed whose point 0 draws the largest 53-bit value: u must stay below 1, or
    uniform reaches high, integers returns high, choice overflows, normal raises."""
    for _ in range(20):
        x = random.getrandbits(64)
        assert _inverse_mix(_mix(x)) == x
    # key ^ mix(0) must map to the all-ones 64-bit output
    key = _inverse_mix(M64) ^ _mix(0)
    h = _name_key(0, "x")  # = mix(0 ^ h): recover h, then the seed that gives `key`
    seed = _inverse_mix(key) ^ _inverse_mix(h)
    assert _name_key(seed, "x") == key
    for dist, check in [
        ({"uniform": [0, 1]}, lambda v: 0 < v < 1),
        ({"integers": [0, 10]}, lambda v: v == 9),
        ({"choice": ["a", "b", "c"]}, lambda v: v == "c"),
        ({"normal": [0, 1]}, lambda v: 8 < v < 9),
    ]:
        assert check(RandomSpace(1, seed, {"x": dist})[0]["x"]), dist


def test_rough_statistics() -> None:
    n = 20_000
    space = RandomSpace(n, 11, {"z": {"normal": [0, 1]}, "u": {"uniform": [0, 1]},
                                "k": {"integers": [0, 4]}, "c": {"choice": ["a", "b"]}})
    cols = space.columns(0, n)
    assert abs(statistics.fmean(cols["z"])) < 0.05
    assert abs(statistics.stdev(cols["z"]) - 1) < 0.05
    assert abs(statistics.fmean(cols["u"]) - 0.5) < 0.02
    assert all(abs(cols["k"].count(k) / n - 0.25) < 0.02 for k in range(4))
    assert abs(cols["c"].count("a") / n - 0.5) < 0.02
    lu = RandomSpace(n, 12, {"x": {"loguniform": [1e-4, 1]}}).columns(0, n)["x"]
    # uniform in log10: a quarter of the draws in each decade
    assert abs(sum(1 for v in lu if v < 1e-3) / n - 0.25) < 0.02


# -- huge spaces -------------------------------------------------------------------------

HUNDRED_MILLION = 100_000_000


def test_huge_spaces_are_cheap() -> None:
    r = RangeSpace(HUNDRED_MILLION)
    assert len(r) == HUNDRED_MILLION
    assert r[HUNDRED_MILLION - 1] == r[-1] == HUNDRED_MILLION - 1
    assert list(r.points(HUNDRED_MILLION - 3, HUNDRED_MILLION)) == [99_999_997, 99_999_998, 99_999_999]

    g = GridSpace({"a": {"range": [0, 10_000, 1]}, "b": {"linspace": [0, 1, 100]}, "c": ["p", "q"],
                   "d": list(range(50))})
    assert len(g) == HUNDRED_MILLION
    assert g[HUNDRED_MILLION - 1] == g[-1] == {"a": 9999, "b": 1.0, "c": "q", "d": 49}
    assert g[12_345_678] == {"a": 1234, "b": pytest.approx(56 / 99), "c": "q", "d": 28}
    assert g.columns(HUNDRED_MILLION - 2, HUNDRED_MILLION)["d"] == [48, 49]

    rnd = RandomSpace(HUNDRED_MILLION, 1, {"x": {"uniform": [0, 1]}})
    assert len(rnd) == HUNDRED_MILLION
    assert rnd[-1] == rnd[HUNDRED_MILLION - 1]
    assert 0 < rnd[HUNDRED_MILLION - 1]["x"] < 1


def test_negative_and_out_of_range_indices() -> None:
    r = RangeSpace(start=5, stop=15, step=2)
    assert [r[-k] for k in range(1, 6)] == [13, 11, 9, 7, 5]
    with pytest.raises(IndexError, match="index 5 is outside the space of 5 points"):
        r[5]
    with pytest.raises(IndexError, match="outside"):
        r[-6]
    empty = RangeSpace(0)
    assert len(empty) == 0
    with pytest.raises(IndexError):
        empty[0]
    with pytest.raises(IndexError):
        empty[-1]
    assert list(RangeSpace(start=10, stop=0, step=-3).points(0, 4)) == [10, 7, 4, 1]


# -- malformed specs ---------------------------------------------------------------------

RANDOM = {"kind": "random", "n": 10, "seed": 1}
MALFORMED: list[tuple[Any, str]] = [
    ({}, "space.kind"),
    ({"kind": "cube"}, "space.kind"),
    (["kind", "range"], "space:"),
    ({"kind": "range", "stop": 3, "size": 1}, "unknown field(s) size"),
    ({"kind": "range"}, "space.stop"),
    ({"kind": "range", "stop": "ten"}, "space.stop"),
    ({"kind": "range", "stop": True}, "space.stop"),
    ({"kind": "range", "start": 1.5, "stop": 3}, "space.start"),
    ({"kind": "range", "stop": 3, "step": 0}, "space.step"),
    ({"kind": "grid"}, "space.axes"),
    ({"kind": "grid", "axes": [1, 2]}, "space.axes"),
    ({"kind": "grid", "axes": {}}, "space.axes"),
    ({"kind": "grid", "axes": {"x": []}}, "space.axes.x"),
    ({"kind": "grid", "axes": {"x": "1,2,3"}}, "space.axes.x"),
    ({"kind": "grid", "axes": {"x": {"linspace": [0, 1]}}}, "space.axes.x.linspace"),
    ({"kind": "grid", "axes": {"x": {"linspace": [0, "1", 3]}}}, "space.axes.x.linspace"),
    ({"kind": "grid", "axes": {"x": {"linspace": [0, 1, 2.5]}}}, "space.axes.x.linspace"),
    ({"kind": "grid", "axes": {"x": {"linspace": [0, 1, 0]}}}, "space.axes.x.linspace"),
    ({"kind": "grid", "axes": {"x": {"linspace": [0, float("inf"), 3]}}}, "space.axes.x.linspace"),
    ({"kind": "grid", "axes": {"x": {"logspace": [0, 400, 3]}}}, "space.axes.x.logspace"),
    ({"kind": "grid", "axes": {"x": {"range": [0, 10, 0]}}}, "space.axes.x.range"),
    ({"kind": "grid", "axes": {"x": {"range": [0, 1.5, 1]}}}, "space.axes.x.range"),
    ({"kind": "grid", "axes": {"x": {"range": [5, 0, 1]}}}, "space.axes.x"),
    ({"kind": "grid", "axes": {"x": {"arange": [0, 5, 1]}}}, "space.axes.x"),
    ({**RANDOM, "params": {"lr": {"loguniform": [0, 1]}}}, "space.params.lr.loguniform"),
    ({**RANDOM, "params": {"lr": {"loguniform": [1, 0.1]}}}, "space.params.lr.loguniform"),
    ({**RANDOM, "params": {"x": {"uniform": [1, 1]}}}, "space.params.x.uniform"),
    ({**RANDOM, "params": {"x": {"uniform": [0, 1, 2]}}}, "space.params.x.uniform"),
    ({**RANDOM, "params": {"x": {"uniform": [0, float("nan")]}}}, "space.params.x.uniform"),
    ({**RANDOM, "params": {"x": {"uniform": "0:1"}}}, "space.params.x.uniform"),
    ({**RANDOM, "params": {"x": {"normal": [0, -1]}}}, "space.params.x.normal"),
    ({**RANDOM, "params": {"x": {"integers": [0, 2.5]}}}, "space.params.x.integers"),
    ({**RANDOM, "params": {"x": {"choice": []}}}, "space.params.x.choice"),
    ({**RANDOM, "params": {"x": {"gauss": [0, 1]}}}, "space.params.x"),
    ({**RANDOM, "params": {"x": [0, 1]}}, "space.params.x"),
    ({**RANDOM, "params": {"x": {"uniform": [0, 1], "normal": [0, 1]}}}, "space.params.x"),
    ({**RANDOM, "params": {}}, "space.params"),
    ({**RANDOM, "params": [1]}, "space.params"),
    ({"kind": "random", "seed": 1, "params": {"x": {"uniform": [0, 1]}}}, "space.n"),
    ({**RANDOM, "n": -1, "params": {"x": {"uniform": [0, 1]}}}, "space.n"),
    ({**RANDOM, "n": "10", "params": {"x": {"uniform": [0, 1]}}}, "space.n"),
    ({**RANDOM, "seed": 1.5, "params": {"x": {"uniform": [0, 1]}}}, "space.seed"),
    ({"kind": "file"}, "space.path"),
]


@pytest.mark.parametrize(("spec", "field"), MALFORMED, ids=[f"{i}-{f}" for i, (_, f) in enumerate(MALFORMED)])
def test_malformed_spec_names_the_field(spec: Any, field: str) -> None:
    with pytest.raises(SpecError) as info:
        space_from_spec(spec)
    message = str(info.value)
    assert field in message
    assert "\n" not in message
    assert message.endswith(".")


# -- space files ---------------------------------------------------------------------------

GRID = {"kind": "grid", "axes": {"strike": [90, 100.5, "atm"], "vol": {"linspace": [0.1, 0.5, 5]},
                                 "lr": {"logspace": [-4, -1, 4]}, "n": {"range": [0, 10, 3]}}}


def test_yaml_json_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(GRID))
    (tmp_path / "b.yml").write_text(yaml.safe_dump({"space": GRID}))
    (tmp_path / "c.json").write_text(json.dumps(GRID))
    (tmp_path / "d.toml").write_text(
        '# the same grid, written by hand\n'
        '[space]\n'
        'kind = "grid"\n'
        '\n'
        '[space.axes]\n'
        'strike = [90, 100.5, "atm"]\n'
        'vol = { linspace = [0.1, 0.5, 5] }\n'
        'lr = { logspace = [-4, -1, 4] }\n'
        'n.range = [0, 10, 3]\n'
    )
    (tmp_path / "e.TOML").write_text(to_toml(GRID))
    for name in ("a.yaml", "b.yml", "c.json", "d.toml", "e.TOML"):
        spec = load_spec_file(tmp_path / name)
        assert spec == GRID, name
        assert space_from_spec(spec).spec() == GRID
    assert len(space_from_spec(GRID)) == 3 * 5 * 4 * 4


def test_toml_random_space_file(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(
        'kind = "random"\n'
        'n = 1000\n'
        'seed = 42\n'
        '[params]\n'
        'lr = { loguniform = [1e-5, 1e-1] }\n'
        'depth = { integers = [2, 12] }\n'
        'opt = { choice = ["adam", "sgd"] }\n'
    )
    space = space_from_spec(load_spec_file(path))
    assert len(space) == 1000
    assert space.fields == ["lr", "depth", "opt"]
    assert space.spec()["params"]["lr"] == {"loguniform": [1e-5, 0.1]}


def test_rows_files_are_described_not_read(tmp_path: Path) -> None:
    for name in ("rows.csv", "rows.JSONL", "rows.ndjson", "rows.parquet"):
        assert load_spec_file(tmp_path / name) == {"kind": "file", "path": str(tmp_path / name)}


@pytest.mark.parametrize(("name", "text", "kind"), [
    ("bad.yaml", "kind: grid\naxes: {x: [1, 2\n", "YAML"),
    ("bad.yml", "kind: grid\n  axes: - 1\n\t- 2\n", "YML"),
    ("bad.toml", 'kind = "grid"\naxes = {x = [1, 2]\n', "TOML"),
    ("bad.toml", 'kind = "grid"\nkind = "range"\n', "TOML"),
    ("bad.json", '{"kind": "grid", "axes": {"x": [1, 2]},}', "JSON"),
    ("bad.json", "", "JSON"),
])
def test_malformed_space_files(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec_file(path)
    message = str(info.value)
    assert message.startswith(f"space file {name!r} is not valid {kind}: ")
    assert "\n" not in message


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("list.yaml", b"- kind: range\n- stop: 3\n", "expected a mapping with a 'kind' field"),
    ("empty.yaml", b"", "expected a mapping with a 'kind' field"),
    ("scalar.json", b"3", "expected a mapping with a 'kind' field"),
    ("space.txt", b"kind: range\n", "unknown extension '.txt'"),
    ("binary.yaml", b"\xff\xfe\x00kind", "is not valid YAML"),
])
def test_unusable_space_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SpecError, match=expected) as info:
        load_spec_file(path)
    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec_file(tmp_path / "nope.yaml")
