"""The broker contract: where chunks wait and are leased.

A broker knows chunks, leases, failures and dead letters, and nothing about
results. Messages are opaque bytes (see ttg.codec); the broker never decodes
them. Every method may raise BrokerUnavailable when the server cannot be
reached; backends translate their driver's errors into TTG's at this boundary.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ..chunking import Chunk
from ..retry import Failure

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    """A chunk handed to one worker until ``deadline`` (extended by heartbeats)."""

    sweep_id: str
    chunk: Chunk
    body: bytes
    #: Backend-specific proof of ownership; extend/ack/release check it.
    token: str
    deadline: float
    #: Failed attempts before this one (crashes, timeouts, lost leases).
    failures: int
    last_failure: Failure | None
    priority: int = 0

    @property
    def attempt(self) -> int:
        return self.failures + 1


@dataclass(frozen=True)
class DeadLetter:
    sweep_id: str
    chunk: Chunk
    reason: str
    at: float


@dataclass(frozen=True)
class QueueStats:
    queued: int = 0
    leased: int = 0
    dead: int = 0

    @property
    def active(self) -> int:
        return self.queued + self.leased


class Broker(ABC):
    """Queues chunks and leases them out, at least once."""

    #: True when a lease lives only as long as the connection that took it (AMQP):
    #: then a worker's children reach the broker through their supervisor, which
    #: keeps the connection alive (``service``) while they compute.
    holds_leases = False
    #: True when submitting a chunk that is already queued or leased adds nothing.
    dedupes = True
    #: True when ``stats().leased`` counts every client's leases (not only this one's).
    exact_leased = True

    def __init__(self, lease_seconds: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.lease_seconds = lease_seconds
        self.clock = clock

    @abstractmethod
    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        """Queue chunks; returns how many were new. Idempotent: a chunk of the same
        sweep and range that is already queued or leased is not added again.
        Submitting to a cancelled sweep un-cancels it."""

    @abstractmethod
    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None) -> Lease | None:
        """Block up to ``timeout`` seconds for a chunk (only of ``sweep_id`` if given).

        Highest priority first, then oldest. A lease whose deadline passed is
        re-delivered here, counted as a failed attempt of kind "lost". Returns
        None when nothing is ready in time.
        """

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None) -> Lease | None:
        """Ack ``done``, then try once (no waiting) for the next chunk, as ``lease``
        with ``timeout=0``. The worker loop calls this between chunks; a backend
        that can do both in one request overrides it, saving a round trip per chunk."""
        self.ack(done)
        return self.lease(worker_id, timeout=0, sweep_id=sweep_id)

    @abstractmethod
    def extend(self, lease: Lease) -> Lease:
        """Push the deadline ``lease_seconds`` ahead. Raises LeaseLost when the
        lease no longer owns the chunk (expired and taken by someone else, acked,
        or cancelled)."""

    @abstractmethod
    def ack(self, lease: Lease) -> None:
        """Remove the chunk for good (its results are committed). Idempotent."""

    @abstractmethod
    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        """Give the chunk back to the queue, ready after ``delay`` seconds.

        With a ``failure`` the attempt counts against the chunk's attempts;
        without one (shutdown, a child recycled) it does not. A no-op when the
        lease was lost meanwhile.
        """

    @abstractmethod
    def dead_letter(self, lease: Lease, reason: str) -> None:
        """Remove the chunk from the queue and keep it, with ``reason``, in the
        dead-letter record. Idempotent."""

    @abstractmethod
    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        """The dead-letter record of a sweep, oldest first."""

    @abstractmethod
    def stats(self, sweep_id: str | None = None) -> QueueStats:
        """Counts of queued, leased and dead chunks (of one sweep, or all)."""

    @abstractmethod
    def cancel(self, sweep_id: str) -> int:
        """Drop the sweep's queued chunks and refuse its leased ones at their next
        extend; returns how many chunks were dropped."""

    def set_capacity(self, holders: int, *, long_chunks: bool = False) -> None:  # noqa: B027 - a hint only some backends use
        """This client leases for ``holders`` chunk holders at once (a supervisor's
        children): a backend that can keep the next chunks coming ahead of the
        requests may size that by it, and should not while chunks are long
        (``long_chunks``, worker/pace.py): chunks waiting here are not for other workers."""

    def service(self) -> None:  # noqa: B027 - only connection-bound brokers need it
        """Keep the connection alive (heartbeats); called by the supervisor every tick."""

    def close(self) -> None:  # noqa: B027 - not every backend holds connections
        """Release connections. The broker must not be used afterwards."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def poll(attempt: Callable[[], T | None], timeout: float, max_sleep: float = 0.05) -> T | None:
    """Call ``attempt`` until it returns something or ``timeout`` passes, backing
    off from 2 ms to ``max_sleep`` between calls (for brokers with no blocking read)."""
    end = time.monotonic() + timeout
    sleep = 0.002
    while True:
        got = attempt()
        if got is not None:
            return got
        left = end - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(sleep, left))
        sleep = min(sleep * 2, max_sleep)
