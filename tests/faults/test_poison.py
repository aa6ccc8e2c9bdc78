"""A bad parameter costs one record, not the sweep: an index that kills its
process, segfaults or hangs is retried, isolated by splitting and recorded as
crashed or timeout; an index that raises (even SystemExit) or returns
something that cannot be stored is that index's error. Every other index is ok,
and `ttg run` exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_exactly_once, sweep_id_from, ttg
from tests.processes import table_rows

SWEEP = ("--range", "40", "--chunk-size", "10", "--max-attempts", "2", "--workers", "2")


def run_poisoned(home: Path, fn: str, *extra: str) -> tuple[str, str]:
    proc = ttg(home, "run", f"tests.funcs:{fn}", *SWEEP, *extra, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert ": complete, 40/40 points" in proc.stdout, proc.stdout
    return sweep_id_from(proc.stdout), proc.stdout


def exported(home: Path, sweep: str, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "out.parquet"
    ttg(home, "results", sweep, "-o", str(out), check=True)
    return table_rows(out)


@pytest.mark.parametrize(("fn", "status", "extra", "reason"), [
    ("exit_on_13", "crashed", (),
     "the process exited with status 1 at index 13 (os._exit or a crash in native code)"),
    ("exit0_on_13", "crashed", (),
     "the process exited with status 0 at index 13 (os._exit or a crash in native code)"),
    ("segfault_on_13", "crashed", (), "the process was killed by SIGSEGV (segmentation fault) at index 13"),
    ("hang_on_13", "timeout", ("--timeout", "1"), "index 13 ran longer than the 1 s timeout"),
], ids=["os._exit", "os._exit(0)", "segfault", "hang"])
def test_process_killing_index_is_isolated(fn: str, status: str, extra: tuple[str, ...], reason: str,
                                           home: Path, tmp_path: Path) -> None:
    sweep, summary = run_poisoned(home, fn, *extra)
    counts = {"crashed": 0, "timeout": 0, status: 1}
    assert f"ok 39  error 0  crashed {counts['crashed']}  timeout {counts['timeout']}" in summary
    # its dead letter is history (`ttg errors`): every index has its record
    assert "dead-lettered" not in summary
    assert_exactly_once(home, sweep, 40)

    rows = exported(home, sweep, tmp_path)
    assert len(rows) == 40
    for i, row in enumerate(rows):
        assert row["index"] == i and row["x"] == i
        if i == 13:
            assert row["status"] == status and row["value"] is None
            assert row["error"] == f"{status}: {reason} (after 2 attempts)"
        else:
            assert (row["status"], row["value"], row["error"]) == ("ok", i, None), row

    errors = ttg(home, "errors", sweep, check=True).stdout.splitlines()
    assert errors == [
        f"13\t{status}\t{status}: {reason} (after 2 attempts)\t13",
        f"dead-letter [13, 14): {reason} (after 2 attempts)",
    ]
    status_out = ttg(home, "status", sweep, check=True).stdout
    assert "queue     0 queued, 0 leased chunks" in status_out and "(done)" in status_out


def test_poison_row_of_a_file_space_keeps_its_point(home: Path, tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.csv"
    rows_file.write_text("x,label\n" + "".join(f"{i},r{i}\n" for i in range(30)))
    proc = ttg(home, "run", "tests.funcs:exit_on_row_13", "--space", str(rows_file), "--chunk-size", "8",
               "--max-attempts", "1", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_id_from(proc.stdout)
    assert_exactly_once(home, sweep, 30)
    rows = exported(home, sweep, tmp_path)
    assert [(r["x"], r["label"]) for r in rows] == [(i, f"r{i}") for i in range(30)]
    assert [r["index"] for r in rows if r["status"] != "ok"] == [13]
    assert rows[13]["status"] == "crashed"
    assert all(r["value"] == 2 * r["x"] for r in rows if r["index"] != 13)


@pytest.mark.parametrize(("fn", "error"), [
    ("sys_exit_on_13", "SystemExit: 3"),
    ("unstorable_on_13", "TypeError: the result cannot be stored: cannot store a object; "
                         "return numbers, strings, lists or dicts"),
], ids=["SystemExit", "unstorable-result"])
def test_index_error_without_a_crash(fn: str, error: str, home: Path, tmp_path: Path) -> None:
    sweep, summary = run_poisoned(home, fn)
    assert "ok 39  error 1  crashed 0  timeout 0" in summary
    assert "dead-lettered" not in summary
    assert_exactly_once(home, sweep, 40)
    rows = exported(home, sweep, tmp_path)
    assert all(r["attempt"] == 1 for r in rows)  # no chunk was retried
    bad = [r for r in rows if r["status"] != "ok"]
    assert [(r["index"], r["status"], r["value"], r["error"]) for r in bad] == [(13, "error", None, error)]
    assert all(r["value"] == r["x"] for r in rows if r["index"] != 13)
    first = ttg(home, "errors", sweep, check=True).stdout.splitlines()[0]
    assert first == f"13\terror\t{error}\t13"


def test_retry_a_crashed_index(home: Path, tmp_path: Path) -> None:
    sweep, _ = run_poisoned(home, "exit_on_13_unless_fixed")
    # not fixed: it is isolated again, still one record
    again = ttg(home, "retry", sweep, "--workers", "2", "--status", "crashed", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "re-queued 1 indices" in again.stdout and "crashed 1" in again.stdout
    assert_exactly_once(home, sweep, 40)
    # fixed: it succeeds
    fixed = ttg(home, "retry", sweep, "--workers", "2", TTG_TEST_FIXED="1", timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    assert "ok 40  error 0  crashed 0  timeout 0" in fixed.stdout
    assert_exactly_once(home, sweep, 40)
    rows = exported(home, sweep, tmp_path)
    assert [(r["index"], r["status"], r["value"]) for r in rows] == [(i, "ok", i) for i in range(40)]
