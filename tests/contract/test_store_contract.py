"""The result store contract: every store backend passes the same tests.

The bodies use only the public ResultStore interface (ttg.stores.base), so a
new backend joins by adding its name to ``STORES`` in tests/conftest.py. A
test that needs a second client (another process, or a resumed client) opens
one from the same URL.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ttg.core.chunking import Chunk, plan
from ttg.core.records import ChunkRecords, failed_record
from ttg.core.sweep import Options, Sweep
from ttg.errors import ConfigError, SweepNotFound
from ttg.settings import Settings
from ttg.spaces import RangeSpace
from ttg.stores import Progress, ResultStore, open_store

from ..conftest import store_url

FN = "tests.funcs:square"


@pytest.fixture
def url(request: pytest.FixtureRequest, store: ResultStore, home: Path) -> str:
    """The URL of the ``store`` fixture's backend, to open more clients of it."""
    return store_url(request.node.callspec.params["store"], home)


@pytest.fixture
def reopen(url: str, settings: Settings) -> Iterator[Callable[[], ResultStore]]:
    """Open another client of the ``store`` fixture's backend, closed at teardown."""
    opened: list[ResultStore] = []

    def open_() -> ResultStore:
        s = open_store(settings, url)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def make_sweep() -> Callable[..., Sweep]:
    """Sweeps with unique names, so a test never meets another test's sweep even
    on a shared server (every listing in these tests is filtered by id)."""
    tag = uuid.uuid4().hex[:8]

    def make(name: str = "s", total: int = 1000, function: str = FN, **options: Any) -> Sweep:
        return Sweep.create(function, RangeSpace(total), Options(**options), name=f"{name}-{tag}")

    return make


def ok(a: int, b: int, worker: str = "w", value: Callable[[int], Any] = lambda i: i * i) -> ChunkRecords:
    return ChunkRecords(a, b, [value(i) for i in range(a, b)], [0.001 * (i - a) for i in range(a, b)],
                        worker, 1)


def mixed(a: int, statuses: list[str], worker: str = "w", attempt: int = 1) -> ChunkRecords:
    """Records starting at ``a`` with these statuses; failed ones carry an error."""
    n = len(statuses)
    errors = {k: ("ValueError", f"bad {a + k}", f"Traceback {a + k}")
              for k, s in enumerate(statuses) if s != "ok"}
    values = [None if s != "ok" else a + k for k, s in enumerate(statuses)]
    return ChunkRecords(a, a + n, values, [0.5] * n, worker, attempt, list(statuses), errors or None)


