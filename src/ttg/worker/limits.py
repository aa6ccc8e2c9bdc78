"""A sweep's failure limit (``--max-failures``), enforced by the workers.

The worker that commits a chunk with failed points of a sweep that has a limit
reads the sweep's counts (one request, only then) and, once its failed points
reach the limit, cancels it: the sweep's state becomes cancelled and its queued
chunks are dropped, so every worker stops taking them; chunks being computed
still commit. ``ttg status`` and ``ttg run`` then name the limit as the reason
(core/failures.py, ``stopped_reason``). Resubmitting the sweep with a higher
limit (or after ``ttg retry``) goes on.
"""

from __future__ import annotations

import logging

from ..brokers.base import Broker
from ..core.failures import stopped_reason
from ..core.records import ChunkRecords
from ..stores.base import ResultStore
from .task import Task

log = logging.getLogger("ttg.worker")


class FailureLimits:
    """The limits of the sweeps this worker computes, checked after each commit."""

    def __init__(self, broker: Broker, store: ResultStore) -> None:
        self.broker, self.store = broker, store
        #: sweep id -> its limit ("10", "5%"), as its latest chunk message said
        self._limits: dict[str, str | None] = {}

    def note(self, task: Task) -> None:
        self._limits[task.sweep_id] = task.max_failures

    def committed(self, sweep_id: str, rec: ChunkRecords) -> None:
        """``rec`` of ``sweep_id`` was committed (in the loop's thread: the store is free)."""
        limit = self._limits.get(sweep_id)
        if limit is None or rec.statuses is None:
            return
        p = self.store.progress(sweep_id)
        reason = stopped_reason(limit, p.failed, p.total)
        if reason is None or self.store.state(sweep_id) == "cancelled":
            return
        self.store.set_state(sweep_id, "cancelled")
        dropped = self.broker.cancel(sweep_id)
        log.warning("sweep %s %s; %d queued chunk(s) cancelled", sweep_id, reason, dropped)
