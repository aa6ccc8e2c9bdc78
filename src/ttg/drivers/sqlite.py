"""SQLite plumbing shared by the embedded broker and the embedded store.

Each process opens its own connection (never across fork). WAL mode lets
readers run beside the one writer; ``BEGIN IMMEDIATE`` takes the write lock
up front so read-then-write steps (lease, first-commit-wins) are atomic;
the busy timeout makes concurrent writers wait instead of failing.
``synchronous=NORMAL`` in WAL mode survives any process crash; only a power
loss can drop the last transactions.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import DiskFull, TtgError

T = TypeVar("T")
Transaction = AbstractContextManager[sqlite3.Connection]


def connect(path: Path, schema: str, error: type[TtgError]) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and apply ``schema``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        _to_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        # checkpoint the WAL every ~64 MiB rather than every 4 MiB: each checkpoint is an
        # fsync inside some writer's commit, and big chunk blobs filled 4 MiB every ~30 commits
        conn.execute("PRAGMA wal_autocheckpoint=16384")
        with transaction(conn, error):
            for stmt in schema.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
    except (sqlite3.Error, OSError) as exc:
        if _full(exc):
            raise _disk_full(exc) from exc
        raise error(f"cannot open {path}: {exc}; check that the directory is writable "
                    "(or set --home / TTG_HOME to one that is).") from exc
    return conn


#: how long opening a new file waits for another process switching it to WAL
WAL_SWITCH_SECONDS = 30.0


def _to_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode. On a new file, processes that open it at once race
    to switch it, and SQLite refuses the losers with "database is locked" at once,
    without the busy timeout (waiting could deadlock): try again until it is done."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str], error: type[TtgError]) -> None:
    """Add the columns a file written by an older TTG lacks (name -> SQL type)."""
    have = {row[1] for row in guarded(error, lambda: conn.execute(f"PRAGMA table_info({table})").fetchall())}
    for name, kind in columns.items():
        if name in have:
            continue
        try:
            with transaction(conn, error):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # (another process added it meanwhile: fine)
                raise error(f"cannot update {table} in this SQLite file: {exc}; check the disk and the "
                            "TTG home.") from exc


@contextmanager
def transaction(conn: sqlite3.Connection, error: type[TtgError]) -> Iterator[sqlite3.Connection]:
    """A write transaction holding the lock from its first statement; every SQLite
    error in it is translated (``error``, or DiskFull)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, error, "SQLite is unavailable") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, error, "SQLite failed") from exc
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, error, "SQLite commit failed") from exc


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:  # no transaction left to roll back (SQLite ended it itself)
        pass


def guarded(error: type[TtgError], fn: Callable[[], T]) -> T:
    """Run ``fn``, turning sqlite errors into ``error`` (or DiskFull)."""
    try:
        return fn()
    except sqlite3.Error as exc:
        raise translate(exc, error, "SQLite failed") from exc


def translate(exc: sqlite3.Error, error: type[TtgError], what: str) -> TtgError:
    if _full(exc):
        return _disk_full(exc)
    return error(f"{what}: {exc}; check the disk and the TTG home.")


def _full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def _disk_full(exc: BaseException) -> DiskFull:
    return DiskFull(f"the disk that holds the TTG home is full ({exc}); free space, or set --home / "
                    "TTG_HOME to a disk with room, and run the same command again: what is committed "
                    "stays, and no chunk is charged for it.")
