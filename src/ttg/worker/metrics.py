"""Prometheus metrics of one worker (``ttg worker --metrics-port PORT``).

``WorkerMetrics`` is an events subscriber (events.py) that sums what the
supervisor and its children report, and a prometheus_client collector that
turns the sums into metrics when scraped. The children send the supervisor a
summary of each chunk over their pipe, so the supervisor's registry is the
only one: no multiprocess files, no environment variable read at import, and
a dead child's counts are already in. Nothing here is module-level state;
each worker builds its own registry (``registry()``).

Metrics (labels are bounded: a sweep, a status, an outcome, an exception
type, never an index or a chunk; exception types beyond ``max_error_types``
per worker count as "other"):

ttg_worker_points_total{sweep,status}            points committed by status (ok, error, crashed, timeout)
ttg_worker_chunks_total{sweep,outcome}           chunks handled: computed, skipped (already committed),
                                                 split, isolated, rejected (malformed or forged, dead-
                                                 lettered), refused (not runnable here: left to other
                                                 workers), crashed, timeout, lost
ttg_worker_chunk_duration_seconds{sweep}         histogram: lease to ack of computed chunks
ttg_worker_point_duration_seconds{sweep}         histogram: one call of the function
ttg_worker_redeliveries_total{sweep,reason}      chunks leased again after a failed attempt
                                                 (reason: crashed, timeout, lost)
ttg_worker_lease_extensions_total{sweep}         heartbeats that extended a lease
ttg_worker_leases_lost_total{sweep}              leases found taken by another worker
ttg_worker_errors_total{sweep,type}              failed points by exception type
ttg_worker_chunks_in_flight{sweep}               chunks leased right now
ttg_worker_children                              live child processes
ttg_worker_child_restarts_total                  children replaced after dying or recycling
ttg_worker_up                                    1 while the supervisor runs
ttg_worker_heartbeat_timestamp_seconds           the supervisor loop's last tick (Unix time)
ttg_worker_start_time_seconds                    when the worker started (Unix time)
ttg_worker_info{worker,version}                  1; the worker id (host-pid) and TTG version
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..brokers.base import Broker, Lease
from ..core.retry import Failure
from ..errors import ConfigError
from ..settings import Settings
from .child import ChildOptions
from .events import CHUNK_BUCKETS, POINT_BUCKETS, ChunkReport, Events, bucket_counts

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .supervisor import Supervisor

log = logging.getLogger(__name__)


class _Histogram:
    """Per-sweep bucket counts (not cumulative; the last bucket is +Inf) and sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def add(self, sweep: str, buckets: Sequence[int], total: float) -> None:
        counts = self.counts.setdefault(sweep, [0] * (len(self.bounds) + 1))
        for k, n in enumerate(buckets):
            counts[k] += n
        self.sums[sweep] = self.sums.get(sweep, 0.0) + total

    def family(self, name: str, doc: str) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        fam = HistogramMetricFamily(name, doc, labels=["sweep"])
        for sweep, counts in sorted(self.counts.items()):
            cumulative, running = [], 0
            for bound, n in zip([*map(_le, self.bounds), "+Inf"], counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            fam.add_metric([sweep], cumulative, self.sums[sweep])
        return fam


def _le(bound: float) -> str:
    return repr(float(bound))


class WorkerMetrics(Events):
    def __init__(self, worker_id: str | None = None, *, max_error_types: int = 50,
                 clock: Callable[[], float] = time.time) -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.max_error_types = max_error_types
        self.clock = clock
        self._lock = threading.Lock()
        self.points: Counter[tuple[str, str]] = Counter()
        self.chunks: Counter[tuple[str, str]] = Counter()
        self.redeliveries: Counter[tuple[str, str]] = Counter()
        self.extensions: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.error_types: set[str] = set()
        self.chunk_seconds = _Histogram(CHUNK_BUCKETS)
        self.point_seconds = _Histogram(POINT_BUCKETS)
        self.in_flight: Counter[str] = Counter()
        self.children = 0
        self.restarts = 0
        self.started = clock()
        self.heartbeat = self.started

    # -- events (the supervisor's thread) -----------------------------------------------

    def chunk_report(self, report: ChunkReport) -> None:
        sweep = report.sweep_id
        with self._lock:
            self.chunks[sweep, report.outcome] += 1
            if report.failures and report.last_failure:
                self.redeliveries[sweep, report.last_failure] += 1
            for status, n in report.statuses.items():
                self.points[sweep, status] += n
            if report.outcome == "computed":
                self.chunk_seconds.add(sweep, bucket_counts([int(report.seconds * 1e9)], CHUNK_BUCKETS),
                                       report.seconds)
            if any(report.point_buckets):
                self.point_seconds.add(sweep, report.point_buckets, report.point_seconds)
            for kind, n in report.error_types.items():
                self.errors[sweep, self._error_type(kind)] += n

    def _error_type(self, kind: str) -> str:
        if kind in self.error_types or len(self.error_types) < self.max_error_types:
            self.error_types.add(kind)
            return kind
        return "other"

    def chunk_failed(self, lease: Lease, failure: Failure) -> None:
        with self._lock:
            self.chunks[lease.sweep_id, failure.kind] += 1
            if lease.failures and lease.last_failure is not None:
                self.redeliveries[lease.sweep_id, lease.last_failure.kind] += 1

    def lease_extended(self, lease: Lease) -> None:
        with self._lock:
            self.extensions[lease.sweep_id] += 1

    def lease_lost(self, lease: Lease) -> None:
        with self._lock:
            self.lost[lease.sweep_id] += 1
            self.chunks[lease.sweep_id, "lost"] += 1

    def watch(self, supervisor: Supervisor) -> Callable[[], bool]:
        """An ``on_tick`` for the supervisor: notes its children and leases each tick."""

        def tick() -> bool:
            leased = Counter(s.lease.sweep_id for s in supervisor.slots.values() if s.lease is not None)
            with self._lock:
                self.in_flight = leased
                self.children = sum(1 for s in supervisor.slots.values() if s.process.is_alive())
                self.restarts = supervisor.restarts
                self.heartbeat = self.clock()
            return False

        return tick

    # -- the collector (the HTTP server's thread) ------------------------------------------

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        from ..version import __version__

        def counter(name: str, doc: str, labels: list[str], data: Counter[Any]) -> Metric:
            fam = CounterMetricFamily(name, doc, labels=labels)
            for key, value in sorted(data.items()):
                fam.add_metric(list(key) if isinstance(key, tuple) else [key], value)
            return fam

        with self._lock:
            yield counter("ttg_worker_points", "Points committed by this worker, by status.",
                          ["sweep", "status"], self.points)
            yield counter("ttg_worker_chunks", "Chunks handled by this worker, by outcome.",
                          ["sweep", "outcome"], self.chunks)
            yield self.chunk_seconds.family("ttg_worker_chunk_duration_seconds",
                                            "Seconds from lease to ack of computed chunks.")
            yield self.point_seconds.family("ttg_worker_point_duration_seconds",
                                            "Seconds one call of the function took.")
            yield counter("ttg_worker_redeliveries", "Chunks leased again after a failed attempt, "
                          "by the kind of the last failure.", ["sweep", "reason"], self.redeliveries)
            yield counter("ttg_worker_lease_extensions", "Heartbeats that extended a lease.",
                          ["sweep"], self.extensions)
            yield counter("ttg_worker_leases_lost", "Leases found taken by another worker.",
                          ["sweep"], self.lost)
            yield counter("ttg_worker_errors", "Failed points by exception type.",
                          ["sweep", "type"], self.errors)
            in_flight = GaugeMetricFamily("ttg_worker_chunks_in_flight", "Chunks leased right now.",
                                          labels=["sweep"])
            for sweep, n in sorted(self.in_flight.items()):
                in_flight.add_metric([sweep], n)
            yield in_flight
            yield GaugeMetricFamily("ttg_worker_children", "Live child processes.", value=self.children)
            yield CounterMetricFamily("ttg_worker_child_restarts",
                                      "Children replaced after dying or being recycled.",
                                      value=self.restarts)
            yield GaugeMetricFamily("ttg_worker_up", "1 while the worker's supervisor runs.", value=1)
            yield GaugeMetricFamily("ttg_worker_heartbeat_timestamp_seconds",
                                    "Unix time of the supervisor loop's last tick.", value=self.heartbeat)
            yield GaugeMetricFamily("ttg_worker_start_time_seconds", "Unix time the worker started.",
                                    value=self.started)
        yield InfoMetricFamily("ttg_worker", "The worker's id (host-pid) and TTG version.",
                               value={"worker": self.worker_id, "version": __version__})


def registry(*collectors: Any) -> CollectorRegistry:
    """A registry of its own (never prometheus_client's global one) with these
    collectors and this process's own metrics (process_*)."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    for c in collectors:
        reg.register(c)
    return reg


def serve(reg: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``reg`` at http://HOST:PORT/metrics in a daemon thread; returns a stopper."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=reg)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def run_observed(settings: Settings, options: ChildOptions, broker: Broker, host: str,
                 port: int) -> Supervisor:
    """Run a worker's supervisor (``ttg worker``) with its metrics served on HOST:PORT;
    returns it, stopped."""
    from dataclasses import replace

    from .supervisor import Supervisor

    metrics = WorkerMetrics()
    supervisor = Supervisor(settings, replace(options, report_chunks=True), broker, events=metrics)
    supervisor.on_tick = metrics.watch(supervisor)
    try:
        stop = serve(registry(metrics), host, port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port} ({exc}); choose another "
                          "--metrics-port or --metrics-host.") from exc
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        supervisor.run()
    finally:
        stop()
    return supervisor
