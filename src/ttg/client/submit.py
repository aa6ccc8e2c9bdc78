"""The client side of a sweep: submit it (resuming what exists), watch it, run
local workers for it.

Submitting is idempotent: the store is asked which index ranges are already
committed and only the rest is queued, and the broker ignores chunks it
already holds. So ``ttg run`` after an interruption, or ``ttg submit`` twice,
computes nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker
from ..core import funcref
from ..core.chunking import Chunk, auto_size, gaps, plan
from ..core.codec import Codec
from ..core.records import FAILED
from ..core.sweep import Sweep
from ..errors import ConfigError
from ..settings import Settings
from ..spaces import Space
from ..spaces.files import FileSpace
from ..stores.base import Progress, ResultStore
from ..worker.child import ChildOptions
from ..worker.supervisor import Supervisor

log = logging.getLogger(__name__)

#: Messages per broker.submit call.
SUBMIT_BATCH = 1000


@dataclass(frozen=True)
class Submitted:
    sweep: Sweep
    queued: int
    already_done: int


def submit(sweep: Sweep, space: Space, broker: Broker, store: ResultStore, codec: Codec) -> Submitted:
    """Register the sweep and queue every chunk that is not committed yet."""
    first = store.find(sweep.id) is None
    store.register(sweep)
    size = sweep.options.chunk_size or auto_size(sweep.total)
    done = store.committed_ranges(sweep.id, 0, sweep.total)
    already = sum(b - a for a, b in done)
    queued = 0
    batch: list[tuple[Chunk, bytes]] = []
    for chunk, rows in _pending(sweep, space, size, done):
        batch.append((chunk, codec.encode(sweep.task(chunk, rows, first=first))))
        if len(batch) >= SUBMIT_BATCH:
            queued += broker.submit(sweep.id, batch, priority=sweep.options.priority)
            batch = []
    if batch:
        queued += broker.submit(sweep.id, batch, priority=sweep.options.priority)
    log.info("sweep %s: %d chunks queued, %d of %d points already done", sweep.id, queued, already,
             sweep.total)
    return Submitted(sweep, queued, already)


def requeue(sweep: Sweep, ranges: list[Chunk], broker: Broker, codec: Codec) -> int:
    """Queue these ranges of an existing sweep again (retry, or chunks a broker lost),
    cut to the sweep's chunk size."""
    size = sweep.options.chunk_size or auto_size(sweep.total)
    space = sweep.make_space() if sweep.is_file else None
    items = [(c, codec.encode(sweep.task(c, space.points(c.start, c.stop) if space else None)))
             for r in ranges for c in plan(r.start, r.stop, size)]
    return broker.submit(sweep.id, items, priority=sweep.options.priority)


def _pending(sweep: Sweep, space: Space, size: int,
             done: list[tuple[int, int]]) -> Iterator[tuple[Chunk, list[Any] | None]]:
    """The uncommitted pieces of the planned chunks (with their rows for file spaces)."""
    if isinstance(space, FileSpace):
        at = 0
        for rows in space.batches(size):
            whole = Chunk(at, at + len(rows))
            for piece in gaps(whole.start, whole.stop, done):
                yield piece, rows[piece.start - at:piece.stop - at]
            at = whole.stop
        return
    if not done:  # fast path: a new sweep
        for chunk in plan(0, sweep.total, size):
            yield chunk, None
        return
    for chunk in plan(0, sweep.total, size):
        for piece in gaps(chunk.start, chunk.stop, done):
            yield piece, None


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
        if self.store.state(self.sweep.id) == "cancelled":
            self.outcome = "cancelled"
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
        dead = _merged(sorted((d.chunk.start, d.chunk.stop) for d in self.broker.dead_letters(self.sweep.id)))
        missing = gaps(0, self.sweep.total, self.store.committed_ranges(self.sweep.id, 0, self.sweep.total))
        return [piece for c in missing for piece in gaps(c.start, c.stop, dead)]


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlaps merged (dead letters of a split chunk can overlap)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def run_local(settings: Settings, sweep: Sweep, broker: Broker, store: ResultStore,
              show: Callable[[Progress], None] | None = None) -> Watcher:
    """Run local workers on ``sweep`` until it completes, is cancelled or interrupted."""
    allow = funcref.AllowList([sweep.function, *settings.allow])
    options = ChildOptions(worker_id="", allow=allow, sweep_id=sweep.id)
    codec = Codec(settings.secret)
    watcher = Watcher(sweep, broker, store, show,
                      requeue=lambda chunks: requeue(sweep, chunks, broker, codec))
    if watcher.tick():
        return watcher
    supervisor = Supervisor(settings, options, broker, on_tick=watcher.tick)
    supervisor.run()
    if watcher.outcome == "running":
        watcher.progress = store.progress(sweep.id)
        watcher.outcome = "complete" if watcher.progress.complete else "interrupted"
    return watcher


def requeue_failed(sweep: Sweep, broker: Broker, store: ResultStore, codec: Codec,
                   statuses: tuple[str, ...] = FAILED) -> int:
    """Delete the records with these statuses and queue their indices again (``ttg
    retry``); returns how many indices were re-queued."""
    reopened = store.reopen(sweep.id, statuses)
    store.set_state(sweep.id, "active")
    requeue(sweep, reopened, broker, codec)
    return sum(len(c) for c in reopened)


def check_function(ref: str) -> None:
    """Import the function now, so a typo fails before anything is stored."""
    fn = funcref.resolve(ref)
    if not callable(fn):
        raise ConfigError(f"{ref!r} is not callable.")
