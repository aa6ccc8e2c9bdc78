"""Fault injection: a broker and a store that fail, stall or drop out on cue.

``FaultyBroker(inner)`` and ``FaultyStore(inner)`` pass every call through to
the wrapped backend, after asking their ``faults``:

    faults.fail("ack")                   # the next ack raises BrokerUnavailable
    faults.fail("commit", times=3, error=StoreUnavailable("disk"))
    gate = faults.hold("commit")         # commits block until gate.set()
    faults.down(); ...; faults.up()      # every call fails (the server is unreachable)
    faults.calls["extend"]               # how often each method was called

Used with the in-memory broker and an injected clock (ttg.testing), a worker's
supervisor and children can be driven in-process through outages, stalls and
lost leases, and the tests count exactly what happened.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from ..brokers.base import Broker, DeadLetter, Lease, QueueStats
from ..core.chunking import Chunk
from ..core.records import ChunkRecords
from ..core.retry import Failure
from ..core.sweep import Sweep
from ..errors import BrokerUnavailable, StoreUnavailable, TtgError
from ..stores.base import Progress, ResultStore, SweepInfo


@dataclass
class _Rule:
    error: TtgError | None
    times: int | None
    gate: threading.Event | None = None


class Faults:
    def __init__(self, unavailable: type[TtgError]) -> None:
        self._unavailable = unavailable
        self._rules: dict[str, list[_Rule]] = {}
        self._down = False
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        #: called before every call (and may raise): a thread child's "am I dead?"
        self.guard: Callable[[], None] | None = None

    def fail(self, method: str, *, times: int | None = 1, error: TtgError | None = None) -> None:
        """The next ``times`` calls of ``method`` (every one: None) raise ``error``."""
        err = error or self._unavailable(f"injected fault: {method} failed")
        self._rules.setdefault(method, []).append(_Rule(err, times))

    def hold(self, method: str) -> threading.Event:
        """Calls of ``method`` block until the returned event is set."""
        gate = threading.Event()
        self._rules.setdefault(method, []).append(_Rule(None, None, gate))
        return gate

    def down(self) -> None:
        """Every call fails, as when the server cannot be reached, until ``up``."""
        self._down = True

    def up(self) -> None:
        self._down = False

    def clear(self) -> None:
        self._rules.clear()
        self._down = False

    def before(self, method: str) -> None:
        if self.guard is not None:
            self.guard()
        with self._lock:
            self.calls[method] += 1
            if self._down:
                raise self._unavailable(f"injected fault: the server is unreachable ({method})")
            rules = self._rules.get(method, [])
            rule = rules[0] if rules else None
            if rule is not None and rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    rules.pop(0)
        if rule is not None and rule.gate is not None:
            rule.gate.wait()
        elif rule is not None and rule.error is not None:
            raise rule.error


class FaultyBroker(Broker):
    def __init__(self, inner: Broker) -> None:
        super().__init__(inner.lease_seconds, inner.clock)
        self.inner = inner
        self.faults = Faults(BrokerUnavailable)

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        self.faults.before("submit")
        return self.inner.submit(sweep_id, items, priority=priority)

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        self.faults.before("lease")
        return self.inner.lease(worker_id, timeout=timeout, sweep_id=sweep_id, skip=skip)

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None,
                      skip: Collection[str] = ()) -> Lease | None:
        self.faults.before("ack_and_lease")
        return self.inner.ack_and_lease(done, worker_id, sweep_id=sweep_id, skip=skip)

    def extend(self, lease: Lease) -> Lease:
        self.faults.before("extend")
        return self.inner.extend(lease)

    def ack(self, lease: Lease) -> None:
        self.faults.before("ack")
        self.inner.ack(lease)

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        self.faults.before("release")
        self.inner.release(lease, failure=failure, delay=delay)

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self.faults.before("dead_letter")
        self.inner.dead_letter(lease, reason)

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        self.faults.before("dead_letters")
        return self.inner.dead_letters(sweep_id)

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        self.faults.before("stats")
        return self.inner.stats(sweep_id)

    def cancel(self, sweep_id: str) -> int:
        self.faults.before("cancel")
        return self.inner.cancel(sweep_id)

    def close(self) -> None:
        self.inner.close()


class FaultyStore(ResultStore):
    def __init__(self, inner: ResultStore) -> None:
        self.inner = inner
        self.concurrent_commit = inner.concurrent_commit
        self.faults = Faults(StoreUnavailable)

    def _save_sweep(self, sweep: Sweep, *, created: bool) -> None:
        self.faults.before("register")
        self.inner._save_sweep(sweep, created=created)

    def find(self, sweep_id: str) -> Sweep | None:
        self.faults.before("find")
        return self.inner.find(sweep_id)

    def sweeps(self) -> list[SweepInfo]:
        self.faults.before("sweeps")
        return self.inner.sweeps()

    def state(self, sweep_id: str) -> str:
        self.faults.before("state")
        return self.inner.state(sweep_id)

    def set_state(self, sweep_id: str, state: str) -> None:
        self.faults.before("set_state")
        self.inner.set_state(sweep_id, state)

    def delete(self, sweep_id: str) -> int:
        self.faults.before("delete")
        return self.inner.delete(sweep_id)

    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        self.faults.before("commit")
        return self.inner.commit(sweep_id, records)

    def committed_ranges(self, sweep_id: str, start: int, stop: int) -> list[tuple[int, int]]:
        self.faults.before("committed_ranges")
        return self.inner.committed_ranges(sweep_id, start, stop)

    def progress(self, sweep_id: str) -> Progress:
        self.faults.before("progress")
        return self.inner.progress(sweep_id)

    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        self.faults.before("chunks")
        return self.inner.chunks(sweep_id, failed_only=failed_only)

    def _replace(self, sweep_id: str, old: ChunkRecords, new: list[ChunkRecords]) -> bool:
        self.faults.before("replace")
        return self.inner._replace(sweep_id, old, new)

    def close(self) -> None:
        self.inner.close()
