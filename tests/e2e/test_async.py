"""``async def`` functions through real workers: up to --concurrency points at
once in a child (counted by the function itself), one record per index, each
point's own timeout, tries and context; a function that blocks the event loop
is caught by the supervisor's watchdog; bad combinations are one sentence."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import ttg
from tests.conftest import cli_env, records_per_index, sweep_id_from
from tests.conftest import ttg as ttg_cli
from tests.processes import executions


def table(home: Path, sweep: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ttg.results(sweep, home=home).to_arrow().to_pylist()
    return sorted(rows, key=lambda r: int(r["index"]))


def test_a_child_runs_up_to_concurrency_points_at_once(home: Path, tmp_path: Path) -> None:
    """1,000 points that each await 50 ms, 2 children, concurrency 50: each child
    has 50 in flight at its busiest, never more."""
    counter, flight = tmp_path / "counter", tmp_path / "flight"
    out = ttg_cli(home, "run", "tests.funcs:async_wait", "--range", "1000", "--workers", "2",
                  "--concurrency", "50", "--timeout", "10", check=True, TTG_TEST_COUNTER=str(counter),
                  TTG_TEST_FLIGHT=str(flight))
    sweep = sweep_id_from(out.stdout)
    rows = table(home, sweep)
    assert [(r["index"], r["status"], r["value"], r["attempt"]) for r in rows] == [
        (i, "ok", 3 * i, 1) for i in range(1000)]
    assert records_per_index(home, sweep) == {i: 1 for i in range(1000)}
    assert executions(counter) == {i: 1 for i in range(1000)}
    most: dict[int, int] = defaultdict(int)
    for line in flight.read_text().splitlines():
        pid, index, ctx_index, in_flight = map(int, line.split())
        assert ctx_index == index  # ttg.context() names each concurrent point's own index
        most[pid] = max(most[pid], in_flight)
    assert len(most) == 2 and set(most.values()) == {50}, most


def test_each_point_has_its_own_timeout_tries_and_errors(home: Path, tmp_path: Path) -> None:
    """Index 3 awaits past the timeout (recorded ``timeout`` by the child, which goes
    on), 5 raises SystemExit (its error), 7 blocks the loop (the watchdog kills the
    child; the split isolates 7 alone), 9 is tried three times."""
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:async_misbehaves", "--range", "12", "--workers", "1",
                  "--chunk-size", "12", "--concurrency", "4", "--timeout", "1", "--max-attempts", "1",
                  "--retries", "2", "--retry-on", "ConnectionError", check=True,
                  TTG_TEST_COUNTER=str(counter))
    sweep = sweep_id_from(out.stdout)
    rows = {r["index"]: r for r in table(home, sweep)}
    assert records_per_index(home, sweep) == {i: 1 for i in range(12)}
    assert rows[3]["status"] == "timeout" and "longer than the 1 s timeout" in rows[3]["error"]
    assert rows[5]["status"] == "error" and rows[5]["error"].startswith("SystemExit: 4")
    assert rows[7]["status"] == "timeout" and rows[7]["error"].startswith(
        "timeout: index 7 (the point last started) held the event loop for longer than 2 s, the timeout and "
        "a margin")
    assert (rows[9]["status"], rows[9]["value"], rows[9]["tries"]) == ("ok", 27, 3)
    for i in (0, 1, 2, 4, 6, 8, 10, 11):
        assert (rows[i]["status"], rows[i]["value"], rows[i]["tries"]) == ("ok", 3 * i, 1)
    assert executions(counter)[7] == 2  # in the chunk, then alone: never a third time
    assert "crashed 0" in out.stdout  # no point is charged with the kill


def test_a_batched_async_function(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:async_batched", "--range", "100", "--batched",
                  "--chunk-size", "25", check=True)
    rows = table(home, sweep_id_from(out.stdout))
    assert [(r["index"], r["status"], r["value"]) for r in rows] == [(i, "ok", 3 * i) for i in range(100)]


@pytest.mark.parametrize(("args", "message"), [
    (["tests.funcs:square", "--concurrency", "4"],
     "concurrency runs several points of an async function at once, and tests.funcs:square is not async: "
     "define it with `async def`, or drop --concurrency (concurrency=)."),
    (["tests.funcs:async_wait", "--concurrency", "0"],
     "concurrency must be an integer from 1 to 10,000 (points of an async function a worker child runs at "
     "once), not 0."),
    (["tests.funcs:async_batched", "--batched", "--concurrency", "2"],
     "concurrency runs several calls of a function at once, and a batched function is called once per "
     "chunk: drop --concurrency or --batched."),
])
def test_bad_concurrency_is_one_sentence(home: Path, args: list[str], message: str) -> None:
    proc = ttg_cli(home, "run", args[0], "--range", "10", *args[1:])
    assert proc.returncode == 2 and proc.stderr.strip() == f"ttg: error: {message}"
    assert not home.exists()


ASYNC_CELL = '''
import asyncio
import ttg

async def fetch(x, pause=0.01):  # as in a notebook: a function of __main__, given by value
    await asyncio.sleep(pause)
    return x + ttg.context().index

if __name__ == "__main__":
    res = ttg.run(fetch, 200, workers=2, concurrency=20, progress=False)
    print(res.outcome, sorted(r["value"] for r in res.to_arrow().to_pylist()) == [2 * i for i in range(200)])
'''


def test_an_async_function_of_main_through_the_api(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(ASYNC_CELL))
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=cli_env(home))
    assert proc.returncode == 0 and proc.stdout == "complete True\n", proc.stderr


def test_a_retry_back_off_longer_than_the_timeout_is_not_a_hang(home: Path, tmp_path: Path) -> None:
    """Two tries of 0.6 s with 2.5 s between them under a 1 s timeout: each try is
    within it and the loop keeps turning, so the watchdog (2 s) never kills the child."""
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:async_slow_flaky", "--range", "3", "--workers", "1",
                  "--concurrency", "3", "--timeout", "1", "--retries", "1", "--retry-backoff", "2.5",
                  check=True, TTG_TEST_COUNTER=str(counter))
    rows = table(home, sweep_id_from(out.stdout))
    assert [(r["status"], r["tries"], r["attempt"]) for r in rows] == [("ok", 2, 1)] * 3
    assert executions(counter) == {0: 2, 1: 2, 2: 2}


def test_context_in_threads_of_concurrent_points(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:async_context_in_threads", "--range", "20", "--workers", "1",
                  "--concurrency", "5", check=True)
    rows = table(home, sweep_id_from(out.stdout))
    assert [r["to_thread"] for r in rows] == list(range(20))
    assert {r["executor"] for r in rows} == {
        "ttg.context() cannot tell which point this thread computes: points run at once (--concurrency), "
        "and loop.run_in_executor does not carry the context into its thread; call ttg.context() in the "
        "coroutine and pass it on, or use asyncio.to_thread, which carries it."}


def test_a_batched_async_function_is_tried_again(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:async_batched_flaky", "--range", "10", "--batched",
                  "--chunk-size", "5", "--workers", "1", "--retries", "2", check=True)
    rows = table(home, sweep_id_from(out.stdout))
    assert [(r["status"], r["value"]) for r in rows] == [("ok", 3 * i) for i in range(10)]
    assert [r["tries"] for r in rows] == [2] * 5 + [1] * 5


def test_an_async_function_behind_a_decorator_is_awaited(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:decorated_async", "--range", "30", "--concurrency", "4",
                  check=True)
    rows = table(home, sweep_id_from(out.stdout))
    assert [(r["status"], r["value"]) for r in rows] == [("ok", 3 * i) for i in range(30)]


def test_a_coroutine_returned_by_a_plain_function_is_a_clear_error(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:returns_coroutine", "--range", "3", check=True)
    rows = table(home, sweep_id_from(out.stdout))
    assert {r["status"] for r in rows} == {"error"}
    assert {r["error"] for r in rows} == {
        "TypeError: the function returned coroutine decorated_async instead of a value: define it with "
        "async def (TTG awaits those), and return a value, not a generator"}
    assert "was never awaited" not in out.stderr
