"""One sweep as ``ttg status`` tells it: progress, queue, what is stuck and why."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..brokers.base import Broker, QueueStats
from ..core.chunking import Chunk
from ..core.failures import shown_state, stopped_reason
from ..core.sweep import Sweep
from ..stores.base import Progress, ResultStore
from ..stores.presence import PresenceStore, liveness
from .submit import unresolved_dead


@dataclass(frozen=True)
class Status:
    sweep: Sweep
    #: "done" (every index has a record), "active", "cancelled" or "stopped" (cancelled
    #: by its failure limit: ``reason`` says so)
    state: str
    progress: Progress
    queue: QueueStats
    #: parts of dead-lettered chunks that have no results yet (``ttg retry`` queues them again)
    dead: list[Chunk]
    #: live workers that leave this sweep's chunks to others: (worker, why)
    refusing: list[tuple[str, str]]
    #: why it stopped (its failure limit reached), or None
    reason: str | None = None


def status(sweep_id: str, broker: Broker, store: ResultStore,
           presence: PresenceStore | None = None) -> Status:
    sweep = store.sweep(sweep_id)
    progress = store.progress(sweep_id)
    state = "done" if progress.complete else store.state(sweep_id)
    state = shown_state(state, sweep.options.max_failures, progress.failed, progress.total)
    reason = stopped_reason(sweep.options.max_failures, progress.failed, progress.total)
    dead = [] if progress.complete else unresolved_dead(sweep, broker, store)
    refusing: list[tuple[str, str]] = []
    if presence is not None:
        now = time.time()
        refusing = [(b.worker, why) for b in presence.workers() if liveness(b, now) == "alive"
                    for s, why in b.refusing if s == sweep_id]
    return Status(sweep, state, progress, broker.stats(sweep_id), dead, refusing, reason)
