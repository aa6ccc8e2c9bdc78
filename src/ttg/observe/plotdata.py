"""A sweep's results as what a plot draws: a heat map over two fields, a line
over one, or the points themselves. Shared by ``ttg plot`` and the dashboard.

Fields are the results table's columns (the point's fields, the result's
columns, ``duration``, ``index``...). Values that are not numbers (an error's
None, a string) are left out of the value. An axis with at most ``max_bins``
distinct values keeps each value as a cell (a grid axis); a longer one is cut
into ``max_bins`` equal bins (logarithmic when it is positive and spans more
than three decades). A cell shows one figure of the values that fall in it
(``AGGREGATIONS``: the mean unless asked otherwise), so a heat map over two axes
of a three-axis grid reduces over the third, unless ``fixed`` keeps only the
points at one value of it; ``reduced`` says which fields a plot reduced over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Columns that are not plottable fields.
NOT_FIELDS = ("status", "error", "worker")
#: How many points a plot reads at most (memory: a float per field per point).
MAX_POINTS = 5_000_000
#: What a cell (or a line's point) can show of the values that fall in it.
AGGREGATIONS = ("mean", "median", "min", "max", "sum", "count")


@dataclass
class Samples:
    """Plottable columns of a sweep's results, as float arrays (NaN: not a number)."""

    fields: list[str]
    columns: dict[str, np.ndarray]
    #: category labels of the fields whose values are not numbers, by code
    categories: dict[str, list[str]]
    truncated: bool = False

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass
class Axis:
    name: str
    #: the cells' edges are not drawn: each cell has a center and a label
    centers: list[float]
    labels: list[str]
    log: bool = False


@dataclass
class Grid2D:
    x: Axis
    y: Axis
    #: mean value per cell, rows along y; None where no point fell
    cells: list[list[float | None]]
    count: int


@dataclass
class Line:
    x: Axis
    values: list[float | None]
    count: int


def collect(chunks: Iterable[dict[str, list[Any]]], wanted: list[str],
            max_points: int = MAX_POINTS) -> Samples:
    """Read the ``wanted`` fields out of the results table's column chunks.
    Raises ConfigError naming the sweep's fields when one is missing."""
    parts: dict[str, list[list[Any]]] = {w: [] for w in wanted}
    fields: list[str] | None = None
    n = 0
    truncated = False
    for cols in chunks:
        if fields is None:
            fields = [c for c in cols if c not in NOT_FIELDS]
            missing = [w for w in wanted if w not in cols or w in NOT_FIELDS]
            if missing:
                raise ConfigError(f"the results have no field {missing[0]!r}; choose one of: "
                                  f"{', '.join(fields)}.")
        for w in wanted:
            parts[w].append(cols[w])
        n += len(cols["index"])
        if n >= max_points:
            truncated = True
            break
    if fields is None:
        raise ConfigError("this sweep has no results yet; plot it once some points are done.")
    columns: dict[str, np.ndarray] = {}
    categories: dict[str, list[str]] = {}
    for w in wanted:
        values = [v for part in parts[w] for v in part]
        columns[w], cats = _as_floats(values)
        if cats is not None:
            categories[w] = cats
    return Samples(fields, columns, categories, truncated)


def _as_floats(values: list[Any]) -> tuple[np.ndarray, list[str] | None]:
    """Numbers as floats (None and the like as NaN); strings as category codes."""
    if any(isinstance(v, str) for v in values):
        labels = sorted({str(v) for v in values if v is not None})
        code = {label: float(k) for k, label in enumerate(labels)}
        return np.array([code[str(v)] if v is not None else math.nan for v in values]), labels
    out = np.full(len(values), math.nan)
    for k, v in enumerate(values):
        if isinstance(v, bool | int | float):
            out[k] = float(v)
    return out, None


def axis_cells(s: Samples, name: str, max_bins: int = 100) -> tuple[Axis, np.ndarray]:
    """The axis of field ``name`` and each sample's cell on it (-1: none)."""
    v = s.columns[name]
    ok = ~np.isnan(v)
    cats = s.categories.get(name)
    distinct = np.unique(v[ok])
    if cats is not None or len(distinct) <= max_bins:
        where = np.full(len(v), -1)
        where[ok] = np.searchsorted(distinct, v[ok])
        labels = [cats[int(d)] for d in distinct] if cats is not None else [_fmt(d) for d in distinct]
        return Axis(name, [float(d) for d in distinct], labels), where
    lo, hi = float(distinct[0]), float(distinct[-1])
    log = lo > 0 and hi / lo > 1e3
    edges = np.geomspace(lo, hi, max_bins + 1) if log else np.linspace(lo, hi, max_bins + 1)
    where = np.full(len(v), -1)
    where[ok] = np.clip(np.searchsorted(edges, v[ok], side="right") - 1, 0, max_bins - 1)
    centers = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    return Axis(name, [float(c) for c in centers], [_fmt(c) for c in centers], log), where


