"""A sweep's results as what a plot draws: a heat map over two fields, a line
over one, or the points themselves. Shared by ``ttg plot`` and the dashboard.

Fields are the results table's columns (the point's fields, the result's
columns, ``duration``, ``index``...). Values that are not numbers (an error's
None, a string) are left out of the value. An axis with at most ``max_bins``
distinct values keeps each value as a cell (a grid axis); a longer one is cut
into ``max_bins`` equal bins (logarithmic when it is positive and spans more
than three decades). A cell shows the mean of the values that fall in it, so
a heat map over two axes of a three-axis grid averages over the third.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Columns that are not plottable fields.
NOT_FIELDS = ("status", "error", "worker")
#: How many points a plot reads at most (memory: three floats per point).
MAX_POINTS = 5_000_000


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


def grid2d(s: Samples, x: str, y: str, value: str, max_bins: int = 100) -> Grid2D:
    ax, xi = axis_cells(s, x, max_bins)
    ay, yi = axis_cells(s, y, max_bins)
    v = s.columns[value]
    ok = (xi >= 0) & (yi >= 0) & ~np.isnan(v)
    flat = yi[ok] * len(ax.centers) + xi[ok]
    size = len(ax.centers) * len(ay.centers)
    sums = np.bincount(flat, weights=v[ok], minlength=size)
    counts = np.bincount(flat, minlength=size)
    cells = [[_mean(sums[r * len(ax.centers) + c], counts[r * len(ax.centers) + c])
              for c in range(len(ax.centers))] for r in range(len(ay.centers))]
    return Grid2D(ax, ay, cells, int(ok.sum()))


def line(s: Samples, x: str, value: str, max_bins: int = 200) -> Line:
    ax, xi = axis_cells(s, x, max_bins)
    v = s.columns[value]
    ok = (xi >= 0) & ~np.isnan(v)
    sums = np.bincount(xi[ok], weights=v[ok], minlength=len(ax.centers))
    counts = np.bincount(xi[ok], minlength=len(ax.centers))
    return Line(ax, [_mean(a, b) for a, b in zip(sums, counts, strict=True)], int(ok.sum()))


def _mean(total: float, n: int) -> float | None:
    return float(total / n) if n else None


def _fmt(v: float) -> str:
    return f"{v:.4g}"
