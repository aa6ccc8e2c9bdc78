"""What a plot's cell shows of the points that fall in it (every aggregation, against
numpy over each cell's values), fixing a field by value, and naming the fields a
plot reduced over."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttg.errors import ConfigError
from ttg.observe.plotdata import AGGREGATIONS, Samples, collect, fixed, grid2d, line, reduce_cells, reduced

REFERENCE = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max, "sum": np.sum,
             "count": len}


@given(cells=st.lists(st.tuples(st.integers(0, 5), st.floats(-1e6, 1e6)), max_size=60),
       agg=st.sampled_from(AGGREGATIONS))
def test_each_cell_is_its_values_reduced(cells: list[tuple[int, float]], agg: str) -> None:
    cell = np.array([c for c, _ in cells], dtype=np.int64)
    values = np.array([v for _, v in cells], dtype=float)
    got = reduce_cells(cell, values, 6, agg)
    for k in range(6):
        mine = values[cell == k]
        if len(mine) == 0:
            assert got[k] is None
        else:
            assert got[k] == pytest.approx(float(REFERENCE[agg](mine)), rel=1e-9, abs=1e-6)


def test_an_unknown_aggregation_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^cannot reduce a cell's values by 'avg'; use one of mean, "):
        reduce_cells(np.zeros(1, dtype=np.int64), np.zeros(1), 1, "avg")


def grid3() -> Samples:
    """a in 1..3, b in 0, 0.1, 0.2 (as linspace makes them), c in 10, 20; value a*100+b*10+c."""
    rows = [{"index": [0], "a": [a], "b": [b], "c": [c], "value": [a * 100 + b * 10 + c]}
            for a in (1, 2, 3) for b in np.linspace(0, 0.2, 3).tolist() for c in (10, 20)]
    return collect(rows, ["a", "b", "c", "value"])


def test_a_line_reduces_over_the_fields_it_does_not_draw() -> None:
    s = grid3()
    assert reduced(s, ["a", "b", "c"], ["a", "value"]) == [("b", 3), ("c", 2)]
    assert line(s, "a", "value").values == pytest.approx([116, 216, 316])
    assert line(s, "a", "value", agg="max").values == pytest.approx([122, 222, 322])
    assert line(s, "a", "value", agg="count").values == [6, 6, 6]


def test_a_heat_map_with_the_third_field_fixed() -> None:
    s = fixed(grid3(), {"c": "20", "b": "0.1"})  # 0.1 matches linspace's 0.1 as a number
    assert len(s) == 3 and reduced(s, ["a", "b", "c"], ["a", "value"]) == []
    g = grid2d(s, "a", "b", "value")
    assert g.cells == [pytest.approx([121, 221, 321])]


def test_fixing_a_value_no_point_has_names_the_values() -> None:
    with pytest.raises(ConfigError, match=r"^no point has c=15; give one of its values: 10, 20\.$"):
        fixed(grid3(), {"c": "15"})
    with pytest.raises(ConfigError, match=r"^no point has c=ten;"):
        fixed(grid3(), {"c": "ten"})


def test_a_text_field_is_fixed_by_its_label() -> None:
    rows = [{"index": [i], "kind": [k], "value": [float(i)]} for i, k in enumerate("xyxy")]
    s = collect(rows, ["kind", "value"])
    assert fixed(s, {"kind": "y"}).columns["value"].tolist() == [1.0, 3.0]
    with pytest.raises(ConfigError, match=r"give one of its values: x, y\.$"):
        fixed(s, {"kind": "z"})
    assert math.isnan(collect([{"index": [0], "v": [None]}], ["v"]).columns["v"][0])


def test_a_value_is_fixed_as_the_plot_prints_it() -> None:
    """A logspace axis: 3.162e-05 (what ticks and errors show) picks 10**-4.5."""
    values = np.logspace(-5, -1, 9).tolist()
    s = collect([{"index": [k], "a": [v], "value": [float(k)]} for k, v in enumerate(values)], ["a", "value"])
    assert fixed(s, {"a": "3.162e-05"}).columns["value"].tolist() == [1.0]
    assert fixed(s, {"a": str(values[1])}).columns["value"].tolist() == [1.0]
