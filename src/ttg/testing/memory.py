"""An in-memory broker: the whole contract in one process, for tests that drive
a worker in-process (threads) with an injected clock.

``MemoryBroker()`` makes a queue; ``client()`` opens another client of the
same queue (another worker). It behaves as the embedded broker does: leases
have deadlines on the broker's clock, an expired lease is redelivered by the
next ``lease`` as a lost attempt, and resubmitting a live chunk adds nothing.
It passes the broker contract suite (tests/contract).
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from ..brokers.base import Broker, DeadLetter, Lease, QueueStats, poll
from ..core.chunking import Chunk
from ..core.clock import SYSTEM, Clock
from ..core.retry import Failure
from ..errors import LeaseLost

_LOST = Failure("lost", "the lease expired: its worker died, hung or was cut off")


@dataclass
class _Entry:
    sweep: str
    chunk: Chunk
    body: bytes
    priority: int
    seq: int
    ready_at: float = 0.0
    token: str | None = None
    deadline: float = 0.0
    failures: int = 0
    last_failure: Failure | None = None


@dataclass
class _Queues:
    """What every client of one memory broker shares."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    chunks: dict[tuple[str, int, int], _Entry] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    seq: itertools.count[int] = field(default_factory=itertools.count)


class MemoryBroker(Broker):
    def __init__(self, lease_seconds: float = 10.0, clock: Clock = SYSTEM, *,
                 queues: _Queues | None = None) -> None:
        super().__init__(lease_seconds, clock)
        self._q = queues or _Queues()

    def client(self, lease_seconds: float | None = None) -> MemoryBroker:
        """Another client of the same queues (as another worker would open)."""
        return MemoryBroker(self.lease_seconds if lease_seconds is None else lease_seconds, self.clock,
                            queues=self._q)

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        with self._q.lock:
            self._q.cancelled.discard(sweep_id)
            new = 0
            for chunk, body in items:
                key = (sweep_id, chunk.start, chunk.stop)
                if key not in self._q.chunks:
                    self._q.chunks[key] = _Entry(sweep_id, chunk, body, priority, next(self._q.seq))
                    new += 1
            return new

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        return poll(lambda: self._try_lease(sweep_id, skip), timeout, 0.005)

    def _try_lease(self, sweep_id: str | None, skip: Collection[str]) -> Lease | None:
        now = self.clock.monotonic()
        with self._q.lock:
            mine = [e for e in self._q.chunks.values()
                    if (sweep_id is None or e.sweep == sweep_id) and e.sweep not in skip]
            expired = [e for e in mine if e.token is not None and e.deadline < now]
            if expired:
                entry = min(expired, key=lambda e: e.deadline)
                entry.failures += 1
                entry.last_failure = _LOST
            else:
                ready = [e for e in mine if e.token is None and e.ready_at <= now]
                if not ready:
                    return None
                entry = min(ready, key=lambda e: (-e.priority, e.seq))
            entry.token = secrets.token_hex(8)
            entry.deadline = now + self.lease_seconds
            return Lease(entry.sweep, entry.chunk, entry.body, entry.token, entry.deadline, entry.failures,
                         entry.last_failure, entry.priority, fresh=entry.failures == 0)

    def _owned(self, lease: Lease) -> _Entry | None:
        entry = self._q.chunks.get((lease.sweep_id, lease.chunk.start, lease.chunk.stop))
        return entry if entry is not None and entry.token == lease.token else None

    def extend(self, lease: Lease) -> Lease:
        with self._q.lock:
            entry = self._owned(lease)
            if entry is None:
                raise LeaseLost(f"lease on {lease.sweep_id} {lease.chunk} was lost; another worker "
                                "has the chunk (or it was acked or cancelled).")
            entry.deadline = self.clock.monotonic() + self.lease_seconds
            return replace(lease, deadline=entry.deadline)

    def ack(self, lease: Lease) -> None:
        with self._q.lock:
            if self._owned(lease) is not None:
                del self._q.chunks[(lease.sweep_id, lease.chunk.start, lease.chunk.stop)]

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        with self._q.lock:
            entry = self._owned(lease)
            if entry is None:
                return
            if lease.sweep_id in self._q.cancelled:
                del self._q.chunks[(lease.sweep_id, lease.chunk.start, lease.chunk.stop)]
                return
            entry.token = None
            entry.ready_at = self.clock.monotonic() + delay
            if failure is not None:
                entry.failures += 1
                entry.last_failure = failure

    def dead_letter(self, lease: Lease, reason: str) -> None:
        with self._q.lock:
            if self._owned(lease) is not None:
                del self._q.chunks[(lease.sweep_id, lease.chunk.start, lease.chunk.stop)]
                self._q.dead.append(DeadLetter(lease.sweep_id, lease.chunk, reason, self.clock.time()))

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        with self._q.lock:
            return [d for d in self._q.dead if d.sweep_id == sweep_id]

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        with self._q.lock:
            mine = [e for e in self._q.chunks.values() if sweep_id is None or e.sweep == sweep_id]
            leased = sum(1 for e in mine if e.token is not None)
            dead = sum(1 for d in self._q.dead if sweep_id is None or d.sweep_id == sweep_id)
            return QueueStats(len(mine) - leased, leased, dead)

    def cancel(self, sweep_id: str) -> int:
        with self._q.lock:
            self._q.cancelled.add(sweep_id)
            gone = [k for k, e in self._q.chunks.items() if e.sweep == sweep_id]
            for k in gone:
                del self._q.chunks[k]
            return len(gone)
