"""``ttg plot``: a sweep's stored results drawn with matplotlib (PNG or SVG).

A line of ``value`` over one field, a heat map over two grid-like fields
(each with at most ``GRID_LIKE`` distinct values, or binned), or a scatter of
the points coloured by ``value``. Cells and line points reduce over the point
fields not drawn (the mean, or another of ``plotdata.AGGREGATIONS``), or only the
points at a chosen value of those fields are read (``where``); the caller is told
which. The image's title metadata names the kind, so a reader (or a test) can
tell what was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..client.table import Table
from ..core.sweep import Sweep
from ..errors import ConfigError
from ..stores.base import ResultStore
from .plotdata import NOT_FIELDS, Axis, collect, fixed, grid2d, line, reduced

#: With --y and --kind auto: a heat map when both fields have at most this many values.
GRID_LIKE = 200
KINDS = ("heatmap", "line", "scatter")
_NAMES = {"heatmap": "heat map", "line": "line", "scatter": "scatter"}


def plot_sweep(store: ResultStore, sweep: Sweep, output: Path, *, x: str, y: str | None, value: str,
               kind: str = "auto", agg: str = "mean",
               where: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Draw and write the plot. Returns what was drawn ("heat map", "line" or
    "scatter") and how the fields it does not draw were treated ("" when none
    varies): reduced by ``agg`` in each cell, or fixed by ``where``."""
    where = dict(where or {})
    from matplotlib.figure import Figure

    if kind in ("heatmap", "scatter") and y is None:
        raise ConfigError(f"a {_NAMES[kind]} needs two axes; give --y FIELD too.")
    if kind == "line" and y is not None:
        raise ConfigError("a line is drawn over one axis; drop --y (or use --kind heatmap or scatter).")
    drawn_fields = [x, *([y] if y else [])]
    point_fields = [f for f in sweep.fields if f not in NOT_FIELDS]  # (a result column wins a clash)
    wanted = list(dict.fromkeys([*drawn_fields, value, *where, *point_fields]))
    samples = fixed(collect(Table(store, sweep).column_chunks(), wanted), where)
    others = reduced(samples, point_fields, [*drawn_fields, value])
    if kind == "auto":
        kind = "line" if y is None else "heatmap" if _grid_like(samples.columns, x, y) else "scatter"
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    pooled = False  # some cell holds more than one point
    if kind == "line":
        data = line(samples, x, value, agg=agg)
        xs = _positions(data.x, samples.categories.get(x) is not None)
        ys = [math.nan if v is None else v for v in data.values]
        ax.plot(xs, ys, marker="o" if len(xs) <= 60 else None, markersize=4, linewidth=1.5)
        _ticks(ax, "x", data.x, samples.categories.get(x) is not None)
        ax.set_xscale("log" if data.x.log else "linear")
        pooled = bool(others) or data.count > sum(v is not None for v in data.values)
        ax.set_ylabel(f"{value} ({agg})" if pooled else value)
        ax.grid(alpha=0.3)
    elif kind == "heatmap":
        assert y is not None
        grid = grid2d(samples, x, y, value, agg=agg)
        cells = np.array([[math.nan if v is None else v for v in row] for row in grid.cells])
        image = ax.imshow(cells, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
        _ticks(ax, "x", grid.x, True)
        _ticks(ax, "y", grid.y, True)
        pooled = bool(others) or grid.count > sum(v is not None for row in grid.cells for v in row)
        fig.colorbar(image, ax=ax, label=f"{value} ({agg})" if pooled else value)
    else:
        assert y is not None
        c = samples.columns
        ok = ~(np.isnan(c[x]) | np.isnan(c[y]) | np.isnan(c[value]))
        points = ax.scatter(c[x][ok], c[y][ok], c=c[value][ok], s=8 if ok.sum() > 2000 else 18,
                            cmap="viridis", linewidths=0)
        fig.colorbar(points, ax=ax, label=value)
        for name, setter in ((x, ax.set_xticks), (y, ax.set_yticks)):
            labels = samples.categories.get(name)
            if labels is not None:
                setter(range(len(labels)), labels)
    ax.set_xlabel(x)
    if y is not None:
        ax.set_ylabel(y)
    drawn = _NAMES[kind]
    title = f"{sweep.id}: {drawn} of {value}"
    note = _note(kind, agg, others, where, pooled)
    shown = title + (" (first points only)" if samples.truncated else "")
    ax.set_title(shown + (f"\n{note}" if note else ""), fontsize=10)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, metadata={"Title": title}, dpi=110)
    return drawn, note


def _note(kind: str, agg: str, others: list[tuple[str, int]], where: Mapping[str, str],
          pooled: bool) -> str:
    """How the point fields a plot does not draw were treated, in words (``pooled``:
    some cell holds more than one point, e.g. a binned axis)."""
    parts = [f"{name} fixed at {text}" for name, text in where.items()]
    if not others and pooled:
        parts.append(f"each {'cell' if kind == 'heatmap' else 'point'} is the {agg} of the points in it")
    if others:
        names = " and ".join(f"{name} ({n} values)" for name, n in others)
        if kind == "scatter":
            parts.append(f"{names} not drawn: points that differ only there overlap")
        else:
            parts.append(f"each {'cell' if kind == 'heatmap' else 'point'} is the {agg} over {names}")
    return "; ".join(parts)


def _grid_like(columns: dict[str, Any], *names: str) -> bool:
    return all(len(np.unique(columns[n][~np.isnan(columns[n])])) <= GRID_LIKE for n in names)


def _positions(axis: Axis, categorical: bool) -> list[float]:
    return list(range(len(axis.centers))) if categorical else axis.centers


def _ticks(ax: Any, which: str, axis: Axis, by_cell: bool) -> None:
    """Label at most ~10 ticks with the axis' values (cells are at 0..n-1 when ``by_cell``)."""
    if not by_cell:
        return
    n = len(axis.labels)
    step = max(1, math.ceil(n / 10))
    at = list(range(0, n, step))
    (ax.set_xticks if which == "x" else ax.set_yticks)(at, [axis.labels[k] for k in at])
