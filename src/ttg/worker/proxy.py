"""Broker calls relayed from a child to its supervisor, for brokers whose leases
live with a connection (``Broker.for_child``): the child's ``ProxyBroker`` sends
each call as a typed request over its pipe (worker/protocol.py), and the
supervisor's ``ProxyServer`` runs it on the connection it keeps alive.

Leasing runs one chunk ahead: with each chunk it hands out, the ProxyBroker
asks for the next one without waiting (carrying the previous chunk's ack), so
the answer is in the pipe by the time this chunk is done and a child never
waits for its supervisor between two chunks. A child thus holds up to three
chunks: the one it computes, the one it commits and the next; the supervisor
releases those it had not started, uncounted, if it dies. After a chunk that
took ``pace.LONG_SECONDS`` or more it asks only when it is done, so no chunk
waits at a busy child that another worker could start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker, DeadLetter, Lease, QueueStats
from ..core.chunking import Chunk
from ..core.clock import SYSTEM, Clock
from ..core.retry import Failure
from ..errors import TtgError
from .pace import LONG_SECONDS
from .protocol import Call, ChildPipe, Reply
from .slots import Slot

# -- the requests, one per broker call ----------------------------------------------------


@dataclass(frozen=True)
class LeaseCall:
    worker_id: str
    sweep_id: str | None
    timeout: float
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AckAndLeaseCall:
    done: Lease
    worker_id: str
    sweep_id: str | None
    #: how long the supervisor may wait for a chunk to answer (0: one try)
    wait: float
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SubmitCall:
    sweep_id: str
    items: list[tuple[Chunk, bytes]]
    priority: int


@dataclass(frozen=True)
class ExtendCall:
    lease: Lease


@dataclass(frozen=True)
class AckCall:
    lease: Lease


@dataclass(frozen=True)
class ReleaseCall:
    lease: Lease
    failure: Failure | None
    delay: float


@dataclass(frozen=True)
class DeadLetterCall:
    lease: Lease
    reason: str


@dataclass(frozen=True)
class DeadLettersCall:
    sweep_id: str


@dataclass(frozen=True)
class StatsCall:
    sweep_id: str | None


@dataclass(frozen=True)
class CancelCall:
    sweep_id: str


Request = (LeaseCall | AckAndLeaseCall | SubmitCall | ExtendCall | AckCall | ReleaseCall | DeadLetterCall
           | DeadLettersCall | StatsCall | CancelCall)


# -- the child's side -------------------------------------------------------------------------


class ProxyBroker(Broker):
    """The supervisor's broker, seen from a child."""

    def __init__(self, pipe: ChildPipe, lease_seconds: float, ahead_wait: float = 0.5,
                 clock: Clock = SYSTEM) -> None:
        """``ahead_wait``: how long the supervisor may wait for a chunk to answer a
        request made ahead (the child's poll period)."""
        super().__init__(lease_seconds, clock)
        self.pipe = pipe
        self.ahead_wait = ahead_wait
        #: the request for the next chunk, sent ahead: its call number
        self._ahead: int | None = None
        #: when the last chunk was handed out (monotonic), None after none was
        self._handed: float | None = None

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        return int(self.pipe.call(SubmitCall(sweep_id, list(items), priority)))

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        return self._next(None, worker_id, timeout, sweep_id, frozenset(skip))

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None,
                      skip: Collection[str] = ()) -> Lease | None:
        return self._next(done, worker_id, 0.0, sweep_id, frozenset(skip))

    def _next(self, done: Lease | None, worker_id: str, timeout: float, sweep_id: str | None,
              skip: frozenset[str]) -> Lease | None:
        """The chunk asked for ahead, else one asked for now (``done`` acked first
        either way); then the request for the one after goes out, unless the last
        chunk took ``pace.LONG_SECONDS`` or more."""
        now = self.clock.monotonic()
        short = self._handed is None or now - self._handed < LONG_SECONDS
        self._handed = None
        got: Lease | None = None
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            got = self.pipe.result(ahead)  # usually there already
        if got is None:  # nothing was ready ahead: ask now and wait, as without it
            request: Request = (AckAndLeaseCall(done, worker_id, sweep_id, 0.0, skip) if done is not None
                                else LeaseCall(worker_id, sweep_id, timeout, skip))
            got = self.pipe.call(request)
            done = None
            if got is None:
                return None
        self._handed = self.clock.monotonic()
        if not short:
            if done is not None:  # acked now, not with the next request
                self.pipe.call(AckCall(done))
            return got
        self._ahead = self.pipe.send_call(
            AckAndLeaseCall(done, worker_id, sweep_id, self.ahead_wait, skip) if done is not None
            else LeaseCall(worker_id, sweep_id, self.ahead_wait, skip))
        return got

    def extend(self, lease: Lease) -> Lease:
        got: Lease = self.pipe.call(ExtendCall(lease))
        return got

    def ack(self, lease: Lease) -> None:
        self.pipe.call(AckCall(lease))

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        self.pipe.call(ReleaseCall(lease, failure, delay))

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self.pipe.call(DeadLetterCall(lease, reason))

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        got: list[DeadLetter] = self.pipe.call(DeadLettersCall(sweep_id))
        return got

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        got: QueueStats = self.pipe.call(StatsCall(sweep_id))
        return got

    def cancel(self, sweep_id: str) -> int:
        return int(self.pipe.call(CancelCall(sweep_id)))


