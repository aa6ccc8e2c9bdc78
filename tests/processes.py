"""Helpers for tests that run real ttg processes: start them in their own
session with output in files, find their children through /proc, wait for a
condition, and kill every process group they started, even when a test fails.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import ROOT, cli_env
from ttg import settings as settings_mod
from ttg.stores import open_store

T = TypeVar("T")


@dataclass
class Proc:
    """A ttg process started in a new session (its pid is its process group id)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    args: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ttg {' '.join(self.args)} still running after {timeout} s:\n"
                                 f"{self.stdout}\n{self.stderr}") from None

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        """SIGKILL the whole group (the ttg process and every child it started)."""
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Procs:
    """Starts ttg processes and kills all their process groups at cleanup."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Proc] = []

    def start(self, home: Path, *args: str, prefix: Sequence[str] = (), **env: str) -> Proc:
        """``ttg ARGS``; ``prefix`` runs it through another command (tests/netns.py:
        ``Host.command([])`` runs it on a host of a multi-host test)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        n = len(self.started)
        out, err = self.logs / f"{n}.out", self.logs / f"{n}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen([*prefix, sys.executable, "-m", "ttg", *args], cwd=ROOT,
                                     env=cli_env(home, **env), stdout=fo, stderr=fe,
                                     start_new_session=True)
        proc = Proc(popen, out, err, args)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            proc.kill_group()


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def children(pid: int) -> list[int]:
    """The live (non-zombie) child processes of ``pid``, read from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found += [int(c) for c in text.split()]
    return [c for c in found if alive(c)]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def executions(counter: Path) -> Counter[int]:
    """How often each index ran, from a TTG_TEST_COUNTER file."""
    if not counter.exists():
        return Counter()
    return Counter(int(line) for line in counter.read_text().split())


def db_snapshot(home: Path) -> dict[str, Any]:
    """Every file under ``home`` and a logical dump of each SQLite database in it,
    to show that a failed command changed nothing."""
    files = sorted(p.name for p in home.iterdir()) if home.exists() else []
    # -wal and -shm are SQLite's own companions: any reader may create them
    snap: dict[str, Any] = {"files": [f for f in files if not f.endswith(("-wal", "-shm"))]}
    for name in ("results.db", "broker.db"):
        path = home / name
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            snap[name] = list(conn.iterdump())
        finally:
            conn.close()
    return snap


def table_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file (.parquet, .csv or .jsonl) as dicts."""
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        opts = pacsv.ConvertOptions(strings_can_be_null=True)
        return list(pacsv.read_csv(path, convert_options=opts).to_pylist())
    return list(pq.read_table(path).to_pylist())


def columns_of(path: Path) -> list[str]:
    """The column names of a results file, in order."""
    import json

    import pyarrow.parquet as pq

    if path.suffix == ".jsonl":
        return list(json.loads(path.read_text().splitlines()[0]))
    if path.suffix == ".csv":
        return [c.strip('"') for c in path.read_text().splitlines()[0].split(",")]
    return list(pq.read_schema(path).names)


def submit(home: Path, *args: str, **env: str) -> str:
    """`ttg submit ARGS` (must succeed); returns the sweep id."""
    from tests.conftest import sweep_id_from, ttg

    return sweep_id_from(ttg(home, "submit", *args, check=True, **env).stdout)


def sweep_in(home: Path) -> str | None:
    """The id of the one sweep in ``home``'s embedded store, read-only (None while
    the store or the sweep is still being created)."""
    import sqlite3

    path = home / "results.db"
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT id FROM sweeps").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def done_in(url: str, sweep_id: str) -> int:
    """Points of the sweep with a record in the store at ``url``."""
    s = open_store(settings_mod.load(environ={}), url)
    try:
        return s.progress(sweep_id).done
    finally:
        s.close()


def reach(url: str, sweep_id: str, points: float, running: list[Proc], timeout: float = 30) -> None:
    """Wait until ``points`` points of the sweep are done; fail with the output of
    ``running`` if they all exit first or it takes longer than ``timeout``."""
    def check() -> bool:
        return done_in(url, sweep_id) >= points or all(p.popen.poll() is not None for p in running)

    try:
        wait_until(check, timeout, f"{points:g} points of {sweep_id}", every=0.01)
        reached = done_in(url, sweep_id) >= points
    except AssertionError:
        reached = False
    if not reached:
        logs = "\n".join(f"{' '.join(p.args)}: exit {p.popen.poll()}\n{p.stderr[-3000:]}" for p in running)
        raise AssertionError(f"{sweep_id} did not reach {points:g} points within {timeout} s:\n{logs}")
