"""The dashboard's ASGI app (Starlette): pages, JSON endpoints, static files, /metrics.

Pages are static HTML that a little vanilla JavaScript (static/app.js) fills
by polling the JSON endpoints; nothing is fetched from outside the app, so it
works on a machine with no internet. Everything is read through a
SweepMonitor (the Broker and ResultStore interfaces). The app is read-only
except two actions, cancel and retry, which take a POST that names the sweep
again (the page asks the user to confirm first) and carries the header
``X-TTG-Action`` (a cross-site form cannot send it, so no other site can
trigger them from the user's browser).

With a token, every request must carry it: ``?token=...``, the header
``X-TTG-Token``, or ``Authorization: Bearer ...`` (for Prometheus scraping
/metrics).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...core.codec import Codec
from ...core.sweep import Sweep
from ...errors import ConfigError, SweepNotFound, TtgError
from ..monitor import SweepMonitor
from ..plotdata import Samples, collect, grid2d, line

#: Columns a plot offers as axes or values besides the point's fields and the result.
_META = ("index", "duration", "attempt")


class Handlers:
    """The endpoints. Sync ones run in Starlette's thread pool; the monitor serializes
    backend calls."""

    def __init__(self, monitor: SweepMonitor, codec: Codec) -> None:
        self.monitor, self.codec = monitor, codec
        self.static = resources.files("ttg.observe.dashboard") / "static"
        self.plots = PlotCache(monitor)

    def page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return HTMLResponse((self.static / name).read_text(encoding="utf-8"))
        return handler

    def sweeps(self, request: Request) -> Response:
        return JSONResponse([s.to_json() for s in self.monitor.sweeps()])

    def workers(self, request: Request) -> Response:
        return JSONResponse({"workers": [p.to_json() for p in self.monitor.presence()], "now": time.time()})

    def sweep(self, request: Request) -> Response:
        m, sid = self.monitor, request.path_params["sweep"]
        status = m.status(sid)
        return JSONResponse({
            "sweep": status.to_json(),
            "throughput": m.throughput_series(sid),
            "workers": [vars(w) for w in m.workers(sid)],
            "presence": [p.to_json() for p in m.presence(sid)],
            "errors": [{"index": e.index, "status": e.status, "type": e.type, "message": e.message,
                        "traceback": e.traceback, "point": e.point} for e in m.errors(sid)],
            "dead": [{"chunk": str(d.chunk), "reason": d.reason, "at": d.at} for d in m.dead_letters(sid)],
            "now": time.time(),
        })

    def plot(self, request: Request) -> Response:
        q = request.query_params
        return JSONResponse(self.plots.get(request.path_params["sweep"], q.get("x"), q.get("y"),
                                           q.get("value")))

    def action(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            sid = request.path_params["sweep"]
            body: Any = {}
            if request.headers.get("content-type") == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    return JSONResponse({"error": "the request's body is not JSON."}, status_code=400)
            if (request.headers.get("x-ttg-action") != name or not isinstance(body, dict)
                    or body.get("confirm") != sid):
                return JSONResponse({"error": f"to {name} a sweep, POST JSON {{\"confirm\": SWEEP}} with "
                                              f"the header X-TTG-Action: {name}."}, status_code=400)
            if name == "cancel":
                dropped = await run_in_threadpool(self.monitor.cancel, sid)
                return JSONResponse({"cancelled": sid, "dropped_chunks": dropped})
            requeued = await run_in_threadpool(self.monitor.retry, sid, self.codec)
            return JSONResponse({"retried": sid, "requeued_points": requeued})
        return handler


def create_app(monitor: SweepMonitor, codec: Codec, token: str | None = None,
               metrics: Any | None = None, service_every: float = 5.0) -> Starlette:
    """The dashboard over ``monitor``. ``metrics``: an ASGI app served at /metrics."""
    h = Handlers(monitor, codec)
    routes = [
        Route("/", h.page("index.html")),
        Route("/sweeps/{sweep}", h.page("sweep.html")),
        Route("/api/sweeps", h.sweeps),
        Route("/api/workers", h.workers),
        Route("/api/sweeps/{sweep}", h.sweep),
        Route("/api/sweeps/{sweep}/plot", h.plot),
        Route("/api/sweeps/{sweep}/cancel", h.action("cancel"), methods=["POST"]),
        Route("/api/sweeps/{sweep}/retry", h.action("retry"), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(h.static)), name="static"),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", _AsgiApp(metrics)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import asyncio

        async def keep_alive() -> None:  # a connection-bound broker (AMQP) needs its heartbeats
            while True:
                await asyncio.sleep(service_every)
                try:
                    await run_in_threadpool(monitor.service)
                except TtgError:
                    pass  # the next request reports it
        task = asyncio.create_task(keep_alive())
        yield
        task.cancel()

    middleware = [Middleware(BaseHTTPMiddleware, dispatch=_guard(token))]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={TtgError: _ttg_error})


class _AsgiApp:
    """Wraps an ASGI callable so that Route serves it as an app at an exact path
    (Mount would redirect /metrics to /metrics/)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _guard(token: str | None) -> Callable[[Request, Any], Awaitable[Response]]:
    async def dispatch(request: Request, call_next: Any) -> Response:
        if token is None and not _loopback_host(request.headers.get("host", "")):
            # without a token the dashboard serves loopback only, and only under a loopback
            # name: a page elsewhere whose name was rebound to 127.0.0.1 must not reach it
            return PlainTextResponse("this dashboard answers only to a loopback host name "
                                     "(127.0.0.1, localhost, [::1]); give it a --token to serve others\n",
                                     status_code=403)
        if token is not None:
            auth = request.headers.get("authorization", "")
            given = (request.query_params.get("token") or request.headers.get("x-ttg-token")
                     or (auth[7:] if auth.lower().startswith("bearer ") else ""))
            if not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("this dashboard needs its token: open the URL that `ttg dashboard` "
                                         "printed (?token=...)\n", status_code=401)
        response: Response = await call_next(request)
        response.headers["cache-control"] = "no-store"
        response.headers["x-content-type-options"] = "nosniff"
        return response
    return dispatch


