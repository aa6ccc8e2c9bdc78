"""SQLite plumbing shared by the embedded broker and the embedded store.

Each process opens its own connection (never across fork). WAL mode lets
readers run beside the one writer; ``BEGIN IMMEDIATE`` takes the write lock
up front so read-then-write steps (lease, first-commit-wins) are atomic;
the busy timeout makes concurrent writers wait instead of failing.
``synchronous=NORMAL`` in WAL mode survives any process crash; only a power
loss can drop the last transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import TtgError

T = TypeVar("T")
Transaction = AbstractContextManager[sqlite3.Connection]


def connect(path: Path, schema: str, error: type[TtgError]) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and apply ``schema``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
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
        raise error(f"cannot open {path}: {exc}; check that the directory is writable "
                    "(or set --home / TTG_HOME to one that is).") from exc
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, error: type[TtgError]) -> Iterator[sqlite3.Connection]:
    """A write transaction holding the lock from its first statement."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise error(f"SQLite is unavailable: {exc}; check the disk and the TTG home.") from exc
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise error(f"SQLite commit failed: {exc}; check the disk and the TTG home.") from exc


def guarded(error: type[TtgError], fn: Callable[[], T]) -> T:
    """Run ``fn``, turning sqlite errors into ``error``."""
    try:
        return fn()
    except sqlite3.Error as exc:
        raise error(f"SQLite failed: {exc}; check the disk and the TTG home.") from exc
