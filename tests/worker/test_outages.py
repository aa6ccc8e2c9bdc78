"""Faults of the infrastructure are never charged to the points (issue 14, items 4,
5 and 6), driven in-process: a store or a broker that fails, a wall clock that
jumps, a worker that may not run a sweep. Every test counts records, attempts
and executions exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ttg.brokers.local import LocalBroker
from ttg.client.submit import requeue
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec
from ttg.core.funcref import AllowList
from ttg.stores.base import ResultStore
from ttg.testing import ThreadLauncher
from ttg.worker.child import ChildOptions
from ttg.worker.supervisor import Supervisor

from . import funcs
from .conftest import LEASE, Rig

QUICK = (0.01,)  # the child's waits between tries while something is down


def start(rig: Rig, sweep_id: str, children: int = 1, **options: object) -> Supervisor:
    opts = ChildOptions("rig", AllowList(["tests.worker.funcs"]), sweep_id=sweep_id, poll_seconds=0.05,
                        outage_waits=QUICK)
    opts = dataclasses.replace(opts, **options)  # type: ignore[arg-type]
    launcher = ThreadLauncher(rig.broker, rig.open_store, opts)
    rig.sup = Supervisor(rig.settings, opts, rig.broker, processes=children, launcher=launcher,
                         clock=rig.clock)
    rig.sup.start()
    return rig.sup


@pytest.mark.parametrize("in_background", [False, True], ids=["commit-in-loop", "commit-beside-next"])
def test_a_store_outage_costs_no_attempt(rig: Rig, in_background: bool, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """The store refuses commits for a while (max attempts 1: any attempt charged
    would record its points crashed): the chunk goes back uncounted, the child
    waits and goes on, and every index ends ok at its first attempt."""
    if in_background:  # as on a network store: a chunk commits while the next one computes
        real_open = rig.open_store

        def concurrent() -> ResultStore:
            store = real_open()
            store.concurrent_commit = True
            return store
        monkeypatch.setattr(rig, "open_store", concurrent)
    sweep = rig.submit("square", 60, 10, max_attempts=1)
    rig.store_faults.fail("commit", times=4)
    sup = start(rig, sweep.id)
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert rig.records(sweep) == {i: (1, "ok") for i in range(60)}
    assert sup.restarts == 0
    assert rig.store_faults.calls["commit"] == 6 + 4
    assert "chunk(s) go back uncounted" in caplog.text


def test_a_broker_outage_costs_no_attempt(rig: Rig) -> None:
    """The broker cannot be reached for a while (every call fails): what the child
    holds stays held, acks and give-backs wait until it answers, and nothing is
    charged or lost."""
    sweep = rig.submit("square", 60, 10, max_attempts=1)
    sup = start(rig, sweep.id)
    rig.until(lambda: len(rig.records(sweep)) >= 20, "two chunks")
    rig.broker.faults.down()
    for _ in range(20):
        sup.step()
    rig.broker.faults.up()
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert rig.records(sweep) == {i: (1, "ok") for i in range(60)}
    assert sup.restarts == 0 and rig.queue.stats(sweep.id).active == 0


def test_a_wall_clock_jump_expires_no_lease(rig: Rig, tmp_path: Path) -> None:
    """The embedded broker's deadlines are on the monotonic clock: the wall clock
    stepping an hour ahead (a laptop resuming, an NTP step) expires no lease, so no
    idle worker takes a chunk that is being computed."""
    funcs.reset(3)
    path = tmp_path / "broker.db"

    def local() -> LocalBroker:
        return LocalBroker(path, LEASE, rig.clock)

    sweep = rig.submit("gated_once", 20, 10)
    broker = local()
    requeue(sweep, [Chunk(0, 20)], broker, Codec())  # on the embedded broker, not the rig's queue
    opts = ChildOptions("rig", AllowList(["tests.worker.funcs"]), sweep_id=sweep.id, poll_seconds=0.05)
    rig.sup = sup = Supervisor(rig.settings, opts, broker, processes=1,
                               launcher=ThreadLauncher(local, rig.open_store, opts), clock=rig.clock)
    sup.start()
    rig.until(lambda: rig.held() == [(0, 10)], "the first chunk, hanging at index 3")
    rig.clock.jump(3600)
    with local() as other:
        taken = other.lease("idle-worker", timeout=0)
        assert taken is not None and taken.chunk == Chunk(10, 20) and taken.failures == 0  # not the held one
        assert other.lease("idle-worker", timeout=0) is None
        other.release(taken)
    rig.clock.advance(LEASE / 2)  # and the heartbeat still keeps the lease
    sup.step()
    funcs.GATE.set()
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    broker.close()
    assert sup.restarts == 0
    assert rig.records(sweep) == {i: (1, "ok") for i in range(20)}


def test_a_worker_not_allowed_leaves_the_chunks_to_others(rig: Rig) -> None:
    """A worker that may not run a sweep takes its chunks and gives them back at once,
    uncounted, never dead-lettered, and says so in its presence."""
    sweep = rig.submit("square", 30, 10)
    sup = start(rig, sweep.id, allow=AllowList(["othermod"]))
    rig.until(lambda: sweep.id in sup.refusing, "the refusal")
    assert "not on this worker's allow-list (othermod)" in sup.refusing[sweep.id][0]
    for _ in range(10):
        sup.step()
    rig.stop()
    assert sup._beat("running").refusing == ((sweep.id, sup.refusing[sweep.id][0]),)
    assert rig.records(sweep) == {} and funcs.CALLS == {}
    assert rig.queue.stats(sweep.id) == rig.queue.stats(sweep.id).__class__(queued=3)
    assert rig.queue.dead_letters(sweep.id) == []
    lease = rig.queue.client().lease("after", timeout=0)
    assert lease is not None and lease.failures == 0
