"""The broker contract: every broker backend passes the same tests.

The bodies use only the public Broker interface (ttg.brokers.base), so a new
backend joins by adding its name to ``BROKERS`` in tests/conftest.py. A test
that needs a second client (another worker, or a broker with a short lease)
opens one from the same URL with ``reopen``. Lease timing is driven by short
``lease_seconds`` and real sleeps, because a networked broker's clock lives on
its server.

The ``broker`` fixture must hand each test an empty backend: some tests lease
without a sweep filter, drain the whole queue or read the overall stats.

Brokers differ in three documented ways (``Capabilities``), and the tests
follow them rather than skip: a lease is lost when its deadline passes, or
(RabbitMQ) when the connection that took it closes — ``lose()`` does whichever
applies; resubmitting a queued chunk adds nothing, or (RabbitMQ) queues it
again; and ``stats().leased`` counts other clients' leases at once, or
(RabbitMQ, through its management API) some seconds late.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ttg.brokers import Broker, Lease, QueueStats, open_broker
from ttg.core.chunking import Chunk, plan
from ttg.core.retry import Failure
from ttg.errors import LeaseLost
from ttg.settings import Settings
from ttg.testing import MemoryBroker

from ..conftest import broker_url

#: Lease lifetime of the brokers that let leases expire on purpose.
SHORT = 0.3

Opener = Callable[..., Broker]


@pytest.fixture
def url(request: pytest.FixtureRequest, broker: Broker, home: Path) -> str:
    """The URL of the ``broker`` fixture's backend, to open more clients of it ("" for
    the in-memory broker, which has none)."""
    kind = request.node.callspec.params["broker"]
    return "" if kind == "memory" else broker_url(kind, home)


@pytest.fixture
def reopen(url: str, broker: Broker, settings: Settings) -> Iterator[Opener]:
    """Open another client of the ``broker`` fixture's backend (same URL), closed at teardown.

    ``reopen(lease_seconds=0.3)`` gives a client whose leases expire quickly.
    """
    opened: list[Broker] = []

    def open_(lease_seconds: float | None = None) -> Broker:
        if isinstance(broker, MemoryBroker):
            b: Broker = broker.client(lease_seconds)
        else:
            b = open_broker(settings.with_overrides(lease_seconds=lease_seconds), url)
        opened.append(b)
        return b

    yield open_
    for b in opened:
        b.close()


@pytest.fixture
def sid() -> Callable[[str], str]:
    """Unique sweep ids (a second guard, besides the fixture's empty backend,
    against seeing another test's chunks)."""
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"


@dataclass(frozen=True)
class Capabilities:
    #: a lease lives with the connection that took it (and is lost when it closes), not a deadline
    connection_leases: bool = False
    #: resubmitting a chunk that is queued or leased adds nothing
    dedupes: bool = True
    #: ``stats().leased`` counts every client's leases at once
    exact_leased: bool = True
    #: clients in other processes share the queue (the in-memory broker's live in one process)
    processes: bool = True


CAPABILITIES = {
    "LocalBroker": Capabilities(), "RedisBroker": Capabilities(),
    "MemoryBroker": Capabilities(processes=False),
    "RabbitBroker": Capabilities(connection_leases=True, dedupes=False, exact_leased=False),
}


def caps(b: Broker) -> Capabilities:
    return CAPABILITIES[type(b).__name__]


def lose(b: Broker, period: float = SHORT) -> None:
    """Make every lease ``b`` holds lost, the way a dead worker's are: its lease
    period passes with no heartbeat, or its connection closes."""
    if caps(b).connection_leases:
        b.close()
    else:
        time.sleep(period + 0.15)


def assert_stats(b: Broker, sweep_id: str | None, expected: QueueStats) -> None:
    """Compare stats; ``leased`` only where the broker counts other clients' leases at once."""
    got = b.stats(sweep_id)
    if not caps(b).exact_leased:
        got, expected = (got.queued, got.dead), (expected.queued, expected.dead)  # type: ignore[assignment]
    assert got == expected


def items(chunks: list[Chunk], sweep_id: str = "") -> list[tuple[Chunk, bytes]]:
    return [(c, f"{sweep_id}:{c.start}:{c.stop}".encode()) for c in chunks]


def drain(b: Broker, *, sweep_id: str | None = None, timeout: float = 0.1) -> list[Lease]:
    """Lease (and ack) everything leasable now, in the order the broker hands it out."""
    out = []
    while (lease := b.lease("drain", timeout=timeout, sweep_id=sweep_id)) is not None:
        out.append(lease)
        b.ack(lease)
    return out


# -- submit and lease ---------------------------------------------------------


def test_submit_counts_new_chunks_and_is_idempotent(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    chunks = list(plan(0, 100, 10))
    assert broker.submit(s, items(chunks, s)) == 10
    if not caps(broker).dedupes:
        # AMQP cannot ask what a queue holds: a resubmitted chunk is queued again (the
        # client queues only uncommitted ranges, and a worker acks a committed chunk
        # without computing it, so the duplicate costs a lease, not a result)
        assert broker.submit(s, items(chunks[:2], s)) == 2
        assert_stats(broker, s, QueueStats(queued=12))
        return
    assert broker.submit(s, items(chunks, s)) == 0
    # half old, half new: only the new ones count
    more = list(plan(50, 150, 10))
    assert broker.submit(s, items(more, s)) == 5
    assert_stats(broker, s, QueueStats(queued=15))
    # a leased chunk is not queued again either
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    assert broker.submit(s, items([lease.chunk], s)) == 0
    assert_stats(broker, s, QueueStats(queued=14, leased=1))
    # the same range in another sweep is another chunk, and a batch that repeats
    # a chunk adds it once
    assert broker.submit(sid("other"), items(chunks[:1] * 3)) == 1
    assert broker.stats(sid("other")) == QueueStats(queued=1)


def test_submit_accepts_a_generator(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    assert broker.submit(s, ((c, b"x") for c in plan(0, 30, 10))) == 3
    assert broker.stats(s).queued == 3


def test_lease_carries_the_chunk_as_submitted(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, [(Chunk(5, 9), b"\x00body\xff")], priority=3)
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    assert (lease.sweep_id, lease.chunk, lease.body) == (s, Chunk(5, 9), b"\x00body\xff")
    assert (lease.failures, lease.attempt, lease.last_failure) == (0, 1, None)
    assert lease.priority == 3
    assert lease.token
    assert_stats(broker, s, QueueStats(leased=1))


def test_lease_returns_none_on_an_empty_queue_within_its_timeout(broker: Broker) -> None:
    t0 = time.monotonic()
    assert broker.lease("w", timeout=0.3) is None
    took = time.monotonic() - t0
    assert 0.25 <= took < 1.3


def test_lease_waits_for_a_chunk_submitted_meanwhile(broker: Broker, reopen: Opener,
                                                     sid: Callable[[str], str]) -> None:
    s = sid("s")
    other = reopen()
    submitter = threading.Timer(0.3, lambda: other.submit(s, items([Chunk(0, 1)], s)))
    submitter.start()
    try:
        t0 = time.monotonic()
        lease = broker.lease("w", timeout=1.5)
        assert lease is not None and lease.chunk == Chunk(0, 1)
        assert 0.2 < time.monotonic() - t0 < 1.4
    finally:
        submitter.join(5)


def _lease_all(settings: Settings, url: str, go: Any, out: Any, worker: str,
               client: Broker | None = None) -> None:
    """Child process (or thread, with its ``client``): lease and ack until the queue is
    empty; report (start, stop, token) of every lease, or the error that stopped it."""
    got: list[tuple[int, int, str]] = []
    try:
        b = client or open_broker(settings, url)  # never a connection inherited across fork
        go.wait(10)
        while (lease := b.lease(worker, timeout=0.3)) is not None:
            got.append((lease.chunk.start, lease.chunk.stop, lease.token))
            time.sleep(0.0005)  # a little work, so no process drains the queue alone
            b.ack(lease)
        b.close()
        out.put((worker, got, None))
    except BaseException as exc:  # report, so the parent fails with the reason
        out.put((worker, got, repr(exc)))


class _ThreadContext:
    """``multiprocessing``'s Event, Queue and Process, as threads, each with a client
    of ``broker``'s queue (for a broker that lives in one process)."""

    def __init__(self, broker: Broker) -> None:
        import queue

        self.broker = broker
        self.Event, self.Queue = threading.Event, queue.Queue

    def Process(self, target: Any, args: tuple[Any, ...]) -> Any:
        assert isinstance(self.broker, MemoryBroker)
        thread = threading.Thread(target=target, args=(*args, self.broker.client()), daemon=True)
        thread.exitcode = 0  # type: ignore[attr-defined]
        return thread


def test_lease_is_exclusive_across_processes(broker: Broker, url: str, settings: Settings,
                                             sid: Callable[[str], str]) -> None:
    """Eight clients lease at once, each in a process of its own (in threads where
    the backend lives in one process)."""
    s = sid("s")
    chunks = list(plan(0, 200, 1))
    assert broker.submit(s, items(chunks, s)) == 200
    ctx: Any = multiprocessing.get_context("fork")
    if not caps(broker).processes:
        ctx = _ThreadContext(broker)
    go = ctx.Event()
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_lease_all, args=(settings, url, go, out, f"w{k}")) for k in range(8)]
    for p in procs:
        p.start()
    go.set()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=60))
    finally:
        for p in procs:
            p.join(10)
    errors = [(w, e) for w, _, e in results if e]
    assert not errors
    assert [p.exitcode for p in procs] == [0] * 8
    leased = [(a, b) for _, got, _ in results for a, b, _ in got]
    tokens = [t for _, got, _ in results for *_, t in got]
    assert sorted(leased) == [(c.start, c.stop) for c in chunks], "some chunk leased twice or never"
    assert len(set(tokens)) == len(tokens)
    assert sum(1 for _, got, _ in results if got) >= 2, "the processes did not run concurrently"
    assert_stats(broker, s, QueueStats())


