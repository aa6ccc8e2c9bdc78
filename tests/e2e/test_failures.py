"""A sweep's failure policy through `ttg run` and real workers: tries in place
(--retries, --retry-on, --retry-backoff) with every try counted, each try timed
on its own, and a sweep stopped by --max-failures (exit 1, the reason shown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ttg
from tests.conftest import records_per_index, sweep_id_from
from tests.conftest import ttg as ttg_cli
from tests.processes import executions


def table(home: Path, sweep: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = ttg.results(sweep, home=home).to_arrow().to_pylist()
    return sorted(rows, key=lambda r: int(r["index"]))


def test_a_listed_exception_is_tried_again_until_it_succeeds(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:flaky_twice", "--range", "40", "--workers", "2",
                  "--chunk-size", "7", "--retries", "2", "--retry-on", "ConnectionError",
                  "--retry-backoff", "0.01", check=True, TTG_TEST_COUNTER=str(counter))
    sweep = sweep_id_from(out.stdout)
    rows = table(home, sweep)
    assert [(r["index"], r["status"], r["value"], r["tries"]) for r in rows] == [
        (i, "ok", i * 10, 3) for i in range(40)]
    assert executions(counter) == {i: 3 for i in range(40)}
    assert records_per_index(home, sweep) == {i: 1 for i in range(40)}


def test_the_last_try_is_recorded_with_its_count(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:flaky_twice", "--range", "10", "--workers", "1",
                  "--retries", "1", "--retry-on", "builtins.ConnectionError", check=True,
                  TTG_TEST_COUNTER=str(counter))
    rows = table(home, sweep_id_from(out.stdout))
    assert {(r["status"], r["tries"]) for r in rows} == {("error", 2)}
    assert all(str(r["error"]).startswith("ConnectionResetError: try 2 of") for r in rows)
    assert executions(counter) == {i: 2 for i in range(10)}


def test_another_exception_is_recorded_at_once(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:value_error", "--range", "12", "--workers", "1",
                  "--retries", "5", "--retry-on", "ConnectionError,TimeoutError", "--retry-backoff", "10",
                  check=True, TTG_TEST_COUNTER=str(counter))
    rows = table(home, sweep_id_from(out.stdout))
    assert {(r["status"], r["tries"]) for r in rows} == {("error", 1)}
    assert executions(counter) == {i: 1 for i in range(12)}  # and no 10 s wait


def test_each_try_has_the_whole_timeout(home: Path, tmp_path: Path) -> None:
    """Three tries of 0.4 s each under a 0.7 s timeout: no try runs past it, so the
    point is not killed, though the three together take 1.2 s."""
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:slow_flaky_twice", "--range", "2", "--workers", "1",
                  "--timeout", "0.7", "--retries", "2", check=True, TTG_TEST_COUNTER=str(counter))
    rows = table(home, sweep_id_from(out.stdout))
    assert [(r["status"], r["value"], r["tries"], r["attempt"]) for r in rows] == [
        ("ok", 0, 3, 1), ("ok", 1, 3, 1)]
    assert executions(counter) == {0: 3, 1: 3}


def test_without_retries_there_is_no_tries_column(home: Path) -> None:
    out = ttg_cli(home, "run", "tests.funcs:square", "--range", "5", check=True)
    assert "tries" not in table(home, sweep_id_from(out.stdout))[0]


@pytest.mark.parametrize(("limit", "expected"), [("10", 10), ("2%", 20)])
def test_too_many_failures_stop_the_sweep(home: Path, tmp_path: Path, limit: str, expected: int) -> None:
    counter = tmp_path / "counter"
    out = ttg_cli(home, "run", "tests.funcs:fails_from_100", "--range", "1000", "--workers", "2",
                  "--chunk-size", "5", "--max-failures", limit, TTG_TEST_COUNTER=str(counter))
    assert out.returncode == 1, out.stdout + out.stderr
    sweep = sweep_id_from(out.stdout)
    assert "stopped after" in out.stdout and f"the limit is {expected} (max failures {limit})" in out.stdout
    p = ttg.results(sweep, home=home).progress()
    # the failures that stopped it, plus at most what the two workers had in hand
    assert expected <= p.failed <= expected + 4 * 5, p
    assert p.done < 1000
    ran = executions(counter)
    assert set(ran.values()) == {1} and len(ran) == p.done  # nothing computed twice or left uncommitted
    status = ttg_cli(home, "status", sweep, check=True).stdout
    assert f"sweep     {sweep} (stopped)" in status and "stopped   stopped after" in status
    assert "stopped" in ttg_cli(home, "list", check=True).stdout

    # a higher limit goes on from there, computing only what is missing
    again = ttg_cli(home, "run", "tests.funcs:fails_from_100", "--range", "1000", "--workers", "2",
                    "--chunk-size", "5", "--max-failures", "100%", check=True, TTG_TEST_COUNTER=str(counter))
    assert "complete" in again.stdout
    assert set(executions(counter).values()) == {1} and len(executions(counter)) == 1000
    assert records_per_index(home, sweep) == {i: 1 for i in range(1000)}


def test_the_api_takes_exception_classes(home: Path, tmp_path: Path) -> None:
    res = ttg.run("tests.funcs:flaky_twice", ttg.Range(6), workers=1, retries=2, retry_on=[ConnectionError],
                  max_failures=1, home=home)
    assert res.outcome == "complete"
    assert res.sweep.options.retry_on == ("builtins.ConnectionError",)
    assert [r["tries"] for r in table(home, res.name)] == [3] * 6
    stopped = ttg.run("tests.funcs:value_error", ttg.Range(50), workers=1, chunk_size=5, max_failures=1,
                      home=home)
    assert stopped.outcome == "stopped" and stopped.progress().failed < 50