def grid2d(s: Samples, x: str, y: str, value: str, max_bins: int = 100, agg: str = "mean") -> Grid2D:
    ax, xi = axis_cells(s, x, max_bins)
    ay, yi = axis_cells(s, y, max_bins)
    v = s.columns[value]
    ok = (xi >= 0) & (yi >= 0) & ~np.isnan(v)
    width = len(ax.centers)
    flat = reduce_cells(yi[ok] * width + xi[ok], v[ok], width * len(ay.centers), agg)
    return Grid2D(ax, ay, [flat[r * width:(r + 1) * width] for r in range(len(ay.centers))], int(ok.sum()))


def line(s: Samples, x: str, value: str, max_bins: int = 200, agg: str = "mean") -> Line:
    ax, xi = axis_cells(s, x, max_bins)
    v = s.columns[value]
    ok = (xi >= 0) & ~np.isnan(v)
    return Line(ax, reduce_cells(xi[ok], v[ok], len(ax.centers), agg), int(ok.sum()))


def reduce_cells(cell: np.ndarray, values: np.ndarray, size: int, agg: str) -> list[float | None]:
    """Per cell ``0..size-1``, the ``agg`` of the ``values`` whose ``cell`` it is (None: no value)."""
    if agg not in AGGREGATIONS:
        raise ConfigError(f"cannot reduce a cell's values by {agg!r}; use one of {', '.join(AGGREGATIONS)}.")
    counts = np.bincount(cell, minlength=size)
    if agg == "count":
        out = counts.astype(float)
    elif agg in ("mean", "sum"):
        out = np.bincount(cell, weights=values, minlength=size)
        if agg == "mean":
            out = out / np.maximum(counts, 1)
    elif agg in ("min", "max"):
        out = np.full(size, math.inf if agg == "min" else -math.inf)
        (np.minimum if agg == "min" else np.maximum).at(out, cell, values)
    else:  # median: the middle of each cell's sorted values
        order = np.lexsort((values, cell))
        ordered = values[order]
        first = np.searchsorted(cell[order], np.arange(size))
        lo = first + np.maximum(counts - 1, 0) // 2
        hi = first + counts // 2
        out = np.zeros(size)
        has = counts > 0
        out[has] = (ordered[lo[has]] + ordered[hi[has]]) / 2
    return [float(out[k]) if counts[k] else None for k in range(size)]


def fixed(s: Samples, where: Mapping[str, str]) -> Samples:
    """Only the samples at the given value of each named field (``--where c=10``).
    Numbers compare as numbers (``0.3`` matches a grid's 0.30000000000000004), or
    as the plot prints them (``3.162e-05`` matches 3.1622776601683795e-05)."""
    keep = np.ones(len(s), dtype=bool)
    for name, text in where.items():
        col = s.columns[name]
        cats = s.categories.get(name)
        if cats is not None:
            match = col == cats.index(text) if text in cats else np.zeros(len(col), dtype=bool)
        else:
            try:
                target = float(text)
            except ValueError:
                match = np.zeros(len(col), dtype=bool)
            else:
                match = np.isclose(col, target, rtol=1e-9, atol=0.0)
                if not match.any():  # a value as the plot and its errors print it (4 digits)
                    distinct = np.unique(col[~np.isnan(col)])
                    match = np.isin(col, [v for v in distinct if _fmt(v) == _fmt(target)])
        if not match.any():
            values = cats or [_fmt(v) for v in np.unique(col[~np.isnan(col)])]
            raise ConfigError(f"no point has {name}={text}; give one of its values: {', '.join(values[:10])}"
                              + (", ..." if len(values) > 10 else "") + ".")
        keep &= match
    return Samples(s.fields, {k: v[keep] for k, v in s.columns.items()}, s.categories, s.truncated)


def reduced(s: Samples, candidates: Sequence[str], drawn: Sequence[str]) -> list[tuple[str, int]]:
    """The ``candidates`` (a sweep's point fields) a plot of ``drawn`` did not draw that
    vary among the samples, with how many distinct values each has."""
    out = []
    for name in candidates:
        if name in drawn or name not in s.columns:
            continue
        col = s.columns[name]
        n = len(np.unique(col[~np.isnan(col)]))
        if n > 1:
            out.append((name, n))
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"
