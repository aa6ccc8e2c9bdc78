"""The sweep-level Prometheus exporter (``ttg exporter``, and /metrics of ``ttg dashboard``).

At each scrape ``SweepCollector`` reads every sweep through the monitor
(``store.sweeps()`` and ``broker.stats()``: the interfaces, so every backend
works) and reports it. Throughput and ETA come from the monitor's samples of
progress (monitor.py). If the broker or the store cannot be read, the scrape
still answers, with ``ttg_exporter_backend_up 0`` and no sweep series.

Metrics, each labelled by ``sweep`` (a sweep id: bounded by the sweeps you keep):

ttg_sweep_size_points                      points in the sweep's space
ttg_sweep_done_points                      points with a committed record (any status)
ttg_sweep_failed_points                    points recorded as error, crashed or timeout
ttg_sweep_committed_points{status}         points committed, by status
ttg_sweep_queued_chunks                    chunks waiting in the broker
ttg_sweep_leased_chunks                    chunks leased by workers
ttg_sweep_dead_chunks                      chunks in the dead-letter record
ttg_sweep_throughput_points_per_second     points done per second over the last 30 s
ttg_sweep_eta_seconds                      seconds left at that pace (absent while unknown)
ttg_sweep_complete                         1 when every point has a record
ttg_sweep_active                           1 while the sweep is neither complete nor cancelled
ttg_sweep_last_update_timestamp_seconds    Unix time of the sweep's last commit or state change
ttg_sweep_info{function,state}             1 (state: active, cancelled, done)
ttg_workers{status}                        worker supervisors by their presence beats in the store
                                           (no sweep label; status: alive, stale, stopped)
ttg_exporter_backend_up                    1 when the broker and the store could be read (no sweep label)
ttg_exporter_scrape_duration_seconds       seconds the last read took (no sweep label)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..core.records import STATUSES
from ..errors import TtgError
from ..stores.presence import STATUSES as WORKER_STATUSES
from .monitor import SweepMonitor, SweepStatus, WorkerPresence

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)


class SweepCollector:
    def __init__(self, monitor: SweepMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        workers: list[WorkerPresence] | None = None
        try:
            sweeps = self.monitor.sweeps()
            workers = self.monitor.presence()
            up = 1
        except TtgError as exc:
            log.warning("exporter: cannot read the sweeps: %s", exc)
            sweeps, up = [], 0
        yield from _sweep_families(sweeps)
        if workers is not None:
            by_status = GaugeMetricFamily("ttg_workers", "Worker supervisors by their presence beats "
                                          "(alive: a beat within 3 intervals).", labels=["status"])
            for status in WORKER_STATUSES:
                by_status.add_metric([status], sum(1 for w in workers if w.status == status))
            yield by_status
        yield GaugeMetricFamily("ttg_exporter_backend_up",
                                "1 when the broker and the store could be read.", value=up)
        yield GaugeMetricFamily("ttg_exporter_scrape_duration_seconds",
                                "Seconds reading the sweeps took.", value=time.perf_counter() - started)


def _sweep_families(sweeps: list[SweepStatus]) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["sweep", *extra])

    size = gauge("ttg_sweep_size_points", "Points in the sweep's space.")
    done = gauge("ttg_sweep_done_points", "Points with a committed record (any status).")
    failed = gauge("ttg_sweep_failed_points", "Points recorded as error, crashed or timeout.")
    by_status = gauge("ttg_sweep_committed_points", "Points committed, by status.", ("status",))
    queued = gauge("ttg_sweep_queued_chunks", "Chunks waiting in the broker.")
    leased = gauge("ttg_sweep_leased_chunks", "Chunks leased by workers.")
    dead = gauge("ttg_sweep_dead_chunks", "Chunks in the dead-letter record.")
    rate = gauge("ttg_sweep_throughput_points_per_second", "Points done per second over the last 30 s.")
    eta = gauge("ttg_sweep_eta_seconds", "Seconds left at the current throughput.")
    complete = gauge("ttg_sweep_complete", "1 when every point has a record.")
    active = gauge("ttg_sweep_active", "1 while the sweep is neither complete nor cancelled.")
    updated = gauge("ttg_sweep_last_update_timestamp_seconds",
                    "Unix time of the sweep's last commit or state change.")
    info = gauge("ttg_sweep_info", "The sweep's function and state.", ("function", "state"))
    for s in sweeps:
        sid, p, q = [s.sweep.id], s.progress, s.queue
        size.add_metric(sid, p.total)
        done.add_metric(sid, p.done)
        failed.add_metric(sid, p.failed)
        counts = p.by_status()
        for status in STATUSES:
            by_status.add_metric([*sid, status], counts.get(status, 0))
        queued.add_metric(sid, q.queued)
        leased.add_metric(sid, q.leased)
        dead.add_metric(sid, q.dead)
        if s.throughput is not None:
            rate.add_metric(sid, s.throughput)
        if s.eta is not None:
            eta.add_metric(sid, s.eta)
        complete.add_metric(sid, 1 if p.complete else 0)
        active.add_metric(sid, 1 if s.state == "active" else 0)
        updated.add_metric(sid, s.updated)
        info.add_metric([*sid, s.sweep.function, s.state], 1)
    yield from (size, done, failed, by_status, queued, leased, dead, rate, eta, complete, active, updated,
                info)
