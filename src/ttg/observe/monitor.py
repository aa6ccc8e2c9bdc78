"""Watching sweeps from outside the workers: what the exporter and the dashboard show.

Everything is read through the Broker, ResultStore and PresenceStore interfaces
(``store.sweeps()``, ``broker.stats()``, ``store.chunks()``, ``presence.workers()``...), never a
backend's internals, so it works with every backend. One lock serializes the
calls: the exporter's HTTP threads and the dashboard's thread pool share one
broker and one store, and not every driver is thread-safe.

Workers are seen two ways: by their presence beats
(``presence()``: alive, stale or stopped, what they hold now; stores/presence.py)
and by the records they committed (``workers()``).

Throughput is measured here: each read of a sweep's progress is a sample
(time, points done), and the throughput is the slope over the last
``window`` seconds; the ETA is what is left at that pace. The samples are
kept for ``keep`` seconds for the dashboard's throughput chart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..brokers import open_broker
from ..brokers.base import Broker, DeadLetter, QueueStats
from ..core.codec import Codec
from ..core.failures import shown_state
from ..core.sweep import Sweep
from ..settings import Settings
from ..stores import open_presence, open_store
from ..stores.base import Progress, ResultStore
from ..stores.presence import STATUSES, PresenceStore, WorkerBeat, liveness, supervisor_of


@dataclass(frozen=True)
class SweepStatus:
    sweep: Sweep
    #: "active", "cancelled", "stopped" (by its failure limit) or "done"
    state: str
    progress: Progress
    queue: QueueStats
    updated: float
    #: points per second over the window; None until two samples are far enough apart
    throughput: float | None
    #: seconds left at that pace; None when unknown (no throughput yet, or none)
    eta: float | None

    def to_json(self) -> dict[str, Any]:
        p, q = self.progress, self.queue
        return {"id": self.sweep.id, "function": self.sweep.function, "state": self.state,
                "kind": self.sweep.space.get("kind"), "fields": self.sweep.fields,
                "total": p.total, "done": p.done, "failed": p.failed, "by_status": p.by_status(),
                "queued": q.queued, "leased": q.leased, "dead": q.dead, "updated": self.updated,
                "throughput": self.throughput, "eta": self.eta}


@dataclass
class WorkerSeen:
    """A worker id as seen in a sweep's committed records."""

    worker: str
    points: int = 0
    chunks: int = 0
    #: when the monitor first saw its newest chunk (None: committed before it looked)
    last_commit: float | None = None


@dataclass(frozen=True)
class WorkerPresence:
    """A worker supervisor as the monitor sees it now."""

    worker: str
    #: "alive", "stale", "stopped" (presence.liveness), or "unknown": it committed
    #: records but left no beat (pruned, or written by a TTG without presence)
    status: str
    #: its last beat, or None when unknown
    beat: WorkerBeat | None = None
    #: seconds since that beat, on the monitor's clock
    age: float | None = None
    #: what this monitor saw it commit (to one sweep, when asked for one)
    points: int = 0
    chunks: int = 0
    last_commit: float | None = None

    def to_json(self) -> dict[str, Any]:
        b = self.beat
        return {"worker": self.worker, "status": self.status, "age": self.age,
                "host": b.host if b else None, "pid": b.pid if b else None,
                "started": b.started if b else None, "beat": b.beat if b else None,
                "interval": b.interval if b else None, "state": b.state if b else None,
                "children": b.children if b else None, "chunks_done": b.chunks if b else None,
                "leases": [{"sweep": s, "start": a, "stop": z} for s, a, z in b.leases] if b else [],
                "points": self.points, "chunks": self.chunks, "last_commit": self.last_commit,
                "refusing": {s: why for s, why in b.refusing} if b else {}}


@dataclass
class _History:
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    #: chunk start -> (worker, points, first seen) for the worker table
    seen: dict[int, tuple[str, int, float | None]] = field(default_factory=dict)
    scanned: bool = False


