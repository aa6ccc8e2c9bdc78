"""No lost work: a worker child killed with SIGKILL, a whole worker killed with
SIGKILL, and a worker stopped with SIGTERM in the middle of a long chunk. Each
time every index ends with exactly one record."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import assert_exactly_once, records_per_index, ttg
from tests.processes import Proc, Procs, alive, children, executions, submit, sweep_in, table_rows, wait_until


def attempts(home: Path, sweep: str, tmp_path: Path) -> dict[int, int]:
    out = tmp_path / "attempts.parquet"
    ttg(home, "results", sweep, "-o", str(out), check=True)
    return {int(r["index"]): int(r["attempt"]) for r in table_rows(out)}


def test_sigkill_one_of_three_children(home: Path, tmp_path: Path, procs: Procs) -> None:
    total = 300
    run = procs.start(home, "run", "tests.funcs:slow", "--range", str(total), "--chunk-size", "10",
                      "--workers", "3")
    kids = wait_until(lambda: len(children(run.pid)) == 3 and children(run.pid), 10, "three worker children")
    sweep = wait_until(lambda: sweep_in(home), 10, "the sweep in the store")
    wait_until(lambda: len(records_per_index(home, sweep)) >= total * 0.3, 30, "30% of the sweep")
    victim = kids[1]
    os.kill(victim, signal.SIGKILL)
    # the supervisor replaces it at once and goes on with three children
    wait_until(lambda: victim not in children(run.pid) and len(children(run.pid)) == 3, 5,
               "a replacement child")

    assert run.wait(30) == 0, run.stderr
    assert f"sweep {sweep}: complete, {total}/{total} points" in run.stdout
    assert f"ok {total}  error 0  crashed 0  timeout 0" in run.stdout
    assert_exactly_once(home, sweep, total)
    tries = attempts(home, sweep, tmp_path)
    if "died on" in run.stderr:  # the victim held a chunk: that chunk ran again, as attempt 2
        assert sorted(set(tries.values())) == [1, 2]
        assert list(tries.values()).count(2) == 10
    else:  # killed between two chunks: nothing to redo
        assert set(tries.values()) == {1}


def one_worker_on_its_first_chunk(home: Path, tmp_path: Path, procs: Procs,
                                  lease: float) -> tuple[Path, dict[str, str], str, Proc, list[int]]:
    """A sweep of two 20-point chunks and one `ttg worker` with one child, a few points
    into its first chunk: (counter file, the worker's env, sweep, worker, its children)."""
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter), "TTG_LEASE_SECONDS": f"{lease:g}"}
    sweep = submit(home, "tests.funcs:counted_slow", "--range", "40", "--chunk-size", "20")
    first = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "1", **env)
    wait_until(lambda: sum(executions(counter).values()) >= 3, 10, "the first chunk to start")
    return counter, env, sweep, first, children(first.pid)


def test_sigkill_a_whole_worker(home: Path, tmp_path: Path, procs: Procs) -> None:
    """The supervisor dies with its children (PR_SET_PDEATHSIG); the chunk it held
    comes back and another worker computes it, as attempt 2."""
    counter, env, sweep, first, kids = one_worker_on_its_first_chunk(home, tmp_path, procs, lease=2)
    assert len(kids) == 1
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(5) == -signal.SIGKILL
    wait_until(lambda: not any(alive(k) for k in kids), 5, "the orphaned child to die with its supervisor")
    assert records_per_index(home, sweep) == {}
    assert "1 queued, 1 leased" in ttg(home, "status", sweep, check=True).stdout  # held by a dead worker

    second = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--burst", **env)
    assert second.wait(20) == 0, second.stderr
    assert_exactly_once(home, sweep, 40)
    assert attempts(home, sweep, tmp_path) == {i: 2 if i < 20 else 1 for i in range(40)}
    runs = executions(counter)
    assert all(runs[i] == 1 for i in range(20, 40))


def test_a_killed_worker_nobody_reaped_counts_as_dead(home: Path, tmp_path: Path, procs: Procs) -> None:
    """A worker SIGKILLed by a parent that never wait()s for it stays a zombie:
    ``kill(pid, 0)`` still succeeds. The embedded broker must still see it dead and
    hand its chunk to the next worker at once, not after the lease period (60 s)."""
    _, env, sweep, first, kids = one_worker_on_its_first_chunk(home, tmp_path, procs, lease=60)
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(k) for k in kids), 5, "the orphaned child to die with its supervisor")
    state = Path(f"/proc/{first.pid}/stat").read_text().rpartition(")")[2].split()[0]
    assert state == "Z", "the killed worker should be an unreaped zombie for this test"

    second = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--burst", **env)
    assert second.wait(20) == 0, second.stderr
    assert_exactly_once(home, sweep, 40)
    assert attempts(home, sweep, tmp_path) == {i: 2 if i < 20 else 1 for i in range(40)}
    assert first.wait(5) == -signal.SIGKILL  # reaped only now


def test_sigterm_releases_a_long_chunk_without_counting_an_attempt(home: Path, tmp_path: Path,
                                                                 procs: Procs) -> None:
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    # 40 points of 50 ms: a chunk runs 2 s, longer than the 1 s grace period
    sweep = submit(home, "tests.funcs:counted_slow", "--range", "80", "--chunk-size", "40")
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "1", "--grace", "1", **env)
    wait_until(lambda: sum(executions(counter).values()) >= 4, 10, "the chunk to start")
    kids = children(worker.pid)
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(5) == 0, worker.stderr
    assert time.monotonic() - started < 1 + 2
    assert not any(alive(k) for k in kids)
    assert "received SIGTERM" in worker.stderr
    assert records_per_index(home, sweep) == {}  # the chunk was not finished...
    status = ttg(home, "status", sweep, check=True).stdout
    assert "queue     2 queued, 0 leased chunks" in status  # ...but given back at once

    finisher = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--burst", **env)
    assert finisher.wait(30) == 0, finisher.stderr
    assert_exactly_once(home, sweep, 80)
    # a shutdown is not a failure: every record is a first attempt
    assert attempts(home, sweep, tmp_path) == dict.fromkeys(range(80), 1)


