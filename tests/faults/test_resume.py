"""Resumable: `ttg run` killed outright (SIGKILL to its whole process group) or
interrupted (Ctrl-C) is completed by running the same command again, and no
chunk committed before the interruption is computed twice."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import assert_exactly_once, records_per_index
from tests.processes import Procs, alive, children, executions, sweep_in, wait_until


def test_run_killed_at_half_then_rerun(home: Path, tmp_path: Path, procs: Procs) -> None:
    total = 2000
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter), "TTG_LEASE_SECONDS": "2"}
    args = ("run", "tests.funcs:counted", "--range", str(total), "--chunk-size", "50", "--workers", "2")
    first = procs.start(home, *args, **env)
    sweep = wait_until(lambda: sweep_in(home), 10, "the sweep in the store")
    wait_until(lambda: len(records_per_index(home, sweep)) >= total // 2, 30, "half of the sweep")
    kids = children(first.pid)
    assert len(kids) == 2
    first.kill_group()
    assert first.popen.returncode == -signal.SIGKILL
    wait_until(lambda: not any(alive(k) for k in kids), 5, "the worker children to be gone")

    committed = records_per_index(home, sweep)  # read after the kill: this is final
    assert total // 2 <= len(committed) < total, "the kill came too late to test anything"
    assert set(committed.values()) == {1}
    before = executions(counter)
    assert all(before[i] == 1 for i in committed)

    second = procs.start(home, *args, **env)
    assert second.wait(60) == 0, second.stderr
    assert f"sweep {sweep}: complete, {total}/{total} points" in second.stdout
    assert f"{len(committed)} were already done" in second.stdout
    assert_exactly_once(home, sweep, total)
    after = executions(counter)
    again = sorted(i for i in committed if after[i] != 1)
    assert not again, f"committed before the kill, computed again: {again[:10]}"
    assert set(after) == set(range(total))


def test_ctrl_c_stops_cleanly_then_rerun(home: Path, tmp_path: Path, procs: Procs) -> None:
    total = 120
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    args = ("run", "tests.funcs:counted_slow", "--range", str(total), "--chunk-size", "5", "--workers", "2")
    first = procs.start(home, *args, **env)
    sweep = wait_until(lambda: sweep_in(home), 10, "the sweep in the store")
    wait_until(lambda: len(records_per_index(home, sweep)) >= 20, 30, "20 committed points")
    kids = children(first.pid)
    assert len(kids) == 2
    first.signal_group(signal.SIGINT)  # what a terminal sends on Ctrl-C
    assert first.wait(10) == 130, first.stderr
    assert "interrupted: run the same command again to resume" in first.stderr
    assert f"sweep {sweep}: interrupted," in first.stdout
    wait_until(lambda: not any(alive(k) for k in kids), 5, "the worker children to be gone")

    committed = records_per_index(home, sweep)
    assert 20 <= len(committed) < total
    assert set(committed.values()) == {1}
    # the running chunks were finished, not dropped: nothing computed is lost
    assert set(executions(counter)) == set(committed)

    second = procs.start(home, *args, **env)
    assert second.wait(30) == 0, second.stderr
    assert f"{len(committed)} were already done" in second.stdout
    assert_exactly_once(home, sweep, total)
    assert executions(counter) == dict.fromkeys(range(total), 1)