class SweepMonitor:
    def __init__(self, broker: Broker, store: ResultStore, presence: PresenceStore, *, window: float = 30.0,
                 keep: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.broker, self.store, self.presence_store = broker, store, presence
        self.window, self.keep, self.clock = window, keep, clock
        self.lock = threading.RLock()
        self._history: dict[str, _History] = {}

    # -- progress ------------------------------------------------------------------

    def sweeps(self) -> list[SweepStatus]:
        """Every sweep in the store, newest first, with its queue and pace."""
        with self.lock:
            infos = self.store.sweeps()
            return [self._status(i.sweep, i.state, i.progress, i.updated) for i in infos]

    def status(self, sweep_id: str) -> SweepStatus:
        """One sweep (raises SweepNotFound)."""
        with self.lock:
            sweep = self.store.sweep(sweep_id)
            info = next((i for i in self.store.sweeps() if i.sweep.id == sweep_id), None)
            updated = info.updated if info is not None else sweep.created
            return self._status(sweep, self.store.state(sweep_id), self.store.progress(sweep_id), updated)

    def _status(self, sweep: Sweep, state: str, p: Progress, updated: float) -> SweepStatus:
        queue = self.broker.stats(sweep.id)
        now = self.clock()
        rate = self._sample(sweep.id, now, p.done)
        eta: float | None = None
        state = shown_state(state, sweep.options.max_failures, p.failed, p.total)
        if p.complete:  # without samples while it ran: its average pace from start to last commit
            state, rate, eta = "done", rate or p.total / max(updated - sweep.created, 1e-3), 0.0
        elif rate:
            eta = (p.total - p.done) / rate
        return SweepStatus(sweep, state, p, queue, updated, rate, eta)

    def _sample(self, sweep_id: str, now: float, done: int) -> float | None:
        h = self._history.setdefault(sweep_id, _History())
        s = h.samples
        if not s or now - s[-1][0] >= 0.5:
            s.append((now, done))
        while s and now - s[0][0] > self.keep:
            s.popleft()
        recent = [x for x in s if now - x[0] <= self.window]
        if len(recent) < 2 or recent[-1][0] - recent[0][0] < 1.0:
            return None
        (t0, d0), (t1, d1) = recent[0], recent[-1]
        return max(d1 - d0, 0) / (t1 - t0)

    def throughput_series(self, sweep_id: str, step: float = 2.0) -> list[tuple[float, float]]:
        """(time, points per second) between samples at least ``step`` seconds apart."""
        with self.lock:
            h = self._history.get(sweep_id)
            samples = list(h.samples) if h is not None else []
        out: list[tuple[float, float]] = []
        last: tuple[float, int] | None = None
        for t, d in samples:
            if last is None:
                last = (t, d)
            elif t - last[0] >= step:
                out.append((t, max(d - last[1], 0) / (t - last[0])))
                last = (t, d)
        return out

    # -- records ---------------------------------------------------------------------

    def column_chunks(self, sweep_id: str) -> Generator[dict[str, list[Any]], None, None]:
        """The results table's columns chunk by chunk (holds the lock while it runs),
        noting which worker committed each chunk as it goes."""
        from ..client.table import Table

        with self.lock:
            h = self._history.setdefault(sweep_id, _History())
            now = None if not h.scanned else self.clock()
            for cols in Table(self.store, self.store.sweep(sweep_id)).column_chunks():
                start = cols["index"][0]
                if start not in h.seen:
                    h.seen[start] = (cols["worker"][0], len(cols["index"]), now)
                yield cols
            h.scanned = True

    def workers(self, sweep_id: str) -> list[WorkerSeen]:
        """Workers that committed to this sweep, from what the last scan saw; most recent first."""
        with self.lock:
            h = self._history.get(sweep_id)
            seen = list(h.seen.values()) if h is not None else []
        by: dict[str, WorkerSeen] = {}
        for worker, n, at in seen:
            w = by.setdefault(worker, WorkerSeen(worker))
            w.points += n
            w.chunks += 1
            if at is not None and (w.last_commit is None or at > w.last_commit):
                w.last_commit = at
        return sorted(by.values(), key=lambda w: (-(w.last_commit or 0.0), w.worker))

    def presence(self, sweep_id: str | None = None) -> list[WorkerPresence]:
        """Worker supervisors by their presence beats: alive first, then stale, then
        stopped, newest beat first. With ``sweep_id``: those holding a lease on it
        now or seen committing to it (with what they committed; supervisors seen
        only in records are "unknown")."""
        with self.lock:
            beats = self.presence_store.workers()
        now = self.clock()
        committed = self._committed_by_supervisor(sweep_id) if sweep_id is not None else {}
        out = []
        for b in beats:
            seen = committed.pop(b.worker, None)
            involved = seen is not None or sweep_id in b.sweeps() or b.worked_on(sweep_id or "") or \
                any(s == sweep_id for s, _ in b.refusing)
            if sweep_id is not None and not involved:
                continue
            out.append(WorkerPresence(b.worker, liveness(b, now), b, max(0.0, now - b.beat),
                                      *(seen or (0, 0, None))))
        out += [WorkerPresence(w, "unknown", None, None, *seen) for w, seen in committed.items()]
        rank = {s: k for k, s in enumerate(STATUSES)}
        return sorted(out, key=lambda p: (rank.get(p.status, len(rank)), p.age if p.age is not None
                                          else float("inf"), p.worker))

    def _committed_by_supervisor(self, sweep_id: str) -> dict[str, tuple[int, int, float | None]]:
        by: dict[str, tuple[int, int, float | None]] = {}
        for w in self.workers(sweep_id):
            sup = supervisor_of(w.worker)
            points, chunks, last = by.get(sup, (0, 0, None))
            if w.last_commit is not None and (last is None or w.last_commit > last):
                last = w.last_commit
            by[sup] = (points + w.points, chunks + w.chunks, last)
        return by

    def errors(self, sweep_id: str, limit: int = 50) -> list[Any]:
        """The first ``limit`` failed indices (table.ErrorRow)."""
        from ..client.table import Table

        with self.lock:
            out = []
            for row in Table(self.store, self.store.sweep(sweep_id)).errors():
                out.append(row)
                if len(out) >= limit:
                    break
            return out

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        with self.lock:
            return self.broker.dead_letters(sweep_id)

    # -- the two actions -------------------------------------------------------------------

    def cancel(self, sweep_id: str) -> int:
        """Cancel a sweep (as ``ttg cancel``): drop its queued chunks; results stay."""
        from ..client.submit import cancel

        with self.lock:
            return cancel(sweep_id, self.broker, self.store)

    def retry(self, sweep_id: str, codec: Codec) -> int:
        """Re-queue the failed indices (as ``ttg retry --no-workers``); returns how many."""
        from ..client.submit import requeue_failed

        with self.lock:
            return requeue_failed(self.store.sweep(sweep_id), self.broker, self.store, codec)

    def service(self) -> None:
        """Keep the broker's connection alive (called every few seconds)."""
        with self.lock:
            self.broker.service()


@contextmanager
def open_monitor(settings: Settings) -> Iterator[SweepMonitor]:
    """A monitor of the settings' broker, store and presence, closed on exit."""
    with open_broker(settings) as broker, open_store(settings) as store, \
            open_presence(settings) as presence:
        yield SweepMonitor(broker, store, presence)
