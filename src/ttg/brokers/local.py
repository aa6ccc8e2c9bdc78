"""The embedded broker: one SQLite file, safe for many processes on one machine.

Tables:

``chunks``     one row per queued or leased chunk; (sweep, start, stop) is
               unique, so resubmitting adds nothing twice. ``state`` is
               'queued' or 'leased'; a leased row has ``token`` (who owns it)
               and ``deadline``; ``ready_at`` delays a released chunk;
               ``failures``/``last_failure`` count failed attempts. An acked
               chunk's row is deleted, so the table holds only live work.
               ``deadline`` and ``ready_at`` are on this host's monotonic clock
               (seconds since it booted, which every process of the host
               shares and a wall-clock step never moves), with ``boot``, the
               kernel's id of that boot: a value from another boot (or none:
               a file written by an older TTG) is long past.
``dead``       the dead-letter record: chunk, reason, time.
``cancelled``  sweeps whose chunks are refused.

A lease is one ``BEGIN IMMEDIATE`` transaction: pick the oldest expired lease
(counted as a lost attempt) or else the best ready chunk, and stamp it with a
fresh token and deadline.

Every worker of this broker runs on this machine, so a lease whose owner
is gone need not wait for its deadline: ``owner`` is ``host-supervisor
pid-child pid``, and when both processes have exited (a supervisor that lives
releases its dead children's chunks itself, with the reason) an idle worker
expires the lease at once, checking at most once a second. That is what a
networked broker does when it sees a connection close.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Collection, Iterable
from dataclasses import replace
from pathlib import Path

from ..core.chunking import Chunk
from ..core.clock import SYSTEM, Clock
from ..core.retry import Failure
from ..drivers import sqlite as sqlitedb
from ..errors import BrokerUnavailable, LeaseLost
from ..settings import Settings
from .base import BrokerBackend, DeadLetter, Lease, QueueStats, poll

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    sweep TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    ready_at REAL NOT NULL DEFAULT 0,
    token TEXT,
    owner TEXT,
    deadline REAL,
    boot TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT,
    UNIQUE (sweep, start, stop)
);
CREATE INDEX IF NOT EXISTS chunks_ready ON chunks (state, priority DESC, id);
CREATE INDEX IF NOT EXISTS chunks_deadline ON chunks (state, deadline);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    sweep TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_sweep ON dead (sweep);
CREATE TABLE IF NOT EXISTS cancelled (sweep TEXT PRIMARY KEY)
"""

_COLS = "id, sweep, start, stop, priority, body, failures, last_failure"


