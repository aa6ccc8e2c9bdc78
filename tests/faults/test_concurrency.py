"""Several workers on one home, and children replaced as they go: each chunk is
computed and committed once, each index has exactly one record."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import assert_exactly_once, ttg
from tests.processes import Procs, executions, submit, table_rows


def _workers_of(home: Path, sweep: str, tmp_path: Path) -> dict[int, str]:
    out = tmp_path / "workers.jsonl"
    ttg(home, "results", sweep, "-o", str(out), check=True)
    return {r["index"]: r["worker"] for r in table_rows(out)}


def test_two_workers_one_submit(home: Path, tmp_path: Path, procs: Procs) -> None:
    total = 160
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    sweep = submit(home, "tests.funcs:counted_slow", "--range", str(total), "--chunk-size", "8")
    workers = [procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "2", **env)
               for _ in range(2)]
    for w in workers:
        assert w.wait(30) == 0, w.stderr
    assert_exactly_once(home, sweep, total)
    # nothing was killed, so nothing ran twice: each chunk was leased and committed once
    assert executions(counter) == dict.fromkeys(range(total), 1)
    by_index = _workers_of(home, sweep, tmp_path)
    assert len(set(by_index.values())) >= 3, "both workers should have taken chunks"
    # a chunk is computed by one child from start to end
    for start in range(0, total, 8):
        assert len({by_index[i] for i in range(start, start + 8)}) == 1


def test_children_recycled_after_each_chunk_lose_nothing(home: Path, tmp_path: Path, procs: Procs) -> None:
    total = 200
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted", "--range", str(total), "--chunk-size", "10")
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "2",
                         "--max-chunks-per-child", "1", TTG_TEST_COUNTER=str(counter))
    assert worker.wait(30) == 0, worker.stderr
    assert_exactly_once(home, sweep, total)
    assert executions(counter) == dict.fromkeys(range(total), 1)
    # one child per chunk: 20 chunks, 20 different worker processes
    assert len(set(_workers_of(home, sweep, tmp_path).values())) == total // 10


def test_children_recycled_by_memory_lose_nothing(home: Path, tmp_path: Path, procs: Procs) -> None:
    """A memory limit below what any child uses: every child is replaced after each chunk."""
    total = 60
    sweep = submit(home, "tests.funcs:square", "--range", str(total), "--chunk-size", "10")
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "2",
                         "--max-memory-per-child", "1")
    assert worker.wait(30) == 0, worker.stderr
    assert_exactly_once(home, sweep, total)
    assert len(set(_workers_of(home, sweep, tmp_path).values())) == total // 10


def test_same_sweep_run_twice_at_once(home: Path, tmp_path: Path, procs: Procs) -> None:
    """Two `ttg run` of the same sweep in two terminals: they share the work."""
    total = 160
    counter = tmp_path / "counter"
    args = ("run", "tests.funcs:counted_slow", "--range", str(total), "--chunk-size", "8", "--workers", "2")
    runs = [procs.start(home, *args, TTG_TEST_COUNTER=str(counter)) for _ in range(2)]
    for run in runs:
        assert run.wait(30) == 0, run.stderr
        assert f": complete, {total}/{total} points" in run.stdout
    sweep = runs[0].stdout.split()[1].rstrip(":")
    assert_exactly_once(home, sweep, total)
    assert executions(counter) == dict.fromkeys(range(total), 1)


def test_slow_chunks_are_not_stolen_from_live_workers(home: Path, tmp_path: Path, procs: Procs) -> None:
    """Chunks of 2 s under a 0.5 s lease, with an idle child polling all the time:
    the supervisor's heartbeats keep the leases, so nothing runs twice."""
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted_slow", "--range", "80", "--chunk-size", "40")
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "3",
                         TTG_TEST_COUNTER=str(counter), TTG_LEASE_SECONDS="0.5")
    assert worker.wait(30) == 0, worker.stderr
    assert "lost its lease" not in worker.stderr
    assert_exactly_once(home, sweep, 80)
    assert executions(counter) == dict.fromkeys(range(80), 1)
    out = tmp_path / "attempts.csv"
    ttg(home, "results", sweep, "-o", str(out), check=True)
    assert {r["attempt"] for r in table_rows(out)} == {1}
