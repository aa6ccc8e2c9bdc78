"""What happens to chunks, told to whoever listens: metrics, log context.

``Events`` is a no-op observer. The worker loop (a child process) calls
``chunk_leased``, ``committed`` and ``chunk_finished``; the supervisor calls
``chunk_report`` (a child's summary of one chunk, sent over its pipe),
``chunk_failed``, ``lease_extended`` and ``lease_lost``. A subscriber overrides
what it needs; ``Fanout`` tells several. Nothing here imports
prometheus_client: counting is plain data, exporting is metrics.py's job.

Children do not export metrics themselves. A ``Tally`` in the child sums up
each chunk into a small ``ChunkReport`` (counts by status, point durations
already bucketed, error types) and sends it to the supervisor, which owns the
only registry. So the children's numbers are aggregated by construction,
survive a child's death, and cost one pipe message per chunk.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import logs
from ..brokers.base import Lease
from ..core.records import ChunkRecords
from ..core.retry import Failure

#: Upper bounds (seconds) of the point-duration histogram buckets.
POINT_BUCKETS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                                    30.0, 120.0, 600.0)
#: Upper bounds (seconds) of the chunk-duration histogram buckets.
CHUNK_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                                    1800.0)
#: How a child finished with a chunk (``chunk_finished``'s ``outcome``).
OUTCOMES = ("computed", "skipped", "split", "isolated", "rejected", "refused")


class Events:
    """The no-op observer; every hook returns at once."""

    # -- in the child (the worker loop) --

    def chunk_leased(self, lease: Lease) -> None:
        """A chunk was leased and is about to be handled."""

    def committed(self, sweep_id: str, records: ChunkRecords) -> None:
        """These records were committed (the store accepted them)."""

    def chunk_finished(self, lease: Lease, outcome: str) -> None:
        """The chunk was acked or dead-lettered; ``outcome`` is one of OUTCOMES."""

    # -- in the supervisor --

    def chunk_report(self, report: ChunkReport) -> None:
        """A child's summary of a chunk it finished."""

    def chunk_failed(self, lease: Lease, failure: Failure) -> None:
        """A child died (crashed, or was killed for a timeout) holding this lease."""

    def lease_extended(self, lease: Lease) -> None:
        """The heartbeat pushed this lease's deadline ahead."""

    def lease_lost(self, lease: Lease) -> None:
        """The heartbeat found this lease taken by someone else."""


class Fanout(Events):
    """Tells every subscriber, in order."""

    def __init__(self, *subscribers: Events) -> None:
        self.subscribers = subscribers

    def chunk_leased(self, lease: Lease) -> None:
        for s in self.subscribers:
            s.chunk_leased(lease)

    def committed(self, sweep_id: str, records: ChunkRecords) -> None:
        for s in self.subscribers:
            s.committed(sweep_id, records)

    def chunk_finished(self, lease: Lease, outcome: str) -> None:
        for s in self.subscribers:
            s.chunk_finished(lease, outcome)

    def chunk_report(self, report: ChunkReport) -> None:
        for s in self.subscribers:
            s.chunk_report(report)

    def chunk_failed(self, lease: Lease, failure: Failure) -> None:
        for s in self.subscribers:
            s.chunk_failed(lease, failure)

    def lease_extended(self, lease: Lease) -> None:
        for s in self.subscribers:
            s.lease_extended(lease)

    def lease_lost(self, lease: Lease) -> None:
        for s in self.subscribers:
            s.lease_lost(lease)


@dataclass
class ChunkReport:
    """One chunk as a child handled it, summed up (picklable, a few hundred bytes)."""

    sweep_id: str
    outcome: str
    #: seconds from lease to ack (or dead letter)
    seconds: float
    #: failed attempts before this one, and the kind of the last ("crashed", "timeout", "lost")
    failures: int = 0
    last_failure: str | None = None
    #: committed points by status
    statuses: dict[str, int] = field(default_factory=dict)
    #: committed points per POINT_BUCKETS bucket (not cumulative; the last is +Inf)
    point_buckets: list[int] = field(default_factory=lambda: [0] * (len(POINT_BUCKETS) + 1))
    point_seconds: float = 0.0
    #: failed points by exception type ("crashed" / "timeout" for isolated indices)
    error_types: dict[str, int] = field(default_factory=dict)

    def add(self, records: ChunkRecords) -> None:
        for status, n in records.counts().items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        for k, n in enumerate(bucket_counts(records.durations, POINT_BUCKETS)):
            self.point_buckets[k] += n
        self.point_seconds += sum(records.durations) / 1e9
        if records.errors:
            for kind, n in Counter(e[0] for e in records.errors.values()).items():
                self.error_types[kind] = self.error_types.get(kind, 0) + n


def bucket_counts(durations_ns: Sequence[int], bounds: Sequence[float]) -> list[int]:
    """How many durations fall in each bucket ``(bounds[k-1], bounds[k]]``, plus
    one last bucket for what exceeds every bound. Vectorized: a chunk may hold a
    million points."""
    import numpy as np

    edges = np.asarray(bounds, dtype=np.float64) * 1e9
    where = np.searchsorted(edges, np.asarray(durations_ns, dtype=np.float64), side="left")
    return [int(n) for n in np.bincount(where, minlength=len(bounds) + 1)]


class Tally(Events):
    """In a child: sums each chunk up and hands the ChunkReport to ``send``
    (the pipe to the supervisor)."""

    def __init__(self, send: Callable[[ChunkReport], Any], clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.send = send
        self.clock = clock
        self._report: ChunkReport | None = None
        self._started = 0.0

    def chunk_leased(self, lease: Lease) -> None:
        self._started = self.clock()
        last = lease.last_failure.kind if lease.last_failure is not None else None
        self._report = ChunkReport(lease.sweep_id, "computed", 0.0, lease.failures, last)

    def committed(self, sweep_id: str, records: ChunkRecords) -> None:
        if self._report is not None:
            self._report.add(records)

    def chunk_finished(self, lease: Lease, outcome: str) -> None:
        report, self._report = self._report, None
        if report is None:
            return
        report.outcome = outcome
        report.seconds = self.clock() - self._started
        self.send(report)


class LogContext(Events):
    """In a worker child: puts the chunk being handled into every log line (ttg.logs)."""

    def __init__(self, worker_id: str) -> None:
        logs.set_worker(worker_id)

    def chunk_leased(self, lease: Lease) -> None:
        logs.set_chunk(lease.sweep_id, f"{lease.chunk.start}-{lease.chunk.stop}")

    def chunk_finished(self, lease: Lease, outcome: str) -> None:
        logs.set_chunk(None, None)
