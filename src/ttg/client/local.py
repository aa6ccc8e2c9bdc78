"""Running a sweep on local workers until it is done: ``ttg run``, ``ttg.run``,
``ttg retry``. A ``Watcher`` polls the sweep's progress from the supervisor's
tick and tells it when to stop: complete, cancelled, or stuck."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..brokers.base import Broker
from ..core import funcref
from ..core.chunking import Chunk, gaps, merged
from ..core.codec import Codec
from ..core.failures import stopped_reason
from ..core.sweep import Sweep
from ..errors import DiskFull
from ..settings import Settings
from ..stores.base import Progress, ResultStore
from ..worker.child import ChildOptions
from ..worker.supervisor import Supervisor
from .submit import requeue

log = logging.getLogger(__name__)


class Watcher:
    """Polls a sweep's progress for ``ttg run``; tells the supervisor when to stop."""

    def __init__(self, sweep: Sweep, broker: Broker, store: ResultStore,
                 show: Callable[[Progress], None] | None = None, every: float = 0.02,
                 requeue: Callable[[list[Chunk]], object] | None = None) -> None:
        """``requeue`` queues chunks again when the broker lost them (e.g. a Redis
        restarted without persistence): without it such a sweep would wait forever."""
        self.sweep, self.broker, self.store = sweep, broker, store
        self.show = show
        self.every = every
        self.requeue = requeue
        self._next = 0.0
        self._idle_since: float | None = None
        self._next_requeue = 0.0
        self.progress = store.progress(sweep.id)
        self.outcome = "running"

    def tick(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every
        self.progress = self.store.progress(self.sweep.id)
        if self.show is not None:
            self.show(self.progress)
        if self.progress.complete:
            self.outcome = "complete"
            return True
        if self.store.state(self.sweep.id) == "cancelled":  # by a user, or by its failure limit
            p = self.progress
            stopped = stopped_reason(self.sweep.options.max_failures, p.failed, p.total)
            self.outcome = "cancelled" if stopped is None else "stopped"
            return True
        if self.broker.stats(self.sweep.id).active:
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < 0.5:
            return False
        # nothing queued or leased (that we can see) and results missing
        lost = self._lost()
        if not lost:  # all of it dead-lettered: nothing will ever come
            self.outcome = "stuck"
            return True
        if self.requeue is not None and now >= self._next_requeue:
            log.warning("sweep %s: %d chunks have no results and are neither queued nor leased; "
                        "queueing them again", self.sweep.id, len(lost))
            self.requeue(lost)
            self._next_requeue = now + 30.0  # a broker with inexact lease counts: do not flood it
            self._idle_since = None
        return False

    def _lost(self) -> list[Chunk]:
        """The ranges with no results that are not dead-lettered either."""
        dead = merged(sorted((d.chunk.start, d.chunk.stop) for d in self.broker.dead_letters(self.sweep.id)))
        missing = gaps(0, self.sweep.total, self.store.committed_ranges(self.sweep.id, 0, self.sweep.total))
        return [piece for c in missing for piece in gaps(c.start, c.stop, dead)]


def run_local(settings: Settings, sweep: Sweep, broker: Broker, store: ResultStore,
              show: Callable[[Progress], None] | None = None,
              stop: Callable[[], bool] = lambda: False) -> Watcher:
    """Run local workers on ``sweep`` until it completes, is cancelled or interrupted
    (a signal, or ``stop()`` turning true)."""
    allow = funcref.AllowList([sweep.function, *settings.allow])
    options = ChildOptions(worker_id="", allow=allow, sweep_id=sweep.id, prints_to_stderr=True)
    codec = Codec(settings.secret)
    watcher = Watcher(sweep, broker, store, show,
                      requeue=lambda chunks: requeue(sweep, chunks, broker, codec))
    if watcher.tick():
        return watcher
    supervisor = Supervisor(settings, options, broker, on_tick=lambda: watcher.tick() or stop())
    supervisor.run()
    if supervisor.fatal is not None:
        raise DiskFull(supervisor.fatal)
    if watcher.outcome == "running":
        watcher.progress = store.progress(sweep.id)
        watcher.outcome = "complete" if watcher.progress.complete else "interrupted"
    return watcher