# -- the supervisor's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Waiting:
    """A lease request that waits for a chunk."""

    seq: int
    worker_id: str
    sweep_id: str | None
    give_up: float
    skip: frozenset[str]


class ProxyServer:
    """Runs the children's relayed calls on the supervisor's broker. A lease request
    that finds nothing waits (up to its timeout) without blocking the supervisor:
    ``serve`` tries it again every tick."""

    def __init__(self, broker: Broker, clock: Clock = SYSTEM) -> None:
        self.broker = broker
        self.clock = clock
        self._waiting: dict[int, _Waiting] = {}

    @property
    def waiting(self) -> bool:
        """A child waits for a chunk (the supervisor then ticks faster)."""
        return bool(self._waiting)

    def handle(self, slot: Slot, call: Call, slots: Mapping[int, Slot], *, stopping: bool) -> None:
        """Run one relayed call and answer it (a lease request may be answered later)."""
        request = call.request
        try:
            if isinstance(request, LeaseCall | AckAndLeaseCall):
                self._want(slot, call.seq, request)
                self.serve(slots, stopping=stopping)
                return
            result = self._run(slot, request)
        except TtgError as exc:
            slot.send(Reply(call.seq, False, exc))
            return
        slot.send(Reply(call.seq, True, result))

    def _want(self, slot: Slot, seq: int, request: LeaseCall | AckAndLeaseCall) -> None:
        if isinstance(request, AckAndLeaseCall):  # ack, then a lease request like any other
            self.broker.ack(request.done)
            slot.forget(request.done.token)
            wait = request.wait
        else:
            wait = request.timeout
        self._waiting[slot.number] = _Waiting(seq, request.worker_id, request.sweep_id,
                                              self.clock.monotonic() + wait, request.skip)

    def _run(self, slot: Slot, request: Any) -> Any:
        b = self.broker
        match request:
            case SubmitCall(sweep_id, items, priority):
                return b.submit(sweep_id, items, priority=priority)
            case ExtendCall(lease):
                return b.extend(lease)
            case AckCall(lease):
                b.ack(lease)
                slot.forget(lease.token)
            case ReleaseCall(lease, failure, delay):
                b.release(lease, failure=failure, delay=delay)
                slot.forget(lease.token)
            case DeadLetterCall(lease, reason):
                b.dead_letter(lease, reason)
                slot.forget(lease.token)
            case DeadLettersCall(sweep_id):
                return b.dead_letters(sweep_id)
            case StatsCall(sweep_id):
                return b.stats(sweep_id)
            case CancelCall(sweep_id):
                return b.cancel(sweep_id)
            case _:
                raise TtgError(f"unknown broker call {type(request).__name__}; the worker's child and "
                               "supervisor run different TTG versions.")
        return None

    def serve(self, slots: Mapping[int, Slot], *, stopping: bool) -> None:
        """Answer the lease requests that wait, with a chunk if one is ready (or at
        once with none while stopping: the child sees Stop next and exits)."""
        for number, want in list(self._waiting.items()):
            slot = slots.get(number)
            if slot is None:
                del self._waiting[number]
                continue
            if stopping:
                del self._waiting[number]
                slot.send(Reply(want.seq, True, None))
                continue
            try:
                lease = self.broker.lease(want.worker_id, timeout=0, sweep_id=want.sweep_id, skip=want.skip)
            except TtgError as exc:
                del self._waiting[number]
                slot.send(Reply(want.seq, False, exc))
                continue
            if lease is None and self.clock.monotonic() < want.give_up:
                continue
            del self._waiting[number]
            if lease is not None:  # ours to release, uncounted, if the child dies before it starts it
                slot.held[lease.token] = lease
            slot.send(Reply(want.seq, True, lease))

    def forget(self, slot: Slot) -> None:
        """The child is gone: drop what it waited for."""
        self._waiting.pop(slot.number, None)