# -- expiry, extend -----------------------------------------------------------


def test_an_expired_lease_is_redelivered_as_a_lost_attempt(broker: Broker, reopen: Opener,
                                                          sid: Callable[[str], str]) -> None:
    s = sid("s")
    b = reopen(lease_seconds=SHORT)
    b.submit(s, items([Chunk(0, 10)], s))
    first = b.lease("w1", timeout=1)
    assert first is not None
    assert b.lease("w2", timeout=0) is None  # still leased
    lose(b)
    again = b.lease("w2", timeout=1)
    assert again is not None
    assert again.chunk == first.chunk and again.body == first.body
    assert again.token != first.token
    assert (again.failures, again.attempt) == (1, 2)
    assert again.last_failure is not None and again.last_failure.kind == "lost"
    assert_stats(b, s, QueueStats(leased=1))
    # a second loss counts again
    lose(b)
    third = b.lease("w3", timeout=1)
    assert third is not None and third.failures == 2
    assert third.last_failure is not None and third.last_failure.kind == "lost"


def test_extend_keeps_the_lease(broker: Broker, reopen: Opener, sid: Callable[[str], str]) -> None:
    s = sid("s")
    period = 0.5  # heartbeats every 0.1 s leave 0.4 s of slack on a busy machine
    b = reopen(lease_seconds=period)
    other = reopen(lease_seconds=period)
    b.submit(s, items([Chunk(0, 10)], s))
    lease = b.lease("w1", timeout=1)
    assert lease is not None
    end = time.monotonic() + 2 * period
    while time.monotonic() < end:  # two lease periods, kept alive by heartbeats
        time.sleep(0.1)
        extended = b.extend(lease)
        assert (extended.chunk, extended.token) == (lease.chunk, lease.token)
        assert extended.deadline >= lease.deadline
        lease = extended
        assert other.lease("w2", timeout=0) is None
    assert_stats(b, s, QueueStats(leased=1))
    # once the heartbeats stop, the chunk comes back
    lose(b, period)
    again = other.lease("w2", timeout=1)
    assert again is not None and again.chunk == lease.chunk
    assert again.failures == 1