def _loopback_host(host: str) -> bool:
    """A Host header naming this machine's loopback (with any port)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _ttg_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, SweepNotFound) else 400 if isinstance(exc, ConfigError) else 503
    return JSONResponse({"error": str(exc)}, status_code=status)


class PlotCache:
    """Plot data per (sweep, x, y, value), recomputed at most every ``10 x`` the
    time the last computation took (at least every second): a plot reads every
    committed record, so a big sweep is re-read less often."""

    def __init__(self, monitor: SweepMonitor) -> None:
        self.monitor = monitor
        self._cache: dict[tuple[Any, ...], tuple[float, float, dict[str, Any]]] = {}
        self._fields: dict[str, list[str]] = {}

    def get(self, sweep_id: str, x: str | None, y: str | None, value: str | None) -> dict[str, Any]:
        key = (sweep_id, x, y, value)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < max(1.0, 10 * hit[1]):
            return hit[2]
        data = self._compute(sweep_id, x, y, value)
        self._cache[key] = (now, time.monotonic() - now, data)
        return data

    def _compute(self, sweep_id: str, x: str | None, y: str | None, value: str | None) -> dict[str, Any]:
        sweep = self.monitor.store.sweep(sweep_id)
        fields = self._fields.get(sweep_id) or self._peek(sweep_id)
        if not fields:
            return {"fields": [], "kind": None, "count": 0}
        self._fields[sweep_id] = fields
        x, y, value = _defaults(sweep, fields, x, y, value)
        samples = collect(self.monitor.column_chunks(sweep_id), list(dict.fromkeys(
            [f for f in (x, y, value) if f])))
        out: dict[str, Any] = {"fields": fields, "x": x, "y": y, "value": value, "points": len(samples)}
        return out | (_heatmap(samples, x, y, value) if y else _line(samples, x, value))

    def _peek(self, sweep_id: str) -> list[str]:
        chunks = self.monitor.column_chunks(sweep_id)
        try:
            first = next(chunks, None)
        finally:
            chunks.close()  # releases the monitor's lock
        return [] if first is None else [f for f in first if f not in ("status", "error", "worker")]


def _defaults(sweep: Sweep, fields: list[str], x: str | None, y: str | None,
              value: str | None) -> tuple[str, str | None, str]:
    axes = [f for f in sweep.fields if f in fields] or ["index"]
    results = [f for f in fields if f not in sweep.fields and f not in _META]
    value = value or (results[0] if results else "duration")
    if x is None:
        x = axes[0]
        y = y or (axes[1] if len(axes) > 1 else None)
    return x, (y or None), value


def _clean(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) or math.isinf(v) else v


def _heatmap(s: Samples, x: str, y: str, value: str) -> dict[str, Any]:
    g = grid2d(s, x, y, value)
    flat = [v for row in g.cells for v in row if v is not None]
    return {"kind": "heatmap", "xlabels": g.x.labels, "ylabels": g.y.labels,
            "cells": [[_clean(v) for v in row] for row in g.cells], "count": g.count,
            "min": min(flat) if flat else None, "max": max(flat) if flat else None}


def _line(s: Samples, x: str, value: str) -> dict[str, Any]:
    ln = line(s, x, value)
    return {"kind": "line", "xlabels": ln.x.labels, "xs": ln.x.centers,
            "categorical": x in s.categories, "values": [_clean(v) for v in ln.values], "count": ln.count}
