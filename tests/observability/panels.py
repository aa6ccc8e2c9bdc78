"""Draws panels of the Grafana dashboard from what a Prometheus answers to their
queries (Grafana itself cannot be installed here), for the docs' figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.observability.prom import Prometheus
from tests.observability.promql import as_query

#: Panel titles to draw, in order (2 x 3).
PANELS = ("Progress over time", "Throughput", "Queue depth", "Errors by type", "Chunk duration",
          "Point duration (p50, p95)")


def draw(prom: Prometheus, dashboard: dict[str, Any], start: float, end: float, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = {p["title"]: p for p in dashboard["panels"]}
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, title in zip(axes, PANELS, strict=True):
        panel = panels[title]
        ax.set_title(title, fontsize=11, loc="left")
        ax.grid(alpha=0.3)
        if panel["type"] == "heatmap":
            _heatmap(ax, prom, panel, start, end)
            continue
        for target in panel["targets"]:
            for series in _range(prom, target["expr"], start, end):
                ts = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                legend = target["legendFormat"].replace("{{", "{").replace("}}", "}")
                label = legend.format(**series["metric"])
                ax.plot(ts, ys, label=label, linewidth=1.6)
        ax.set_xlabel("seconds into the sweep", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("TTG Grafana dashboard panels (deploy/grafana/ttg-dashboard.json), queried from Prometheus "
                 "during a test sweep", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def _range(prom: Prometheus, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    query = as_query(expr).replace("[1m]", "[3s]")  # a short sweep: rates over a few scrapes
    return list(prom.api("query_range", query=query, start=start, end=end, step="500ms")["result"])


def _heatmap(ax: Any, prom: Prometheus, panel: dict[str, Any], start: float, end: float) -> None:
    import numpy as np

    series = _range(prom, panel["targets"][0]["expr"], start, end)
    series.sort(key=lambda s: float(s["metric"]["le"]))
    if not series:
        return
    les = [s["metric"]["le"] for s in series]
    times = sorted({float(t) for s in series for t, _ in s["values"]})
    grid = np.zeros((len(les), len(times)))
    for r, s in enumerate(series):
        for t, v in s["values"]:
            grid[r, times.index(float(t))] = float(v)
    counts = np.diff(grid, axis=0, prepend=0)  # cumulative buckets -> per bucket
    ax.imshow(counts, origin="lower", aspect="auto", cmap="Oranges",
              extent=(times[0] - start, times[-1] - start, 0, len(les)))
    ax.set_yticks([k + 0.5 for k in range(len(les))], [f"≤{le}" for le in les], fontsize=7)
    ax.set_xlabel("seconds into the sweep", fontsize=8)
    ax.set_ylabel("seconds", fontsize=8)