def per_index(store: ResultStore, sweep_id: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for rec in store.chunks(sweep_id):
        counts.update(range(rec.start, rec.stop))
    return counts


def status_counts(store: ResultStore, sweep_id: str) -> dict[str, int]:
    counts = {"ok": 0, "error": 0, "crashed": 0, "timeout": 0}
    for rec in store.chunks(sweep_id):
        for k in range(len(rec)):
            counts[rec.status(k)] += 1
    return counts


# -- sweeps -------------------------------------------------------------------


def test_delete_removes_the_sweep_and_every_result(store: ResultStore,
                                                   make_sweep: Callable[..., Sweep]) -> None:
    keep, gone = store.register(make_sweep("keep")), store.register(make_sweep("gone"))
    for sw in (keep, gone):
        assert store.commit(sw.id, ok(0, 10))
        assert store.commit(sw.id, mixed(10, ["ok", "error", "ok"]))
    assert store.delete(gone.id) == 13
    assert store.find(gone.id) is None and not list(store.chunks(gone.id))
    assert gone.id not in [i.sweep.id for i in store.sweeps()]
    assert store.committed_ranges(gone.id, 0, 1000) == []
    assert per_index(store, keep.id) == Counter(range(13))  # another sweep keeps everything
    # the name is free for other work, which starts from nothing
    other = dataclasses.replace(make_sweep("gone", total=50), id=gone.id)
    assert store.register(other) == other and store.progress(gone.id).done == 0
    assert store.delete("no-such-sweep") == 0


def test_records_keep_the_fingerprint_of_their_code(store: ResultStore,
                                                    make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    rec = ok(0, 10)
    rec.code = "c0de" * 16
    assert store.commit(sw.id, rec)
    assert [r.code for r in store.chunks(sw.id)] == ["c0de" * 16]


def test_register_is_idempotent(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = make_sweep(chunk_size=10)
    assert store.register(sw) == sw
    assert store.register(sw) == sw
    assert store.find(sw.id) == sw
    assert store.sweep(sw.id) == sw
    assert [i.sweep.id for i in store.sweeps()].count(sw.id) == 1


def test_a_content_derived_id_registers_once(store: ResultStore) -> None:
    space = RangeSpace(100 + random.randrange(10**6))  # unique content, so a unique id
    a = Sweep.create(FN, space, Options())
    b = Sweep.create(FN, space, Options(chunk_size=7))
    assert a.id == b.id
    store.register(a)
    store.register(b)
    assert [i.sweep.id for i in store.sweeps()].count(a.id) == 1


def test_reregistering_the_same_work_keeps_results(store: ResultStore,
                                                   make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(chunk_size=10))
    assert store.commit(sw.id, ok(0, 10))
    again = make_sweep(chunk_size=20, max_attempts=5, priority=3)
    assert again.id == sw.id
    store.register(again)
    assert store.progress(sw.id) == Progress(1000, ok=10)
    assert [r.chunk for r in store.chunks(sw.id)] == [Chunk(0, 10)]
    assert store.sweep(sw.id).options == again.options  # it takes the new options


def test_another_sweep_under_an_existing_id_is_refused(store: ResultStore,
                                                      make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    store.commit(sw.id, ok(0, 10))
    with pytest.raises(ConfigError, match="already exists"):
        store.register(make_sweep(function="tests.funcs:noop"))
    with pytest.raises(ConfigError):
        store.register(make_sweep(total=999))
    with pytest.raises(ConfigError):
        store.register(make_sweep(batched=True))
    assert store.find(sw.id) == sw
    assert store.progress(sw.id) == Progress(1000, ok=10)


def test_find_sweep_and_sweeps(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    old = dataclasses.replace(make_sweep("old", total=50), created=1_000_000.0)
    new = dataclasses.replace(make_sweep("new", total=70), created=2_000_000.0)
    store.register(old)
    store.register(new)
    store.commit(new.id, mixed(0, ["ok", "error", "ok"]))
    assert store.find("no-such-sweep-" + uuid.uuid4().hex) is None
    assert store.find(old.id) == old
    with pytest.raises(SweepNotFound, match="no-such-sweep"):
        store.sweep("no-such-sweep")
    infos = [i for i in store.sweeps() if i.sweep.id in (old.id, new.id)]
    assert [i.sweep for i in infos] == [new, old]  # newest first
    assert [i.state for i in infos] == ["active", "active"]
    assert infos[0].progress == Progress(70, ok=2, error=1)
    assert infos[1].progress == Progress(50)
    assert all(isinstance(i.updated, float) for i in infos)


def test_set_state_and_state(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    assert store.state(sw.id) == "active"
    store.set_state(sw.id, "cancelled")
    assert store.state(sw.id) == "cancelled"
    assert [i.state for i in store.sweeps() if i.sweep.id == sw.id] == ["cancelled"]
    store.register(sw)  # submitting again makes it active
    assert store.state(sw.id) == "active"
    with pytest.raises(SweepNotFound):
        store.state("no-such-sweep-" + uuid.uuid4().hex)


# -- commit -------------------------------------------------------------------


def test_commit_first_wins(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    first = ok(10, 20, worker="first")
    assert store.commit(sw.id, first) is True
    assert store.commit(sw.id, ok(10, 20, worker="second")) is False
    refused = {
        "partial overlap left": (5, 15), "partial overlap right": (15, 25),
        "containing": (0, 30), "contained": (12, 18), "same start": (10, 15), "same stop": (15, 20),
        "first index": (10, 11), "last index": (19, 20), "wider left": (5, 20), "wider right": (10, 25),
    }
    for what, (a, b) in refused.items():
        assert store.commit(sw.id, ok(a, b, worker=what)) is False, what
    assert [(r.start, r.stop, r.worker) for r in store.chunks(sw.id)] == [(10, 20, "first")]
    assert store.progress(sw.id) == Progress(1000, ok=10)
    # adjacent ranges touch but do not overlap
    assert store.commit(sw.id, ok(0, 10)) is True
    assert store.commit(sw.id, ok(20, 30)) is True
    assert store.commit(sw.id, ok(9, 10)) is False
    assert store.commit(sw.id, ok(30, 31)) is True
    assert [r.chunk for r in store.chunks(sw.id)] == [Chunk(0, 10), Chunk(10, 20), Chunk(20, 30),
                                                     Chunk(30, 31)]
    assert store.progress(sw.id) == Progress(1000, ok=31)
    assert store.committed_ranges(sw.id, 0, 1000) == [(0, 10), (10, 20), (20, 30), (30, 31)]


def test_commit_spanning_several_committed_ranges_is_refused(
        store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    assert store.commit(sw.id, ok(10, 20))
    assert store.commit(sw.id, ok(40, 50))
    # overlaps only the earlier range, with a gap before the later one
    assert store.commit(sw.id, ok(15, 35)) is False
    assert store.commit(sw.id, ok(0, 100)) is False
    assert store.commit(sw.id, ok(20, 40)) is True  # exactly the gap
    assert store.progress(sw.id).ok == 40


def test_sweeps_do_not_share_ranges(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    a = store.register(make_sweep("a"))
    b = store.register(make_sweep("b"))
    assert store.commit(a.id, ok(0, 10))
    assert store.commit(b.id, ok(0, 10))
    assert store.progress(a.id) == store.progress(b.id) == Progress(1000, ok=10)


def test_records_round_trip(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    recs = [
        ok(0, 3, value=lambda i: {"x": i, "y": [1.5, "two", None], "ok": True}),
        mixed(3, ["ok", "error", "timeout", "ok"], worker="host-1/3", attempt=2),
        failed_record(Chunk(7, 9), "crashed", "child died with SIGSEGV", "w2", 4),
        dataclasses.replace(ok(9, 11), params=[{"row": 9}, {"row": 10}]),
    ]
    for r in recs:
        assert store.commit(sw.id, r)
    assert list(store.chunks(sw.id)) == recs


# -- concurrent writers -------------------------------------------------------


def _commit_all(settings: Settings, url: str, sweep_id: str, p: int, go: Any, out: Any) -> None:
    """Child process: commit all 100 ranges of [0, 1000) in a shuffled order, some whole,
    some in halves or at a random cut, then (as a worker does) fill what is still
    uncommitted; report which commits won, or the error."""
    rng = random.Random(p)
    order = list(plan(0, 1000, 10))
    rng.shuffle(order)
    won: list[tuple[int, int]] = []

    def records(a: int, b: int) -> ChunkRecords:
        statuses = ["error" if (i + p) % 7 == 0 else "crashed" if (i * p) % 11 == 1 else "ok"
                    for i in range(a, b)]
        rec = mixed(a, statuses, worker=f"p{p}")
        rec.values = [p] * (b - a)
        return rec

    try:
        store = open_store(settings, url)  # never a connection inherited across fork
        go.wait(10)
        for c in order:
            cut = {0: [], 1: [c.start + 5], 2: [rng.randrange(c.start + 1, c.stop)]}[rng.randrange(3)]
            pieces = [Chunk(a, b) for a, b in itertools.pairwise([c.start, *cut, c.stop])]
            # pieces cut elsewhere by others may leave holes that no piece of ours fits
            while pieces:
                for piece in pieces:
                    if store.commit(sweep_id, records(piece.start, piece.stop)):
                        won.append((piece.start, piece.stop))
                    time.sleep(rng.random() * 0.001)  # let the writers interleave
                pieces = store.uncommitted(sweep_id, c)
        store.close()
        out.put((p, won, None))
    except BaseException as exc:  # report, so the parent fails with the reason
        out.put((p, won, repr(exc)))


def test_concurrent_writers_leave_exactly_one_record_per_index(
        store: ResultStore, url: str, settings: Settings, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=1000, chunk_size=10))
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_commit_all, args=(settings, url, sw.id, p, go, out)) for p in range(6)]
    for proc in procs:
        proc.start()
    go.set()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=90))
    finally:
        for proc in procs:
            proc.join(10)
    assert [(p, e) for p, _, e in results if e] == []
    assert [proc.exitcode for proc in procs] == [0] * 6
    assert sum(1 for _, won, _ in results if won) >= 2, "the writers did not run concurrently"

    counts = per_index(store, sw.id)
    assert sorted(counts) == list(range(1000)), "some index has no record"
    assert {i: n for i, n in counts.items() if n != 1} == {}, "some index has two records"
    # what is stored is exactly what the winning commits wrote
    wins = {(a, b, p) for p, won, _ in results for a, b in won}
    stored = {(r.start, r.stop, r.values[0]) for r in store.chunks(sw.id)}
    assert stored == wins
    assert all(len(set(r.values)) == 1 and r.worker == f"p{r.values[0]}" for r in store.chunks(sw.id))
    # the counters agree exactly with the records
    progress = store.progress(sw.id)
    assert progress.by_status() == status_counts(store, sw.id)
    assert progress.done == 1000 and progress.complete


# -- progress, gaps -----------------------------------------------------------


def test_uncommitted_gaps(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    assert store.uncommitted(sw.id, Chunk(0, 50)) == [Chunk(0, 50)]
    store.commit(sw.id, ok(10, 20))
    store.commit(sw.id, ok(30, 40))
    store.commit(sw.id, ok(40, 45))
    assert store.uncommitted(sw.id, Chunk(0, 50)) == [Chunk(0, 10), Chunk(20, 30), Chunk(45, 50)]
    assert store.uncommitted(sw.id, Chunk(10, 20)) == []
    assert store.uncommitted(sw.id, Chunk(12, 18)) == []
    assert store.uncommitted(sw.id, Chunk(15, 35)) == [Chunk(20, 30)]
    assert store.uncommitted(sw.id, Chunk(30, 45)) == []
    assert store.uncommitted(sw.id, Chunk(45, 46)) == [Chunk(45, 46)]
    assert store.committed_ranges(sw.id, 15, 35) == [(10, 20), (30, 40)]
    assert store.committed_ranges(sw.id, 20, 30) == []
    assert store.committed_ranges(sw.id, 0, 1000) == [(10, 20), (30, 40), (40, 45)]


def test_progress_counts_by_status(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=40))
    assert store.progress(sw.id) == Progress(40)
    statuses = ["ok", "error", "ok", "crashed", "timeout", "ok", "ok", "error", "timeout", "ok"]
    assert store.commit(sw.id, mixed(0, statuses))
    assert store.commit(sw.id, failed_record(Chunk(10, 20), "crashed", "killed by SIGKILL", "w", 3))
    assert store.commit(sw.id, failed_record(Chunk(20, 25), "timeout", "ran past 2 s", "w", 3))
    assert store.commit(sw.id, ok(25, 30))
    assert not store.commit(sw.id, failed_record(Chunk(25, 30), "crashed", "late duplicate", "w", 1))
    p = store.progress(sw.id)
    assert p == Progress(40, ok=10, error=2, crashed=11, timeout=7)
    assert (p.done, p.failed, p.complete) == (30, 20, False)
    assert p.by_status() == status_counts(store, sw.id)
    assert store.commit(sw.id, ok(30, 40))
    assert store.progress(sw.id).complete


def test_chunks_streams_in_index_order(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=1000))
    recs = {}
    for c in plan(0, 1000, 5):  # 200 chunks: more than one page of any backend's reads
        failing = c.start % 35 == 0
        recs[c] = mixed(c.start, ["ok", "ok", "error", "ok", "ok"]) if failing else ok(c.start, c.stop)
    order = list(recs)
    random.Random(3).shuffle(order)
    for c in order:
        assert store.commit(sw.id, recs[c])
    got = store.chunks(sw.id)
    assert isinstance(got, Iterator)
    assert list(got) == [recs[c] for c in sorted(recs)]
    failed = list(store.chunks(sw.id, failed_only=True))
    assert [r.chunk for r in failed] == [c for c in sorted(recs) if c.start % 35 == 0]
    assert all(r.failed_offsets() == [2] for r in failed)


def test_chunks_of_a_sweep_with_no_results(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep())
    assert list(store.chunks(sw.id)) == []
    store.commit(sw.id, ok(0, 10))
    assert list(store.chunks(sw.id, failed_only=True)) == []


# -- reopen -------------------------------------------------------------------


def test_reopen_removes_exactly_the_failed_records(store: ResultStore,
                                                   make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=40))
    first = mixed(0, ["ok", "ok", "error", "ok", "crashed", "crashed", "ok", "ok", "ok", "timeout"])
    store.commit(sw.id, first)
    store.commit(sw.id, ok(10, 20))
    store.commit(sw.id, failed_record(Chunk(20, 30), "crashed", "segfault", "w", 3))
    store.commit(sw.id, mixed(30, ["error", "ok", "ok"]))
    assert store.progress(sw.id) == Progress(40, ok=18, error=2, crashed=12, timeout=1)

    reopened = store.reopen(sw.id)
    assert sorted(reopened) == [Chunk(2, 3), Chunk(4, 6), Chunk(9, 10), Chunk(20, 30), Chunk(30, 31)]
    assert store.progress(sw.id) == Progress(40, ok=18)
    counts = per_index(store, sw.id)
    holes = {i for c in reopened for i in range(c.start, c.stop)}
    assert set(counts) == set(range(33)) - holes
    assert set(counts.values()) == {1}
    # the kept records are the ones first committed, values and all
    kept = {i: v for r in store.chunks(sw.id) for i, v in zip(range(r.start, r.stop), r.values,
                                                             strict=True)}
    assert kept[0] == 0 and kept[3] == 3 and kept[8] == 8 and kept[15] == 225 and kept[32] == 32
    assert all(r.status(k) == "ok" for r in store.chunks(sw.id) for k in range(len(r)))
    assert list(store.chunks(sw.id, failed_only=True)) == []
    gaps = store.uncommitted(sw.id, Chunk(0, 40))
    assert gaps == [Chunk(2, 3), Chunk(4, 6), Chunk(9, 10), Chunk(20, 31), Chunk(33, 40)]
    assert store.reopen(sw.id) == []  # nothing failed is left

    for c in reopened:
        assert store.commit(sw.id, ok(c.start, c.stop, worker="retry"))
    assert store.commit(sw.id, ok(33, 40))
    assert store.progress(sw.id) == Progress(40, ok=40)
    assert per_index(store, sw.id) == Counter(range(40))


def test_reopen_only_some_statuses(store: ResultStore, make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=10))
    store.commit(sw.id, mixed(0, ["ok", "error", "crashed", "timeout", "crashed"]))
    assert store.reopen(sw.id, ("crashed",)) == [Chunk(2, 3), Chunk(4, 5)]
    assert store.progress(sw.id) == Progress(10, ok=1, error=1, timeout=1)
    left = list(store.chunks(sw.id))
    assert [(r.start, r.stop) for r in left] == [(0, 2), (3, 4)]
    assert [r.status(1) for r in left[:1]] == ["error"]
    assert left[0].errors == {1: ("ValueError", "bad 1", "Traceback 1")}
    assert left[1].errors == {0: ("ValueError", "bad 3", "Traceback 3")}
    assert [r.chunk for r in store.chunks(sw.id, failed_only=True)] == [Chunk(0, 2), Chunk(3, 4)]


# -- resume -------------------------------------------------------------------


def test_resume_from_another_client(store: ResultStore, reopen: Callable[[], ResultStore],
                                    make_sweep: Callable[..., Sweep]) -> None:
    sw = store.register(make_sweep(total=100, chunk_size=10))
    chunks = list(plan(0, sw.total, 10))
    for c in chunks[:5]:
        assert store.commit(sw.id, ok(c.start, c.stop))
    assert store.commit(sw.id, ok(50, 55))  # half a chunk, as a worker cut short commits it
    store.close()

    later = reopen()  # the client was killed; the same command runs again
    again = later.register(make_sweep(total=100, chunk_size=10))
    assert again.id == sw.id
    assert later.progress(sw.id) == Progress(100, ok=55)
    todo = [g for c in chunks for g in later.uncommitted(sw.id, c)]
    assert todo == [Chunk(55, 60), *chunks[6:]]
    for c in todo:
        assert later.commit(sw.id, ok(c.start, c.stop))
    for c in chunks:  # a late duplicate of any chunk changes nothing
        assert not later.commit(sw.id, ok(c.start, c.stop, worker="late"))
    assert later.progress(sw.id) == Progress(100, ok=100)
    assert per_index(later, sw.id) == Counter(range(100))


def test_context_manager_closes(store: ResultStore, reopen: Callable[[], ResultStore],
                                make_sweep: Callable[..., Sweep]) -> None:
    sw = make_sweep()
    with reopen() as s:
        s.register(sw)
        assert s.commit(sw.id, ok(0, 10))
    with reopen() as s:
        assert s.progress(sw.id) == Progress(1000, ok=10)
