"""The messages between a supervisor and its children, over one pipe per child.

A child tells its supervisor what it holds, so that the supervisor can extend
its leases and, when it dies, release them at once with the right account:

    Leased     it computes this chunk now (the supervisor watches its timeout)
    Computed   the function is done with it; its results are being committed
    Finished   it is acked, released or dead-lettered: no longer the child's
    Report     a summary of a finished chunk, for the supervisor's metrics
    Refused    it gave a chunk back, leaving its sweep to other workers, and why (presence)
    Bye        why it is about to exit ("stop", "drained", "recycle", "restart", or
               "fatal": nothing can go on, e.g. the disk is full; the detail says why)
    Call       a broker call for the supervisor to run (worker/proxy.py)

and hears, from the supervisor:

    Stop       lease nothing more; finish the current chunk and exit
    Reply      the answer to a Call (its value, or the error to raise)

The pipe is a ``multiprocessing`` connection between two processes of one
machine (it pickles; nothing on it ever crosses a network).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from ..brokers.base import Lease
from .events import ChunkReport


@dataclass(frozen=True)
class Leased:
    #: the lease, without its message body (the supervisor does not need it)
    lease: Lease
    #: seconds one call of the function may take, or None
    timeout: float | None
    #: the timeout guards an event loop running several points (worker/aio.py), not one call
    loop: bool = False


@dataclass(frozen=True)
class Computed:
    token: str


@dataclass(frozen=True)
class Finished:
    token: str


@dataclass(frozen=True)
class Report:
    report: ChunkReport


@dataclass(frozen=True)
class Refused:
    sweep_id: str
    reason: str
    token: str  # the chunk it gave back: no longer the child's


@dataclass(frozen=True)
class Bye:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Call:
    seq: int
    #: one of worker.proxy's requests
    request: Any


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Reply:
    seq: int
    ok: bool
    #: the call's result when ok, else the TtgError to raise in the child
    value: Any


ToSupervisor = Leased | Computed | Finished | Report | Refused | Bye | Call
ToChild = Stop | Reply


class ChildPipe:
    """A child's end: reports to the supervisor, hears Stop, carries proxied calls."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._stop = False
        self._seq = 0
        #: replies that arrived while waiting for another one, by call number
        self._replies: dict[int, Reply] = {}

    def send(self, msg: ToSupervisor) -> None:
        self.conn.send(msg)

    def leased(self, lease: Lease, timeout: float | None, *, loop: bool = False) -> None:
        self.send(Leased(replace(lease, body=b""), timeout, loop))

    def computed(self, lease: Lease) -> None:
        self.send(Computed(lease.token))

    def finished(self, lease: Lease) -> None:
        self.send(Finished(lease.token))

    def report(self, report: ChunkReport) -> None:
        self.send(Report(report))

    def refused(self, lease: Lease, reason: str) -> None:
        self.send(Refused(lease.sweep_id, reason, lease.token))

    def bye(self, reason: str, detail: str = "") -> None:
        self.send(Bye(reason, detail))

    def stop_requested(self) -> bool:
        while not self._stop and self.conn.poll():
            self._take(self.conn.recv())
        return self._stop

    def send_call(self, request: Any) -> int:
        """Send a request without waiting; ``result`` collects its reply."""
        self._seq += 1
        self.send(Call(self._seq, request))
        return self._seq

    def result(self, seq: int) -> Any:
        """The reply to call ``seq`` (waiting for it); its error re-raises here."""
        while seq not in self._replies:
            self._take(self.conn.recv())
        reply = self._replies.pop(seq)
        if reply.ok:
            return reply.value
        raise reply.value

    def call(self, request: Any) -> Any:
        return self.result(self.send_call(request))

    def _take(self, msg: ToChild) -> None:
        if isinstance(msg, Stop):
            self._stop = True
        else:
            self._replies[msg.seq] = msg