def test_extend_after_the_lease_was_lost_raises(broker: Broker, reopen: Opener,
                                                sid: Callable[[str], str]) -> None:
    s = sid("s")
    b = reopen(lease_seconds=SHORT)
    other = reopen(lease_seconds=SHORT)
    b.submit(s, items([Chunk(0, 10)], s))
    lost = b.lease("w1", timeout=1)
    assert lost is not None
    lose(b)
    owner = other.lease("w2", timeout=1)
    assert owner is not None and owner.chunk == lost.chunk
    with pytest.raises(LeaseLost):
        b.extend(lost)
    # the new owner is undisturbed
    assert other.extend(owner).chunk == owner.chunk
    assert_stats(b, s, QueueStats(leased=1))


def test_extend_after_ack_raises(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    broker.ack(lease)
    with pytest.raises(LeaseLost):
        broker.extend(lease)


def test_ack_is_idempotent(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items(list(plan(0, 20, 10)), s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    broker.ack(lease)
    broker.ack(lease)
    assert_stats(broker, s, QueueStats(queued=1))
    rest = broker.lease("w", timeout=1)
    assert rest is not None and rest.chunk != lease.chunk
    broker.ack(lease)  # a late duplicate ack does not touch the other chunk
    assert_stats(broker, s, QueueStats(leased=1))
    broker.ack(rest)
    assert_stats(broker, s, QueueStats())
    assert broker.lease("w", timeout=0.1) is None


def test_ack_and_lease_acks_then_leases_the_next_without_waiting(broker: Broker,
                                                                  sid: Callable[[str], str]) -> None:
    s, other = sid("s"), sid("other")
    broker.submit(s, items(list(plan(0, 20, 10)), s))
    first = broker.lease("w", timeout=1, sweep_id=s)
    assert first is not None
    second = broker.ack_and_lease(first, "w", sweep_id=s)
    assert second is not None and second.chunk != first.chunk and second.attempt == 1
    assert_stats(broker, s, QueueStats(leased=1))
    with pytest.raises(LeaseLost):  # the first is acked for good
        broker.extend(first)
    # nothing left: the ack still happens, and it returns at once
    broker.submit(other, items([Chunk(0, 1)], other))
    t0 = time.monotonic()
    assert broker.ack_and_lease(second, "w", sweep_id=s) is None
    assert time.monotonic() - t0 < 0.5
    assert_stats(broker, s, QueueStats())
    assert_stats(broker, other, QueueStats(queued=1))  # sweep_id was respected
    # an ack of a lease that is no longer ours is a no-op, and the lease still comes
    again = broker.ack_and_lease(first, "w")
    assert again is not None and again.sweep_id == other


# -- release ------------------------------------------------------------------


def test_release_without_failure_does_not_count_an_attempt(broker: Broker,
                                                          sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    broker.release(lease)
    assert_stats(broker, s, QueueStats(queued=1))
    again = broker.lease("w", timeout=1)
    assert again is not None and again.chunk == lease.chunk
    assert (again.failures, again.last_failure) == (0, None)


def test_release_with_failure_counts_it(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    broker.release(lease, failure=Failure("crashed", "child died with SIGSEGV", index=7))
    again = broker.lease("w", timeout=1)
    assert again is not None and again.chunk == Chunk(0, 10)
    assert (again.failures, again.attempt) == (1, 2)
    assert again.last_failure == Failure("crashed", "child died with SIGSEGV", 7)
    broker.release(again, failure=Failure("timeout", "ran past 5 s"))
    third = broker.lease("w", timeout=1)
    assert third is not None and third.failures == 2
    assert third.last_failure == Failure("timeout", "ran past 5 s", None)
    # a release without failure keeps the history as it is
    broker.release(third)
    fourth = broker.lease("w", timeout=1)
    assert fourth is not None and fourth.failures == 2
    assert fourth.last_failure == third.last_failure


def test_release_with_delay(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    t0 = time.monotonic()
    broker.release(lease, failure=Failure("crashed", "boom"), delay=0.6)
    assert broker.lease("w", timeout=0.2) is None
    assert_stats(broker, s, QueueStats(queued=1))
    again = broker.lease("w", timeout=1.5)
    assert again is not None and again.chunk == lease.chunk
    assert time.monotonic() - t0 >= 0.5
    assert again.failures == 1


def test_release_with_delay_lets_other_chunks_pass(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10), Chunk(10, 20)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None and lease.chunk == Chunk(0, 10)
    broker.release(lease, delay=5)
    other = broker.lease("w", timeout=1)
    assert other is not None and other.chunk == Chunk(10, 20)


def test_stale_release_and_ack_do_not_disturb_the_new_owner(broker: Broker, reopen: Opener,
                                                            sid: Callable[[str], str]) -> None:
    s = sid("s")
    b = reopen(lease_seconds=SHORT)
    other = reopen(lease_seconds=SHORT)
    b.submit(s, items([Chunk(0, 10)], s))
    stale = b.lease("w1", timeout=1)
    assert stale is not None
    lose(b)
    owner = other.lease("w2", timeout=1)
    assert owner is not None and owner.chunk == stale.chunk
    b.release(stale)
    b.release(stale, failure=Failure("crashed", "late report"), delay=0)
    b.ack(stale)
    b.dead_letter(stale, "late dead letter")
    owner = other.extend(owner)
    assert other.lease("w3", timeout=0) is None  # not handed out twice
    assert_stats(b, s, QueueStats(leased=1))
    assert b.dead_letters(s) == []
    # the stale reports did not change the chunk's history
    other.release(owner)
    again = other.lease("w2", timeout=1)
    assert again is not None and again.failures == 1
    assert again.last_failure is not None and again.last_failure.kind == "lost"


# -- dead letters, stats ------------------------------------------------------


def test_dead_letter(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 10), Chunk(10, 20)], s))
    lease = broker.lease("w", timeout=1)
    assert lease is not None
    broker.dead_letter(lease, "not allowed: evil.module:fn")
    broker.dead_letter(lease, "not allowed: evil.module:fn")  # idempotent
    assert_stats(broker, s, QueueStats(queued=1, dead=1))
    dead = broker.dead_letters(s)
    assert len(dead) == 1
    assert (dead[0].sweep_id, dead[0].chunk) == (s, lease.chunk)
    assert dead[0].reason == "not allowed: evil.module:fn"
    with pytest.raises(LeaseLost):
        broker.extend(lease)
    # it is never leased again
    rest = drain(broker)
    assert [x.chunk for x in rest] == [Chunk(10, 20)]
    assert broker.dead_letters(sid("other")) == []


def test_dead_letters_are_listed_oldest_first(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items(list(plan(0, 30, 10)), s))
    for k in range(3):
        lease = broker.lease("w", timeout=1)
        assert lease is not None
        broker.dead_letter(lease, f"reason {k}")
    dead = broker.dead_letters(s)
    assert [d.reason for d in dead] == ["reason 0", "reason 1", "reason 2"]
    assert [d.chunk for d in dead] == list(plan(0, 30, 10))
    assert dead[0].at <= dead[1].at <= dead[2].at


def test_stats_per_sweep_and_overall(broker: Broker, sid: Callable[[str], str]) -> None:
    a, b = sid("a"), sid("b")
    assert_stats(broker, None, QueueStats())
    assert_stats(broker, a, QueueStats())
    broker.submit(a, items(list(plan(0, 30, 10)), a))
    broker.submit(b, items(list(plan(0, 40, 10)), b))
    la = broker.lease("w", timeout=1, sweep_id=a)
    lb1 = broker.lease("w", timeout=1, sweep_id=b)
    lb2 = broker.lease("w", timeout=1, sweep_id=b)
    assert la is not None and lb1 is not None and lb2 is not None
    broker.dead_letter(lb1, "poison")
    broker.ack(la)
    assert_stats(broker, a, QueueStats(queued=2, leased=0, dead=0))
    assert_stats(broker, b, QueueStats(queued=2, leased=1, dead=1))
    assert_stats(broker, None, QueueStats(queued=4, leased=1, dead=1))
    assert broker.stats().active == 5


# -- cancel -------------------------------------------------------------------


def test_cancel_drops_only_that_sweeps_chunks(broker: Broker, sid: Callable[[str], str]) -> None:
    a, b = sid("a"), sid("b")
    broker.submit(a, items(list(plan(0, 30, 10)), a))
    broker.submit(b, items(list(plan(0, 20, 10)), b))
    held = broker.lease("w", timeout=1, sweep_id=a)
    assert held is not None
    dropped = broker.cancel(a)
    # the docstring counts the dropped chunks; whether the leased one counts is the backend's choice
    assert dropped in (2, 3)
    assert broker.stats(a).queued == 0
    assert_stats(broker, b, QueueStats(queued=2))
    with pytest.raises(LeaseLost):
        broker.extend(held)
    # its owner's late release or ack brings nothing back
    broker.release(held, failure=Failure("crashed", "late"))
    broker.ack(held)
    assert broker.stats(a).active == 0
    assert broker.lease("w", timeout=0.1, sweep_id=a) is None
    rest = drain(broker)
    assert {x.sweep_id for x in rest} == {b}
    assert len(rest) == 2


def test_submitting_again_uncancels(broker: Broker, sid: Callable[[str], str]) -> None:
    a = sid("a")
    chunks = list(plan(0, 30, 10))
    broker.submit(a, items(chunks, a))
    held = broker.lease("w", timeout=1)
    assert held is not None
    broker.cancel(a)
    assert broker.submit(a, items(chunks, a)) == 3
    assert_stats(broker, a, QueueStats(queued=3))
    # the old lease stays lost; the resubmitted chunks are leased normally
    with pytest.raises(LeaseLost):
        broker.extend(held)
    broker.ack(held)
    broker.release(held)
    got = drain(broker, sweep_id=a)
    assert sorted(x.chunk for x in got) == chunks
    assert all(x.failures == 0 for x in got)


def test_cancel_of_an_unknown_sweep_is_harmless(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    broker.submit(s, items([Chunk(0, 1)], s))
    assert broker.cancel(sid("nothing")) == 0
    assert_stats(broker, s, QueueStats(queued=1))


# -- order --------------------------------------------------------------------


def test_higher_priority_first_then_fifo(broker: Broker, sid: Callable[[str], str]) -> None:
    low, high, mid = sid("low"), sid("high"), sid("mid")
    broker.submit(low, items(list(plan(0, 30, 10)), low), priority=0)
    broker.submit(high, items(list(plan(0, 30, 10)), high), priority=5)
    broker.submit(mid, items(list(plan(0, 20, 10)), mid), priority=2)
    broker.submit(high, items(list(plan(30, 50, 10)), high), priority=5)  # a later batch
    got = [(x.sweep_id, x.chunk.start, x.priority) for x in drain(broker)]
    assert got == [
        (high, 0, 5), (high, 10, 5), (high, 20, 5), (high, 30, 5), (high, 40, 5),
        (mid, 0, 2), (mid, 10, 2),
        (low, 0, 0), (low, 10, 0), (low, 20, 0),
    ]


def test_fifo_within_a_priority(broker: Broker, sid: Callable[[str], str]) -> None:
    s = sid("s")
    chunks = list(plan(0, 50, 1))
    order = chunks[:]
    random.Random(7).shuffle(order)
    broker.submit(s, items(order, s))
    assert [x.chunk for x in drain(broker)] == order


def test_lease_of_one_sweep(broker: Broker, sid: Callable[[str], str]) -> None:
    a, b = sid("a"), sid("b")
    broker.submit(a, items(list(plan(0, 30, 10)), a), priority=9)
    broker.submit(b, items(list(plan(0, 20, 10)), b), priority=0)
    got = drain(broker, sweep_id=b)
    assert [(x.sweep_id, x.chunk) for x in got] == [(b, Chunk(0, 10)), (b, Chunk(10, 20))]
    assert broker.lease("w", timeout=0.1, sweep_id=b) is None
    assert_stats(broker, a, QueueStats(queued=3))
    assert {x.sweep_id for x in drain(broker)} == {a}


def test_lease_skips_the_sweeps_it_is_told_to(broker: Broker, sid: Callable[[str], str]) -> None:
    """A worker that leaves a sweep to others (it may not run it) still gets the
    other sweeps' chunks, though the skipped one comes first by priority."""
    a, b, c = sid("a"), sid("b"), sid("c")
    broker.submit(a, items(list(plan(0, 30, 10)), a), priority=9)
    broker.submit(b, items(list(plan(0, 20, 10)), b), priority=5)
    broker.submit(c, items([Chunk(0, 10)], c), priority=0)
    got = broker.lease("w", timeout=1, skip={a})
    assert got is not None and got.sweep_id == b
    after = broker.ack_and_lease(got, "w", skip=[a, b])
    assert after is not None and after.sweep_id == c
    broker.ack(after)
    assert broker.lease("w", timeout=0.1, skip={a, b, c}) is None
    assert broker.lease("w", timeout=0.1, sweep_id=a, skip={a}) is None
    assert_stats(broker, a, QueueStats(queued=3))
    assert_stats(broker, b, QueueStats(queued=1))
    assert [x.sweep_id for x in drain(broker)] == [a, a, a, b]


def test_lease_of_one_sweep_redelivers_its_expired_leases(broker: Broker, reopen: Opener,
                                                          sid: Callable[[str], str]) -> None:
    a, b = sid("a"), sid("b")
    br = reopen(lease_seconds=SHORT)
    br.submit(a, items([Chunk(0, 10)], a))
    br.submit(b, items([Chunk(0, 10)], b))
    la = br.lease("w", timeout=1, sweep_id=a)
    lb = br.lease("w", timeout=1, sweep_id=b)
    assert la is not None and lb is not None
    lose(br)
    again = br.lease("w", timeout=1, sweep_id=b)
    assert again is not None and (again.sweep_id, again.failures) == (b, 1)
    # a's expired lease was not touched by b's lease call
    br.extend(again)
    again_a = br.lease("w", timeout=1, sweep_id=a)
    assert again_a is not None and (again_a.sweep_id, again_a.failures) == (a, 1)


def test_another_client_sees_the_same_queue(broker: Broker, reopen: Opener,
                                           sid: Callable[[str], str]) -> None:
    """What one client submits, another leases; both see the same counts."""
    s = sid("s")
    other = reopen()
    broker.submit(s, items(list(plan(0, 20, 10)), s))
    if caps(broker).dedupes:
        assert other.submit(s, items(list(plan(0, 20, 10)), s)) == 0
    lease = other.lease("w", timeout=1)
    assert lease is not None
    assert_stats(broker, s, QueueStats(queued=1, leased=1))
    other.ack(lease)
    assert_stats(broker, s, QueueStats(queued=1))


def test_context_manager_closes(broker: Broker, reopen: Opener, sid: Callable[[str], str]) -> None:
    s = sid("s")
    with reopen() as b:
        assert b.submit(s, items([Chunk(0, 1)], s)) == 1
    with reopen() as b:
        assert_stats(b, s, QueueStats(queued=1))
