"""Worker presence (stores/presence.py): every backend keeps the newest beat per
worker, lists them newest first and prunes day-old beats."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ttg.settings import Settings
from ttg.stores import PresenceStore, open_presence
from ttg.stores.presence import PRUNE_SECONDS, WorkerBeat, liveness, supervisor_of

from ..conftest import store_url


@pytest.fixture
def other(request: pytest.FixtureRequest, presence: PresenceStore, settings: Settings,
          home: Path) -> Iterator[PresenceStore]:
    """A second client of the ``presence`` fixture's backend."""
    s = open_presence(settings, store_url(request.node.callspec.params["presence"], home))
    yield s
    s.close()


@pytest.fixture
def beat() -> Callable[..., WorkerBeat]:
    """Beats of workers with unique ids (on a shared server, listings are filtered by them)."""
    tag = uuid.uuid4().hex[:6]

    def make(name: str, at: float, **kw: object) -> WorkerBeat:
        fields: dict[str, object] = {"host": f"host{tag}", "pid": 100, "started": at - 10.0,
                                     "interval": 2.0}
        fields.update(kw)
        return WorkerBeat(f"{name}-{tag}", beat=at, **fields)  # type: ignore[arg-type]

    return make


def mine(store: PresenceStore, *beats: WorkerBeat) -> list[WorkerBeat]:
    ids = {b.worker for b in beats}
    return [b for b in store.workers() if b.worker in ids]


def test_a_beat_round_trips(presence: PresenceStore, beat: Callable[..., WorkerBeat]) -> None:
    b = beat("w", time.time(), children=4, chunks=17, state="stopping",
             leases=(("sweep-a", 0, 100), ("sweep-b", 2000, 2500)))
    presence.beat(b)
    assert mine(presence, b) == [b]


def test_a_new_beat_replaces_the_last(presence: PresenceStore, other: PresenceStore,
                                      beat: Callable[..., WorkerBeat]) -> None:
    now = time.time()
    first = beat("w", now - 4, chunks=1, leases=(("s", 0, 10),))
    presence.beat(first)
    second = dataclasses.replace(first, beat=now, chunks=2, leases=())
    presence.beat(second)
    presence.beat(second)  # idempotent
    assert mine(presence, first) == [second]
    assert mine(other, first) == [second]  # another client sees it


def test_several_workers_newest_first(presence: PresenceStore, beat: Callable[..., WorkerBeat]) -> None:
    now = time.time()
    old, new, tie_b, tie_a = (beat("old", now - 30), beat("new", now), beat("b", now - 5),
                              beat("a", now - 5))
    for b in (old, new, tie_b, tie_a):
        presence.beat(b)
    assert [b.worker for b in mine(presence, old, new, tie_a, tie_b)] == [
        new.worker, tie_a.worker, tie_b.worker, old.worker]


def test_day_old_beats_are_pruned_on_write(presence: PresenceStore, beat: Callable[..., WorkerBeat]) -> None:
    now = time.time()
    gone = beat("gone", now - PRUNE_SECONDS - 60)
    kept = beat("kept", now - PRUNE_SECONDS + 600, state="stopped")
    presence.beat(gone)
    presence.beat(kept)
    assert len(mine(presence, gone, kept)) == 2  # nothing is a day older than `kept`
    fresh = beat("fresh", now)
    presence.beat(fresh)  # `gone` is more than a day older than this beat
    assert [b.worker for b in mine(presence, gone, kept, fresh)] == [fresh.worker, kept.worker]
    presence.beat(beat("later", now + 700))  # and now `kept` is too
    assert mine(presence, gone, kept) == []


def test_liveness_and_supervisor_ids() -> None:
    b = WorkerBeat("h-1", "h", 1, 0.0, 100.0, 2.0)
    assert liveness(b, 100.0) == liveness(b, 106.0) == "alive"
    assert liveness(b, 106.5) == "stale"
    assert liveness(dataclasses.replace(b, state="stopped"), 101.0) == "stopped"
    assert liveness(dataclasses.replace(b, state="stopping"), 101.0) == "alive"
    assert supervisor_of("my-host-12-345") == "my-host-12"
    assert supervisor_of("w") == "w"
