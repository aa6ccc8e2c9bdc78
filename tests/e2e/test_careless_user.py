"""What a careless or new user does, through the real `ttg` command (issue 14,
items 8, 10, 11, 15, 16 and 17): pipe the output into `head`, fill the disk, ask
for a trillion points, run from the project's directory or a subdirectory,
retry, forget an extra."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_exactly_once, cli_env, records_per_index, sweep_id_from, ttg
from tests.processes import Procs, wait_until

TTG = str(Path(sys.executable).parent / "ttg")  # the console script, as a user types it


def test_a_function_that_prints_into_a_closed_pipe_fails_no_point(home: Path) -> None:
    """``ttg run ... 2>&1 | head -c 0``: the reader of the output is gone from the
    start; the function's prints (to stderr under ttg run) never fail a point."""
    proc = subprocess.Popen([sys.executable, "-m", "ttg", "run", "tests.funcs:prints", "--range", "2000",
                             "--chunk-size", "50", "--workers", "2"], cwd=ROOT, env=cli_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    proc.wait(120)
    sweep = ttg(home, "list", check=True).stdout.splitlines()[1].split()[0]
    status = ttg(home, "status", sweep, check=True).stdout
    assert "ok 2000  error 0  crashed 0  timeout 0" in status, status


def test_prints_go_to_stderr_under_ttg_run(home: Path) -> None:
    """Stdout carries TTG's own output (what a script parses); the function's prints
    stay visible, on stderr."""
    run = ttg(home, "run", "tests.funcs:prints", "--range", "5", "--workers", "1", check=True)
    assert "point 3 computed" in run.stderr and "point 3" not in run.stdout
    assert "complete, 5/5 points" in run.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (we run as root, as CI does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_one_line(small_disk: Path) -> None:
    """TTG_HOME on a 3 MB disk that the results fill: `ttg run` stops with one line
    naming the problem and the fix (it looped forever); what was committed is
    intact, every index at most once."""
    home = small_disk / ".ttg"
    started = time.monotonic()
    proc = ttg(home, "run", "tests.funcs:big_result", "--range", "20000", "--chunk-size", "200",
               "--workers", "2", timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 2, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ttg: error:")]
    assert len(lines) == 1 and "the disk that holds the TTG home is full" in lines[0], proc.stderr
    assert "free space, or set --home / TTG_HOME to a disk with room" in lines[0]
    assert took < 60, f"it took {took:.0f} s to stop"
    counts = records_per_index(home, sweep_id_from_home(home))
    assert counts and set(counts.values()) == {1}


def sweep_id_from_home(home: Path) -> str:
    with sqlite3.connect(f"file:{home / 'results.db'}?mode=ro", uri=True) as db:
        (sweep,) = db.execute("SELECT id FROM sweeps").fetchone()
    return str(sweep)


def test_a_trillion_points_with_auto_chunks_compute_in_bounded_memory(home: Path, procs: Procs) -> None:
    """10**12 points, chunk size auto: 256 chunks of ~3.9e9 points each, whose points
    are made as they are computed (a chunk's list of points exhausted memory), and
    a fast function makes millions of results a second: a child commits at most
    MAX_AUTO_PIECE points at a time, so the worker's memory stays small over its
    first pieces, the later of which are all errors (squares beyond 64 bits cannot
    be stored: every point carries its message)."""
    sweep = sweep_id_from(ttg(home, "submit", "tests.funcs:square", "--range", "1000000000000", check=True,
                              timeout=60).stdout)
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "1")
    peak = 0

    def committed_pieces() -> int:
        nonlocal peak
        peak = max(peak, _rss_kb(worker.pid))
        with sqlite3.connect(f"file:{home / 'results.db'}?mode=ro", uri=True) as db:
            failed = db.execute("SELECT count(*) FROM chunks WHERE n_failed > 0").fetchone()[0]
        return int(failed)

    wait_until(lambda: committed_pieces() >= 3, 90, "three pieces of errors committed")
    worker.signal_group(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.stderr
    assert "MemoryError" not in worker.stderr
    assert peak < 400_000, f"the worker's processes held {peak} kB"
    assert len(records_per_index(home, sweep)) >= 3 * 250_000


def _rss_kb(pid: int) -> int:
    """The resident memory of a process and its children (kB)."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    own = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout
    return sum(int(x) for x in (out + own).split())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "model.py").write_text("def fit(x):\n    return x + 1000\n")
    return proj


def _env_without_home() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TTG_")}


def test_the_first_command_runs_a_module_of_the_current_directory(project: Path) -> None:
    """`cd proj && ttg run model:fit ...` with the console script (not `python -m`):
    model resolves from the current directory, in the client and in the workers."""
    proc = subprocess.run([TTG, "run", "model:fit", "--range", "5", "--workers", "1"], cwd=project,
                          env=_env_without_home(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ": complete, 5/5 points" in proc.stdout


def test_commands_from_a_subdirectory_find_the_project_home(project: Path) -> None:
    env = _env_without_home()
    subprocess.run([TTG, "run", "model:fit", "--range", "5", "--workers", "1", "--name", "fits"], cwd=project,
                   env=env, capture_output=True, text=True, timeout=120, check=True)
    listing = subprocess.run([TTG, "list"], cwd=project / "sub", env=env, capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert "fits" in listing and "done" in listing, listing
    assert not (project / "sub" / ".ttg").exists()
    empty = subprocess.run([TTG, "list"], cwd=project.parent, env=env, capture_output=True, text=True,
                           timeout=60, check=True).stdout
    assert "no sweeps yet: no TTG home at" in empty and not (project.parent / ".ttg").exists()


def test_retry_says_how_many_points_it_computed(home: Path) -> None:
    """60 points, 12 failed (multiples of 7, plus 0... as tests.funcs fails them): the
    retry's summary counts the points it computed, not the sweep's."""
    first = ttg(home, "run", "tests.funcs:fail_on_7_unless_fixed", "--range", "60", "--chunk-size", "10",
                "--workers", "1", timeout=120)
    sweep = sweep_id_from(first.stdout)
    failed = 60 - sum(1 for i in range(60) if i % 7)
    retry = ttg(home, "retry", sweep, "--workers", "1", timeout=120, TTG_TEST_FIXED="1")
    assert f"60/60 points, {failed} computed in" in retry.stdout, retry.stdout
    assert f"{60 - failed} were already done" in retry.stdout
    status = ttg(home, "status", sweep, check=True).stdout
    assert f"sweep     {sweep} (done)" in status
    assert_exactly_once(home, sweep, 60)


def test_retry_brings_back_dead_lettered_chunks(home: Path) -> None:
    """A chunk set aside (dead-lettered) has no records; `ttg retry` queues it again."""
    from ttg.brokers.local import LocalBroker

    sweep = sweep_id_from(ttg(home, "submit", "tests.funcs:square", "--range", "20", "--chunk-size", "10",
                              check=True).stdout)
    with LocalBroker(home / "broker.db") as broker:
        lease = broker.lease("test", timeout=1)
        assert lease is not None
        broker.dead_letter(lease, "set aside by the test")
    status = ttg(home, "status", sweep, check=True).stdout
    assert "10 points in dead-lettered chunks without results" in status, status
    retry = ttg(home, "retry", sweep, "--workers", "1", timeout=120)
    assert "re-queued 10 indices" in retry.stdout, retry.stdout  # the other chunk is still queued
    assert "dead-lettered" not in retry.stdout, retry.stdout
    assert_exactly_once(home, sweep, 20)
    assert "dead-lettered" not in ttg(home, "status", sweep, check=True).stdout


@pytest.mark.parametrize(("module", "args", "message"), [
    ("matplotlib", ["plot", "{sweep}", "--x", "x", "--value", "value", "-o", "{dir}/p.png"],
     "ttg plot needs matplotlib, which is not installed; install it with pip install 'ttg-sweep[plot]'."),
    ("uvicorn", ["dashboard", "--port", "0"],
     "ttg dashboard needs uvicorn, which is not installed; install it with pip install "
     "'ttg-sweep[dashboard]'."),
    ("prometheus_client", ["exporter", "--port", "0"],
     "ttg exporter needs prometheus_client, which is not installed; install it with pip install "
     "'ttg-sweep[metrics]'."),
], ids=["plot", "dashboard", "exporter"])
def test_a_missing_extra_is_one_sentence(module: str, args: list[str], message: str, home: Path,
                                         tmp_path: Path) -> None:
    sweep = sweep_id_from(ttg(home, "run", "tests.funcs:square", "--range", "3", "--workers", "1",
                              check=True).stdout)
    blocked = _blocking(tmp_path, module)
    proc = ttg(home, *[a.format(sweep=sweep, dir=tmp_path) for a in args], timeout=60,
               PYTHONPATH=f"{blocked}{os.pathsep}{ROOT}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"ttg: error: {message}", proc.stderr


def test_to_pandas_without_pandas_is_one_sentence(home: Path, tmp_path: Path) -> None:
    sweep = sweep_id_from(ttg(home, "run", "tests.funcs:square", "--range", "3", "--workers", "1",
                              check=True).stdout)
    code = f"import ttg\ntry:\n    ttg.results({sweep!r}, home={str(home)!r}).to_pandas()\n" \
           "except ttg.TtgError as e:\n    print(e)\n"
    env = {**cli_env(home), "PYTHONPATH": f"{_blocking(tmp_path, 'pandas')}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.stdout.strip() == ("Results.to_pandas() needs pandas, which is not installed; install it "
                                   "with pip install 'ttg-sweep[pandas]'."), proc.stdout + proc.stderr


def _blocking(tmp_path: Path, module: str) -> Path:
    """A directory that, first on the path, makes ``import module`` fail as if it were missing."""
    d = tmp_path / f"without-{module}"
    d.mkdir()
    message = f"No module named {module!r}"
    (d / f"{module}.py").write_text(f"raise ModuleNotFoundError({message!r}, name={module!r})\n")
    return d
