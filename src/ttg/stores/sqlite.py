"""The embedded result store: one SQLite file, for one machine.

Tables:

``sweeps``   one row per sweep: its record (JSON), state ('active' or
             'cancelled') and exact progress counters, updated in the same
             transaction as each commit.
``chunks``   one row per committed chunk: (sweep, start) is the key, ``stop``
             ends it, ``data`` is the msgpack blob of its records (see
             core/records.py) and ``n_failed`` lets failures be found without
             decoding. Ranges of one sweep never overlap.
``workers``  worker presence (``SqlitePresence``): one row per worker
             supervisor, its id, its newest beat (Unix time) and that beat as
             JSON (stores/presence.py); rows older than a day are deleted when
             a beat is written.

A commit runs in ``BEGIN IMMEDIATE``: it finds the committed range with the
largest start below the new stop; the new range overlaps something exactly
when that range ends after the new start. Committed ranges being disjoint,
that single look-up is enough.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ..core.records import STATUSES, ChunkRecords
from ..core.sweep import Sweep
from ..drivers import sqlite as sqlitedb
from ..errors import ConfigError, StoreUnavailable
from .base import Progress, ResultStore, SweepInfo
from .presence import PRUNE_SECONDS, PresenceStore, WorkerBeat

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    n_ok INTEGER NOT NULL DEFAULT 0,
    n_error INTEGER NOT NULL DEFAULT 0,
    n_crashed INTEGER NOT NULL DEFAULT 0,
    n_timeout INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    sweep TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    n_failed INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sweep, start)
) WITHOUT ROWID
"""



class SqliteStore(ResultStore):
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """``create=False``: refuse a file that does not exist (ConfigError)."""
        self.path = Path(path)
        _check_exists(self.path, create)
        self._db = sqlitedb.connect(self.path, SCHEMA, StoreUnavailable)

    def _tx(self) -> sqlitedb.Transaction:
        return sqlitedb.transaction(self._db, StoreUnavailable)

    def _save_sweep(self, sweep: Sweep, *, created: bool) -> None:
        record = json.dumps(sweep.to_record())
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO sweeps (id, record, created, updated) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET record = excluded.record, state = 'active', "
                       "updated = excluded.updated", (sweep.id, record, sweep.created, now))

    def find(self, sweep_id: str) -> Sweep | None:
        row = sqlitedb.guarded(StoreUnavailable, lambda: self._db.execute(
            "SELECT record FROM sweeps WHERE id = ?", (sweep_id,)).fetchone())
        return Sweep.from_record(json.loads(row[0])) if row else None

    def sweeps(self) -> list[SweepInfo]:
        rows = sqlitedb.guarded(StoreUnavailable, lambda: self._db.execute(
            "SELECT record, state, updated, n_ok, n_error, n_crashed, n_timeout FROM sweeps "
            "ORDER BY created DESC").fetchall())
        out = []
        for record, state, updated, *counts in rows:
            sweep = Sweep.from_record(json.loads(record))
            out.append(SweepInfo(sweep, state, Progress(sweep.total, *counts), updated))
        return out

    def state(self, sweep_id: str) -> str:
        self.sweep(sweep_id)
        row = self._db.execute("SELECT state FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        return str(row[0])

    def delete(self, sweep_id: str) -> int:
        with self._tx() as db:
            row = db.execute("SELECT n_ok + n_error + n_crashed + n_timeout FROM sweeps WHERE id = ?",
                             (sweep_id,)).fetchone()
            db.execute("DELETE FROM chunks WHERE sweep = ?", (sweep_id,))
            db.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))
        return int(row[0]) if row else 0

    def set_state(self, sweep_id: str, state: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE sweeps SET state = ?, updated = ? WHERE id = ?",
                       (state, time.time(), sweep_id))

    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        blob = records.encode()
        counts = records.counts()
        with self._tx() as db:
            if _overlaps(db, sweep_id, records.start, records.stop):
                return False
            db.execute("INSERT INTO chunks (sweep, start, stop, n_failed, data) VALUES (?, ?, ?, ?, ?)",
                       (sweep_id, records.start, records.stop, len(records) - counts.get("ok", 0), blob))
            _add_counts(db, sweep_id, counts, +1)
        return True

    def committed_ranges(self, sweep_id: str, start: int, stop: int) -> list[tuple[int, int]]:
        def read() -> list[tuple[int, int]]:
            out = []
            # walk down from the last range starting before `stop`; ranges are disjoint,
            # so the first one ending at or before `start` ends the walk
            for a, b in self._db.execute("SELECT start, stop FROM chunks WHERE sweep = ? AND start < ? "
                                         "ORDER BY start DESC", (sweep_id, stop)):
                if b <= start:
                    break
                out.append((a, b))
            return out[::-1]

        return sqlitedb.guarded(StoreUnavailable, read)

    def progress(self, sweep_id: str) -> Progress:
        sweep = self.sweep(sweep_id)
        row = self._db.execute("SELECT n_ok, n_error, n_crashed, n_timeout FROM sweeps WHERE id = ?",
                               (sweep_id,)).fetchone()
        return Progress(sweep.total, *row)

    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        where = "AND n_failed > 0" if failed_only else ""
        at = -1
        while True:  # pages of 64 chunks, so no read transaction stays open for long
            rows = sqlitedb.guarded(StoreUnavailable, partial(
                self._page, f"SELECT start, stop, data FROM chunks WHERE sweep = ? AND start > ? {where} "
                "ORDER BY start LIMIT 64", (sweep_id, at)))
            if not rows:
                return
            for a, b, blob in rows:
                yield ChunkRecords.decode(a, b, blob)
            at = rows[-1][0]

    def _page(self, sql: str, args: tuple[object, ...]) -> list[tuple[int, int, bytes]]:
        return self._db.execute(sql, args).fetchall()

    def _replace(self, sweep_id: str, old: ChunkRecords, new: list[ChunkRecords]) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM chunks WHERE sweep = ? AND start = ? AND stop = ?",
                             (sweep_id, old.start, old.stop))
            if cur.rowcount == 0:
                return False
            _add_counts(db, sweep_id, old.counts(), -1)
            for rec in new:
                counts = rec.counts()
                db.execute("INSERT INTO chunks (sweep, start, stop, n_failed, data) VALUES (?, ?, ?, ?, ?)",
                           (sweep_id, rec.start, rec.stop, len(rec) - counts.get("ok", 0), rec.encode()))
                _add_counts(db, sweep_id, counts, +1)
        return True

    def close(self) -> None:
        self._db.close()


PRESENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    beat REAL NOT NULL,
    record TEXT NOT NULL
)
"""


class SqlitePresence(PresenceStore):
    """Worker beats in the embedded store's file (table ``workers``)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        _check_exists(self.path, create)
        self._db = sqlitedb.connect(self.path, PRESENCE_SCHEMA, StoreUnavailable)

    def _tx(self) -> sqlitedb.Transaction:
        return sqlitedb.transaction(self._db, StoreUnavailable)

    def beat(self, info: WorkerBeat) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE beat < ?", (info.beat - PRUNE_SECONDS,))
            db.execute("INSERT INTO workers (id, beat, record) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE "
                       "SET beat = excluded.beat, record = excluded.record",
                       (info.worker, info.beat, info.to_json()))

    def workers(self) -> list[WorkerBeat]:
        rows = sqlitedb.guarded(StoreUnavailable, lambda: self._db.execute(
            "SELECT record FROM workers ORDER BY beat DESC, id").fetchall())
        return [WorkerBeat.from_json(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()


def _check_exists(path: Path, create: bool) -> None:
    if not create and not path.exists():
        raise ConfigError(f"the embedded SQLite store {path} does not exist on this machine: it "
                          "serves one machine only; use a networked store (redis://...) for workers "
                          "on other machines, or run this worker where the sweep was submitted.")


def _overlaps(db: sqlite3.Connection, sweep_id: str, start: int, stop: int) -> bool:
    row = db.execute("SELECT stop FROM chunks WHERE sweep = ? AND start < ? ORDER BY start DESC LIMIT 1",
                     (sweep_id, stop)).fetchone()
    return row is not None and row[0] > start


def _add_counts(db: sqlite3.Connection, sweep_id: str, counts: dict[str, int], sign: int) -> None:
    db.execute("UPDATE sweeps SET n_ok = n_ok + ?, n_error = n_error + ?, n_crashed = n_crashed + ?, "
               "n_timeout = n_timeout + ?, updated = ? WHERE id = ?",
               (*(sign * counts.get(k, 0) for k in STATUSES), time.time(), sweep_id))
