"""Opening an embedded SQLite file (drivers/sqlite.py): processes that open a new
file at the same moment (two `ttg run` of one sweep on a fresh home) all get it.
SQLite refuses all but one of them with "database is locked" as they switch it to
WAL, at once and without its busy timeout; 25 of 180 opens failed so."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from ttg.drivers.sqlite import connect
from ttg.errors import BrokerError

SCHEMA = "CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, s TEXT); CREATE INDEX IF NOT EXISTS x ON t (s)"


def _open(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        connect(Path(path), SCHEMA, BrokerError).close()
        results.put("ok")
    except BrokerError as exc:
        results.put(str(exc))


def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for k in range(30):
        barrier, results = ctx.Barrier(3), ctx.Queue()
        path = str(tmp_path / f"{k}.db")
        procs = [ctx.Process(target=_open, args=(path, barrier, results)) for _ in range(3)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
    assert outcomes == ["ok"] * 90