class LocalBroker(BrokerBackend):
    def __init__(self, path: str | Path, lease_seconds: float = 10.0,
                 clock: Clock = SYSTEM, poll_seconds: float = 0.05) -> None:
        super().__init__(lease_seconds, clock)
        self.path = Path(path)
        self.poll_seconds = poll_seconds
        self._db = sqlitedb.connect(self.path, SCHEMA, BrokerUnavailable)
        sqlitedb.add_columns(self._db, "chunks", {"boot": "TEXT"}, BrokerUnavailable)
        self._host = socket.gethostname()
        self._boot = boot_id()
        self._next_orphan_check = 0.0

    @classmethod
    def from_url(cls, url: str, settings: Settings, clock: Clock = SYSTEM) -> LocalBroker:
        return cls(url.removeprefix("local://"), settings.lease_seconds, clock, settings.poll_seconds)

    def _tx(self) -> sqlitedb.Transaction:
        return sqlitedb.transaction(self._db, BrokerUnavailable)

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        rows = [(sweep_id, c.start, c.stop, priority, body) for c, body in items]
        with self._tx() as db:
            db.execute("DELETE FROM cancelled WHERE sweep = ?", (sweep_id,))
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO chunks (sweep, start, stop, priority, body) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        def attempt() -> Lease | None:
            got = self._try_lease(worker_id, sweep_id, skip)
            if got is None and self._expire_orphans():
                got = self._try_lease(worker_id, sweep_id, skip)
            return got

        return poll(attempt, timeout, self.poll_seconds)

    def _expire_orphans(self) -> bool:
        """Expire leases held by processes of this host that no longer exist."""
        now = self.clock.monotonic()
        if now < self._next_orphan_check:
            return False
        self._next_orphan_check = now + 1.0
        owners = sqlitedb.guarded(BrokerUnavailable, lambda: self._db.execute(
            "SELECT DISTINCT owner FROM chunks WHERE state = 'leased'").fetchall())
        dead = [o for (o,) in owners if o and _gone(o, self._host)]
        if not dead:
            return False
        with self._tx() as db:
            db.executemany("UPDATE chunks SET deadline = 0 WHERE state = 'leased' AND owner = ?",
                           [(o,) for o in dead])
        return True

    def _try_lease(self, worker_id: str, sweep_id: str | None, skip: Collection[str]) -> Lease | None:
        now = self.clock.monotonic()
        only = "AND sweep = ?" if sweep_id else ""
        args: tuple[object, ...] = (sweep_id,) if sweep_id else ()
        if skip:
            only += f" AND sweep NOT IN ({', '.join('?' * len(skip))})"
            args += tuple(skip)
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLS} FROM chunks WHERE state = 'leased' AND (deadline < ? OR "
                             f"boot IS NOT ?) {only} ORDER BY deadline LIMIT 1",
                             (now, self._boot, *args)).fetchone()
            lost = row is not None
            if row is None:
                row = db.execute(f"SELECT {_COLS} FROM chunks WHERE state = 'queued' AND (ready_at <= ? OR "
                                 f"boot IS NOT ?) {only} ORDER BY priority DESC, id LIMIT 1",
                                 (now, self._boot, *args)).fetchone()
            if row is None:
                return None
            rowid, sweep, start, stop, priority, body, failures, last = row
            if lost:
                failures += 1
                last = json.dumps(Failure("lost", "the lease expired: its worker died, hung or was "
                                          "cut off").to_dict())
            token = f"{rowid}:{secrets.token_hex(8)}"
            deadline = now + self.lease_seconds
            db.execute("UPDATE chunks SET state = 'leased', token = ?, owner = ?, deadline = ?, boot = ?, "
                       "failures = ?, last_failure = ? WHERE id = ?",
                       (token, worker_id, deadline, self._boot, failures, last, rowid))
        return Lease(sweep, Chunk(start, stop), body, token, deadline, failures,
                     Failure.from_dict(json.loads(last) if last else None), priority, fresh=failures == 0)

    def extend(self, lease: Lease) -> Lease:
        deadline = self.clock.monotonic() + self.lease_seconds
        with self._tx() as db:
            cur = db.execute("UPDATE chunks SET deadline = ?, boot = ? WHERE id = ? AND token = ? "
                             "AND state = 'leased'", (deadline, self._boot, _rowid(lease), lease.token))
            if cur.rowcount == 0:
                raise LeaseLost(f"lease on {lease.sweep_id} {lease.chunk} was lost; another worker "
                                "has the chunk (or it was acked or cancelled).")
        return replace(lease, deadline=deadline)

    def ack(self, lease: Lease) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE id = ? AND token = ?", (_rowid(lease), lease.token))

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        with self._tx() as db:
            if self._is_cancelled(db, lease.sweep_id):
                db.execute("DELETE FROM chunks WHERE id = ? AND token = ?", (_rowid(lease), lease.token))
                return
            if failure is None:
                db.execute("UPDATE chunks SET state = 'queued', token = NULL, owner = NULL, "
                           "deadline = NULL, ready_at = ?, boot = ? WHERE id = ? AND token = ?",
                           (self.clock.monotonic() + delay, self._boot, _rowid(lease), lease.token))
            else:
                db.execute("UPDATE chunks SET state = 'queued', token = NULL, owner = NULL, "
                           "deadline = NULL, ready_at = ?, boot = ?, failures = failures + 1, "
                           "last_failure = ? WHERE id = ? AND token = ?",
                           (self.clock.monotonic() + delay, self._boot, json.dumps(failure.to_dict()),
                            _rowid(lease), lease.token))

    def dead_letter(self, lease: Lease, reason: str) -> None:
        with self._tx() as db:
            cur = db.execute("DELETE FROM chunks WHERE id = ? AND token = ?", (_rowid(lease), lease.token))
            if cur.rowcount:
                db.execute("INSERT INTO dead (sweep, start, stop, reason, at) VALUES (?, ?, ?, ?, ?)",
                           (lease.sweep_id, lease.chunk.start, lease.chunk.stop, reason, self.clock.time()))

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        rows = sqlitedb.guarded(BrokerUnavailable, lambda: self._db.execute(
            "SELECT sweep, start, stop, reason, at FROM dead WHERE sweep = ? ORDER BY id",
            (sweep_id,)).fetchall())
        return [DeadLetter(s, Chunk(a, b), r, t) for s, a, b, r, t in rows]

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        only = "WHERE sweep = ?" if sweep_id else ""
        args = (sweep_id,) if sweep_id else ()

        def read() -> QueueStats:
            counts = dict(self._db.execute(
                f"SELECT state, count(*) FROM chunks {only} GROUP BY state", args).fetchall())
            dead = self._db.execute(f"SELECT count(*) FROM dead {only}", args).fetchone()[0]
            return QueueStats(counts.get("queued", 0), counts.get("leased", 0), dead)

        return sqlitedb.guarded(BrokerUnavailable, read)

    def cancel(self, sweep_id: str) -> int:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO cancelled (sweep) VALUES (?)", (sweep_id,))
            # leased chunks go too: their owners' next extend raises LeaseLost
            return db.execute("DELETE FROM chunks WHERE sweep = ?", (sweep_id,)).rowcount

    @staticmethod
    def _is_cancelled(db: sqlite3.Connection, sweep_id: str) -> bool:
        return db.execute("SELECT 1 FROM cancelled WHERE sweep = ?", (sweep_id,)).fetchone() is not None

    def close(self) -> None:
        self._db.close()


def _gone(owner: str, host: str) -> bool:
    """True when ``owner`` ("host-supervisor pid-child pid") names processes of
    ``host`` that have both exited."""
    parts = owner.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != host or not (parts[1].isdigit() and parts[2].isdigit()):
        return False
    return not (_alive(int(parts[1])) or _alive(int(parts[2])))


def _alive(pid: int) -> bool:
    """Running: not gone, and not a zombie (exited, not yet reaped by a parent that
    does not wait() for it: ``kill(pid, 0)`` still succeeds for those)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):  # not Linux, or gone meanwhile: kill() said it was there
        return True


def boot_id() -> str:
    """This host's boot (Linux: the kernel's random boot id; elsewhere, when it booted,
    to the minute)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return f"booted-{round((time.time() - time.monotonic()) / 60)}"


def _rowid(lease: Lease) -> int:
    return int(lease.token.partition(":")[0])

