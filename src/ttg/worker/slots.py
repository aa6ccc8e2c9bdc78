"""What a supervisor knows of one child: its process, its pipe, what it holds.

One ``Slot`` per child, and in it one record per lease the child holds, so
that forgetting a lease is one call (``forget``) wherever it happens: the
child finished it, the heartbeat found it lost, or the child died.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ..brokers.base import Lease
from ..core.retry import Failure


class ChildProcess(Protocol):
    """A child as the supervisor drives it (``multiprocessing.Process`` is one;
    ttg.testing has one that runs in a thread)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes readable when the child has exited."""

    @property
    def exitcode(self) -> int | None: ...

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def kill(self) -> None:
        """SIGKILL: the child dies at once, wherever it is."""


@dataclass
class Slot:
    number: int
    process: ChildProcess
    conn: Connection
    #: shared int64s written by the child: [index being computed + 1 (0: none), tries
    #: started in place (core/failures.py)]
    beacon: memoryview
    #: the chunk the child computes, since when (supervisor's monotonic clock) and its
    #: per-call timeout
    lease: Lease | None = None
    started: float = 0.0
    timeout: float | None = None
    #: the timeout guards an event loop (async points at once), not one call
    loop: bool = False
    #: the other chunks it holds, by token: handed to it and not started yet (leased
    #: ahead, worker/proxy.py), or computed and being committed or not yet acked. A
    #: death releases them without counting an attempt.
    held: dict[str, Lease] = field(default_factory=dict)
    #: why the supervisor killed it (a timeout), or None
    killed_for: Failure | None = None
    #: killed at the end of the grace period: release without counting an attempt
    killed_for_shutdown: bool = False
    #: the child's last word (protocol.Bye), e.g. "drained": do not replace it
    retiring: str | None = None
    #: the beacon's index when last looked at, and since when it (and the tries of
    #: that index) have not changed
    watched_index: int = 0
    watched_tries: int = 0
    watched_since: float = 0.0

    def computing(self, lease: Lease, timeout: float | None, now: float, *, loop: bool = False) -> None:
        """The child started computing ``lease`` (``loop``: on an event loop, whose
        standing still ``timeout`` limits, worker/aio.py)."""
        self.held.pop(lease.token, None)
        self.lease, self.timeout, self.loop = lease, timeout, loop
        self.started = self.watched_since = now
        self.watched_index = 0

    def computed(self, token: str) -> bool:
        """The child computed the chunk ``token``: it holds it until its ack. True
        when that was the chunk it was computing."""
        if self.lease is None or self.lease.token != token:
            return False
        self.held[token] = self.lease
        self.lease = None
        return True

    def forget(self, token: str) -> None:
        """The child is done with this chunk (acked, released or dead-lettered)."""
        if self.lease is not None and self.lease.token == token:
            self.lease = None
        self.held.pop(token, None)

    def leases(self) -> list[Lease]:
        """Everything it holds: the chunk it computes first."""
        return ([self.lease] if self.lease is not None else []) + list(self.held.values())

    def send(self, msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError):
            pass  # a dead child's pipe; its sentinel tells the rest

    def kill(self) -> None:
        self.process.kill()
