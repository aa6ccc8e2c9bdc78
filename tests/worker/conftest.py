"""The in-process rig of the worker tests: a supervisor whose children are threads
(ttg.testing.ThreadLauncher) on the in-memory broker, with a FakeClock the test
steps and faults injected where a test needs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from ttg import settings as settings_mod
from ttg.client.submit import prepare, submit
from ttg.core.codec import Codec
from ttg.core.funcref import AllowList
from ttg.core.sweep import Options, Sweep
from ttg.errors import StoreUnavailable
from ttg.settings import Settings
from ttg.spaces import RangeSpace
from ttg.stores.base import ResultStore
from ttg.stores.sqlite import SqliteStore
from ttg.testing import FakeClock, Faults, FaultyBroker, FaultyStore, MemoryBroker, ThreadLauncher
from ttg.worker.child import ChildOptions
from ttg.worker.supervisor import Supervisor

from . import funcs

T = TypeVar("T")
LEASE = 10.0


@dataclass
class Rig:
    """One worker (a supervisor and its thread children) on an in-memory queue."""

    tmp: Path
    clock: FakeClock = field(default_factory=FakeClock)
    #: faults of every child's store
    store_faults: Faults = field(default_factory=lambda: Faults(StoreUnavailable))
    sup: Supervisor | None = None

    def __post_init__(self) -> None:
        self.queue = MemoryBroker(LEASE, self.clock)
        #: the supervisor's client, through which its children lease too
        self.broker = FaultyBroker(self.queue.client())
        self.settings: Settings = settings_mod.load(environ={}, home=self.tmp, lease_seconds=LEASE,
                                                    presence_seconds=0, grace_seconds=5)

    def open_store(self) -> ResultStore:
        """A store of its own for each child, all sharing ``store_faults``."""
        store = FaultyStore(SqliteStore(self.tmp / "results.db"))
        store.faults = self.store_faults
        return store

    def submit(self, fn: str, n: int, chunk: int, **options: object) -> Sweep:
        space = RangeSpace(n)
        sweep = prepare(f"tests.worker.funcs:{fn}", space, Options(chunk_size=chunk, **options))  # type: ignore[arg-type]
        with SqliteStore(self.tmp / "results.db") as store:
            submit(sweep, space, self.queue, store, Codec())
        return sweep

    def start(self, sweep: Sweep, children: int = 1) -> Supervisor:
        options = ChildOptions("rig", AllowList(["tests.worker.funcs"]), sweep_id=sweep.id, poll_seconds=0.05)
        launcher = ThreadLauncher(self.broker, self.open_store, options)
        self.sup = Supervisor(self.settings, options, self.broker, processes=children, launcher=launcher,
                              clock=self.clock)
        self.sup.start()
        return self.sup

    def until(self, check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
        """Step the supervisor until ``check()`` is truthy."""
        assert self.sup is not None
        end = time.monotonic() + timeout
        while not (got := check()):
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.sup.step()
        return got

    def stop(self) -> None:
        """SIGTERM, as the signal handler notes it; steps until every child is gone."""
        assert self.sup is not None
        self.sup.signal()
        self.until(lambda: not self.sup.slots, "every child to exit")  # type: ignore[union-attr]
        self.sup.close()

    def records(self, sweep: Sweep) -> dict[int, tuple[int, str]]:
        """index -> (attempt, status) of every committed record, each index once."""
        out: dict[int, tuple[int, str]] = {}
        with SqliteStore(self.tmp / "results.db") as store:
            for rec in store.chunks(sweep.id):
                for i in range(rec.start, rec.stop):
                    assert i not in out, f"index {i} has two records"
                    out[i] = (rec.attempt, rec.status(i - rec.start))
        return out

    def done(self, sweep: Sweep) -> bool:
        with SqliteStore(self.tmp / "results.db") as store:
            return store.progress(sweep.id).complete

    def held(self) -> list[tuple[int, int]]:
        """The chunks the children compute now, as the supervisor sees them."""
        assert self.sup is not None
        return [(s.lease.chunk.start, s.lease.chunk.stop) for s in self.sup.slots.values() if s.lease]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    funcs.reset()
    r = Rig(tmp_path)
    yield r
    funcs.GATE.set()  # a child still waiting may go (and die: it is killed)
    if r.sup is not None and r.sup.slots:
        r.sup.close()


