"""The supervisor, the worker loop and the heartbeat, driven in-process: children
are threads (ttg.testing.ThreadLauncher) on the in-memory broker, the clock is a
FakeClock the test steps, and faults are injected where a test needs them. Each
test counts exactly what happened: records per index, executions per index,
attempts."""

from __future__ import annotations

import logging

import pytest

from ttg.core.records import ChunkRecords
from ttg.stores.sqlite import SqliteStore

from . import funcs
from .conftest import LEASE, Rig


def test_two_children_compute_a_sweep_exactly_once(rig: Rig) -> None:
    sweep = rig.submit("square", 200, 10)
    rig.start(sweep, children=2)
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert rig.records(sweep) == {i: (1, "ok") for i in range(200)}
    assert funcs.CALLS == dict.fromkeys(range(200), 1)
    assert rig.queue.stats(sweep.id).active == 0


def test_a_child_that_dies_mid_chunk_costs_that_chunk_one_attempt(rig: Rig,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    funcs.reset(37)
    sweep = rig.submit("dies_once", 100, 10)
    sup = rig.start(sweep, children=2)
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert sup.restarts == 1
    got = rig.records(sweep)
    assert got == {i: (2 if 30 <= i < 40 else 1, "ok") for i in range(100)}
    # the dead child's chunk ran again from its start; nothing else ran twice
    assert funcs.CALLS == {i: 2 if 30 <= i <= 37 else 1 for i in range(100)}
    assert "died on" in caplog.text and "killed by SIGKILL" in caplog.text and "at index 37" in caplog.text


def test_a_call_past_its_timeout_is_killed_and_its_chunk_retried(rig: Rig) -> None:
    funcs.reset(12)
    sweep = rig.submit("gated_once", 30, 10, timeout=5.0)
    sup = rig.start(sweep)
    rig.until(lambda: rig.held() == [(10, 20)] and funcs.CALLS[12] == 1, "index 12 to hang")
    rig.until(lambda: all(s.watched_index == 13 for s in sup.slots.values()), "the supervisor to watch it")
    rig.clock.advance(4.9)  # (the fake clock: no real time has to pass)
    sup.step()
    assert sup.restarts == 0
    rig.clock.advance(0.2)
    rig.until(lambda: sup.restarts == 1, "the child to be killed for its timeout")
    funcs.GATE.set()
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert rig.records(sweep) == {i: (2 if 10 <= i < 20 else 1, "ok") for i in range(30)}


def test_the_heartbeat_extends_every_lease_a_child_holds(rig: Rig) -> None:
    funcs.reset(3)
    sweep = rig.submit("gated_once", 20, 10)
    sup = rig.start(sweep)
    rig.until(lambda: rig.held() == [(0, 10)], "the first chunk")
    deadline = next(iter(sup.slots.values())).lease.deadline  # type: ignore[union-attr]
    rig.clock.advance(LEASE / 3 - 0.5)  # not a third of the lease yet: no extend
    sup.step()
    assert rig.broker.faults.calls["extend"] == 0
    rig.clock.advance(1.0)
    rig.until(lambda: rig.broker.faults.calls["extend"] == 1, "a heartbeat")
    assert next(iter(sup.slots.values())).lease.deadline > deadline  # type: ignore[union-attr]
    for _ in range(5):  # ten lease periods later the chunk is still ours
        rig.clock.advance(LEASE / 2)
        sup.step()
    assert rig.queue.client().lease("other", timeout=0, sweep_id=sweep.id) is not None  # (the 2nd chunk)
    assert rig.queue.client().lease("other", timeout=0, sweep_id=sweep.id) is None
    funcs.GATE.set()
    rig.until(lambda: rig.held() == [], "the first chunk to be done")
    rig.stop()
    assert {i: a for i, (a, _) in rig.records(sweep).items()} == dict.fromkeys(range(10), 1)


def test_a_failed_heartbeat_is_tried_again_and_the_lease_kept(rig: Rig,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    funcs.reset(3)
    sweep = rig.submit("gated_once", 10, 10)
    sup = rig.start(sweep)
    rig.until(lambda: rig.held() == [(0, 10)], "the chunk")
    rig.broker.faults.fail("extend", times=2)
    for _ in range(2):
        rig.clock.advance(LEASE / 3 + 0.1)
        sup.step()
    assert rig.broker.faults.calls["extend"] == 2 and sup.heartbeat.broker_down
    assert caplog.text.count("failed (will retry)") == 2
    rig.clock.advance(1.0)  # 2/3 + of the lease gone: the third try succeeds in time
    sup.step()
    assert rig.broker.faults.calls["extend"] == 3 and not sup.heartbeat.broker_down
    rig.clock.advance(LEASE - 1.0)
    assert rig.queue.client().lease("other", timeout=0) is None  # still ours
    funcs.GATE.set()
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert rig.records(sweep) == {i: (1, "ok") for i in range(10)}


def test_a_lease_lost_while_the_broker_was_unreachable_stops_its_child(rig: Rig) -> None:
    """The heartbeat cannot reach the broker for longer than the lease: another
    worker takes the chunk (a lost attempt). Once the broker answers again, the
    heartbeat finds the lease lost and kills the child computing it, releasing
    nothing (the chunk is the other worker's now); the other worker's result is
    the chunk's only record."""
    funcs.reset(3)
    sweep = rig.submit("gated_once", 10, 10)
    sup = rig.start(sweep)
    rig.until(lambda: rig.held() == [(0, 10)], "the chunk")
    rig.broker.faults.fail("extend", times=None)
    rig.clock.advance(LEASE + 1)
    sup.step()
    other = rig.queue.client()
    taken = other.lease("other", timeout=0)
    assert taken is not None and taken.attempt == 2 and taken.last_failure is not None
    assert taken.last_failure.kind == "lost"
    rig.broker.faults.clear()
    rig.clock.advance(LEASE / 3 + 0.1)
    rig.until(lambda: sup.restarts == 1, "the child to be stopped")
    assert rig.queue.stats(sweep.id).leased == 1  # not released: it is the other worker's
    with SqliteStore(rig.tmp / "results.db") as store:
        assert store.commit(sweep.id, ChunkRecords(0, 10, [-1] * 10, [0] * 10, "other", 2))
    other.ack(taken)
    funcs.GATE.set()  # the dead child's thread wakes: whatever it tries now fails unseen
    rig.stop()
    assert rig.records(sweep) == {i: (2, "ok") for i in range(10)}


def test_sigterm_while_a_chunk_commits_lets_the_commit_finish(rig: Rig) -> None:
    """SIGTERM arrives while a child's commit is held up: the commit finishes
    within the grace period, its chunk is acked, the child exits as asked, and the
    chunks nobody started go back without an attempt counted."""
    sweep = rig.submit("square", 50, 10)
    gate = rig.store_faults.hold("commit")
    sup = rig.start(sweep)
    rig.until(lambda: any(s.held for s in sup.slots.values()), "a computed chunk in its commit")
    sup.signal()
    sup.step()
    assert sup.stopping and len(sup.slots) == 1  # it waits for the commit
    gate.set()
    rig.until(lambda: not sup.slots, "the child to exit")
    sup.close()
    assert sup.restarts == 0
    assert rig.records(sweep) == {i: (1, "ok") for i in range(10)}
    left = []
    client = rig.queue.client()
    while (lease := client.lease("after", timeout=0)) is not None:
        left.append((lease.chunk.start, lease.attempt))
        client.ack(lease)
    assert sorted(left) == [(10, 1), (20, 1), (30, 1), (40, 1)]


def test_sigterm_past_the_grace_period_releases_uncounted(rig: Rig) -> None:
    """A chunk still computing when the grace period ends goes back with no attempt
    counted: the worker was stopped, the chunk did nothing wrong."""
    funcs.reset(4)
    sweep = rig.submit("gated_once", 10, 10)
    sup = rig.start(sweep)
    rig.until(lambda: rig.held() == [(0, 10)], "the chunk")
    sup.signal()
    sup.step()
    rig.clock.advance(rig.settings.grace_seconds + 0.1)
    rig.until(lambda: not sup.slots, "the child to be killed")
    sup.close()
    lease = rig.queue.client().lease("after", timeout=0)
    assert lease is not None and (lease.chunk.start, lease.attempt) == (0, 1)
    assert rig.records(sweep) == {}


def test_logs_name_the_broker_outage_once_per_beat(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """With several leases held, a beat stops at its first failed extend (each would
    wait out the client's reconnect backoff): one warning per beat, not one per lease."""
    caplog.set_level(logging.WARNING)
    funcs.reset(3, 13)
    sweep = rig.submit("gated_once", 40, 10)
    sup = rig.start(sweep, children=2)
    rig.until(lambda: sorted(rig.held()) == [(0, 10), (10, 20)], "two chunks held")
    rig.broker.faults.fail("extend", times=None)
    rig.clock.advance(LEASE / 3 + 0.1)
    sup.step()
    assert rig.broker.faults.calls["extend"] == 1
    rig.broker.faults.clear()
    funcs.GATE.set()
    rig.until(lambda: rig.done(sweep), "the sweep")
    rig.stop()
    assert len(rig.records(sweep)) == 40
