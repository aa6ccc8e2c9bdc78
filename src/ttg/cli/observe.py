"""The commands that watch sweeps: ``ttg dashboard``, ``ttg exporter``, ``ttg plot``.

(``ttg worker --metrics-port`` is in commands.py with the other worker flags.)
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..extras import need
from ..observe.monitor import open_monitor
from ..observe.plotdata import AGGREGATIONS
from ..stores import open_store
from .options import common, settings_from

#: Default ports: the dashboard's and the stand-alone exporter's.
DASHBOARD_PORT = 8470
EXPORTER_PORT = 9470


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any other than loopback requires a token.")
@click.option("--port", type=int, default=DASHBOARD_PORT, show_default=True)
@click.option("--token", help="Access token, required off loopback [TTG_DASHBOARD_TOKEN; default: a "
                              "random one, printed at start].")
@common
def dashboard(host: str, port: int, token: str | None, **kw: Any) -> None:
    """Serve a live web dashboard of the sweeps (and their Prometheus metrics at /metrics)."""
    s = settings_from(kw, dashboard_token=token)
    need("starlette", "dashboard", "ttg dashboard")
    need("uvicorn", "dashboard", "ttg dashboard")
    from ..observe.dashboard.server import serve

    with open_monitor(s) as monitor:
        serve(s, monitor, host, port, s.dashboard_token or None)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 in a pod, for Prometheus to reach it).")
@click.option("--port", type=int, default=EXPORTER_PORT, show_default=True)
@common
def exporter(host: str, port: int, **kw: Any) -> None:
    """Serve sweep-level Prometheus metrics: progress, queue, throughput and ETA of every sweep."""
    s = settings_from(kw)
    need("prometheus_client", "metrics", "ttg exporter")
    from ..observe.exporter import SweepCollector
    from ..worker.metrics import registry, serve

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    with open_monitor(s) as monitor:
        try:
            stop = serve(registry(SweepCollector(monitor)), host, port)
        except OSError as exc:
            raise ConfigError(f"cannot serve on {host}:{port} ({exc}); choose another --port.") from exc
        click.echo(f"ttg exporter: http://{host}:{port}/metrics", err=True)
        try:
            while not stopping.wait(5.0):
                monitor.service()  # keeps a connection-bound broker's connection alive
        finally:
            stop()


@click.command()
@click.argument("name")
@click.option("--x", "x", required=True, metavar="FIELD", help="Field along the x axis.")
@click.option("--y", "y", metavar="FIELD", help="Field along the y axis (a heat map or a scatter).")
@click.option("--value", required=True, metavar="FIELD", help="The result field to show.")
@click.option("--kind", type=click.Choice(["auto", "heatmap", "line", "scatter"]), default="auto",
              show_default=True, help="auto: a line over --x alone; with --y, a heat map over grid-like "
                                      "axes, else a scatter.")
@click.option("--agg", type=click.Choice(AGGREGATIONS), default="mean", show_default=True,
              help="What a cell (or a line's point) shows of the points that fall in it: the fields not "
                   "drawn are reduced so.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help="Only the points where FIELD has this value (fix an axis that is not drawn); repeatable.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Image file: .png or .svg.")
@common
def plot(name: str, x: str, y: str | None, value: str, kind: str, agg: str, where: tuple[str, ...],
         output: Path, **kw: Any) -> None:
    """Plot a sweep's stored results: a heat map, a line or a scatter.

    Point fields that are not drawn are reduced (--agg, the mean by default) or
    fixed (--where); the command says which."""
    s = settings_from(kw)
    if output.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"cannot tell the image format of {output.name!r}; end it in .png or .svg.")
    fixed = dict(_field_value(w) for w in where)
    need("matplotlib", "plot", "ttg plot")
    from ..observe.plot import plot_sweep

    with open_store(s, create=False) as store:
        drawn, note = plot_sweep(store, store.sweep(name), output, x=x, y=y, value=value, kind=kind, agg=agg,
                                 where=fixed)
    click.echo(f"wrote a {drawn} of {value} to {output}" + (f": {note}" if note else ""))
    if note and drawn != "scatter" and " over " in note and agg == "mean":
        click.echo("  (--agg picks another reduction, --where FIELD=VALUE fixes a field instead)")


def _field_value(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise ConfigError(f"--where {text!r} is not FIELD=VALUE; write e.g. --where c=10.")
    return name.strip(), value.strip()
