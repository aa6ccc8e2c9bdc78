"""The broker contract: where chunks wait and are leased.

A broker knows chunks, leases, failures and dead letters, and nothing about
results. Messages are opaque bytes (core/codec.py); the broker never decodes
them. Every method may raise BrokerUnavailable when the server cannot be
reached; backends translate their driver's errors into TTG's at this boundary.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ..core.chunking import Chunk
from ..core.clock import SYSTEM, Clock
from ..core.retry import Failure
from ..settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    """A chunk handed to one worker until ``deadline`` (extended by heartbeats)."""

    sweep_id: str
    chunk: Chunk
    body: bytes
    #: Backend-specific proof of ownership; extend/ack/release check it.
    token: str
    #: when the lease lapses unless extended, on the monotonic clock of this host (a
    #: wall-clock step never moves it)
    deadline: float
    #: Failed attempts before this one (crashes, timeouts, lost leases).
    failures: int
    last_failure: Failure | None
    priority: int = 0
    #: The broker knows that nothing of this chunk can be committed yet: it never
    #: queues a chunk twice, and this is the chunk's first delivery. The worker
    #: then does not ask the store what is committed (a round trip per chunk).
    fresh: bool = False

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

    def __init__(self, lease_seconds: float = 10.0, clock: Clock = SYSTEM) -> None:
        self.lease_seconds = lease_seconds
        self.clock = clock


    @abstractmethod
    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        """Queue chunks; returns how many were new. Idempotent: a chunk of the same
        sweep and range that is already queued or leased is not added again.
        Submitting to a cancelled sweep un-cancels it."""

    @abstractmethod
    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        """Block up to ``timeout`` seconds for a chunk (only of ``sweep_id`` if given,
        and of no sweep in ``skip``: those a worker left to others for a while).

        Highest priority first, then oldest. A lease whose deadline passed is
        re-delivered here, counted as a failed attempt of kind "lost". Returns
        None when nothing is ready in time.
        """

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None,
                      skip: Collection[str] = ()) -> Lease | None:
        """Ack ``done``, then try once (no waiting) for the next chunk, as ``lease``
        with ``timeout=0``. The worker loop calls this between chunks; a backend
        that can do both in one request overrides it, saving a round trip per chunk."""
        self.ack(done)
        return self.lease(worker_id, timeout=0, sweep_id=sweep_id, skip=skip)

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
        """Counts of queued, leased and dead chunks (of one sweep, or all); ``leased``
        counts every client's leases."""

    @abstractmethod
    def cancel(self, sweep_id: str) -> int:
        """Drop the sweep's queued chunks and refuse its leased ones at their next
        extend; returns how many chunks were dropped."""

    def set_capacity(self, holders: int, *, long_chunks: bool = False) -> None:  # noqa: B027 - a hint only some backends use
        """This client leases for ``holders`` chunk holders at once (a supervisor's
        children, when they reach the broker through it: ``for_child``): a backend
        that can keep the next chunks coming ahead of the requests may size that
        by it, and should not while chunks are long (``long_chunks``,
        worker/pace.py): chunks waiting here are not for other workers."""

    def service(self) -> None:  # noqa: B027 - only connection-bound brokers need it
        """Keep the connection alive (heartbeats); called by the supervisor every tick."""

    def close(self) -> None:  # noqa: B027 - not every backend holds connections
        """Release connections. The broker must not be used afterwards."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BrokerBackend(Broker):
    """A broker opened from a URL (``brokers.open_broker`` picks the class by scheme)."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, settings: Settings, clock: Clock = SYSTEM) -> Broker:
        """Open a client of the broker at ``url`` (``brokers.open_broker`` picks the
        class), reading time from ``clock``."""

    @classmethod
    def for_child(cls, url: str, settings: Settings, proxied: Callable[[], Broker]) -> Broker:
        """The client a worker child uses, opened in the child: by default one of
        its own. A broker whose leases live with the connection that took them
        returns ``proxied()`` instead: the child's calls are relayed to its
        supervisor's client (worker/proxy.py), whose connection the supervisor keeps
        alive (``service``) while the function runs, whatever the function does."""
        return cls.from_url(url, settings)


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
