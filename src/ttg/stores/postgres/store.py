"""The PostgreSQL result store: where teams keep results they care about.

URL: ``postgresql://[user[:password]@]host[:port]/database[?param=value&...]``
(``postgres://`` too). Query parameters are libpq's (``sslmode``,
``connect_timeout``, ``application_name``, ...), except TTG's own
``sql_view=1`` (sqlcopy.py). ``?options=-csearch_path%3Dmyschema`` puts the
tables in schema ``myschema``, which must exist (``CREATE SCHEMA myschema``).

Tables (created and migrated by TTG itself, schema.py, in the first schema of
the search path, all prefixed ``ttg_``):

``ttg_sweeps``          one row per sweep: ``id`` (primary key), ``record`` (the
                        sweep as JSON text), ``function``, ``total``, ``state``
                        ('active' or 'cancelled', CHECK), ``created``,
                        ``updated`` (epoch seconds).
``ttg_progress``        exact progress counters ``n_ok``, ``n_error``,
                        ``n_crashed``, ``n_timeout`` and ``updated``, striped
                        over 16 rows per sweep (primary key ``(sweep, slot)``).
                        A commit adds its counts to one slot chosen at random,
                        in the same statement as its insert; progress is the
                        sum over the slots. One row per sweep would make
                        concurrent committers wait for each other's row lock;
                        sums over the chunks would make progress cost grow
                        with the sweep.
``ttg_chunks``          one row per committed chunk: ``sweep``, ``start``,
                        ``stop`` (primary key ``(sweep, start)``, CHECK
                        ``0 <= start < stop``), ``n_failed``, ``worker``,
                        ``attempt``, ``committed_at``, ``data`` (bytea: the
                        records blob of core/records.py, which TTG reads), and
                        the SQL-readable copy (sqlcopy.py) or NULL.
                        Constraint ``ttg_chunks_no_overlap``:
                        ``EXCLUDE USING gist (sweep WITH =, int8range(start, stop) WITH &&)``
                        (extension btree_gist); partial index
                        ``ttg_chunks_failed (sweep, start) WHERE n_failed > 0``.
``ttg_workers``         worker presence (presence.py).
``ttg_schema_version``  one row per applied migration.

First commit wins in the database itself: a commit is one statement, ``INSERT
... ON CONFLICT DO NOTHING`` on ``ttg_chunks`` and, only if that inserted, the
counter update. The exclusion constraint makes any overlap with a committed
(or concurrently committing) range a conflict, so of racing overlapping
commits exactly one inserts (the others wait for it, then do nothing) and the
statement tells which. Export pages by key rather than holding a cursor, so
no transaction stays open for the length of an export. Connections: one per
store object (conn.Session).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg

from ...core.records import STATUSES, ChunkRecords
from ...core.sweep import Sweep
from ..base import Progress, ResultStore, SweepInfo
from .conn import Session
from .sqlcopy import sql_copy

log = logging.getLogger(__name__)


_SLOTS = 16
_PAGE = 64

_COMMIT = """
WITH ins AS (
    INSERT INTO ttg_chunks (sweep, start, stop, n_failed, worker, attempt, data,
                            vals, statuses, durations, errors)
    VALUES (%(sweep)s, %(start)s, %(stop)s, %(n_failed)s, %(worker)s, %(attempt)s, %(data)b,
            %(vals)s::jsonb, %(statuses)s::jsonb, %(durations)s::jsonb, %(errors)s::jsonb)
    ON CONFLICT DO NOTHING
    RETURNING 1
), counted AS (
    INSERT INTO ttg_progress AS p (sweep, slot, n_ok, n_error, n_crashed, n_timeout, updated)
    SELECT %(sweep)s, %(slot)s, %(ok)s, %(error)s, %(crashed)s, %(timeout)s, %(now)s FROM ins
    ON CONFLICT (sweep, slot) DO UPDATE SET
        n_ok = p.n_ok + excluded.n_ok, n_error = p.n_error + excluded.n_error,
        n_crashed = p.n_crashed + excluded.n_crashed, n_timeout = p.n_timeout + excluded.n_timeout,
        updated = greatest(p.updated, excluded.updated)
)
SELECT count(*) FROM ins
"""

_INSERT = """
INSERT INTO ttg_chunks (sweep, start, stop, n_failed, worker, attempt, data,
                        vals, statuses, durations, errors)
VALUES (%(sweep)s, %(start)s, %(stop)s, %(n_failed)s, %(worker)s, %(attempt)s, %(data)b,
        %(vals)s::jsonb, %(statuses)s::jsonb, %(durations)s::jsonb, %(errors)s::jsonb)
"""

_ADDSTATUSES = """
INSERT INTO ttg_progress AS p (sweep, slot, n_ok, n_error, n_crashed, n_timeout, updated)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (sweep, slot) DO UPDATE SET
    n_ok = p.n_ok + excluded.n_ok, n_error = p.n_error + excluded.n_error,
    n_crashed = p.n_crashed + excluded.n_crashed, n_timeout = p.n_timeout + excluded.n_timeout,
    updated = greatest(p.updated, excluded.updated)
"""

_SUMS = ("coalesce(sum(p.n_ok), 0)::bigint, coalesce(sum(p.n_error), 0)::bigint, "
         "coalesce(sum(p.n_crashed), 0)::bigint, coalesce(sum(p.n_timeout), 0)::bigint")


class PostgresStore(ResultStore):
    concurrent_commit = True  # the driver releases the GIL while the server works

    def __init__(self, url: str) -> None:
        """Connect (failing at once, with one sentence, when the server, the
        database or the credentials are wrong) and migrate the schema."""
        self.url = url
        self.session = Session(url)
        self.sql_view = self.session.sql_view
        self._run = self.session.run

    def close(self) -> None:
        self.session.close()

    # -- sweeps -------------------------------------------------------------------------

    def _save_sweep(self, sweep: Sweep, *, created: bool) -> None:
        args = (sweep.id, json.dumps(sweep.to_record()), sweep.function, sweep.total, sweep.created,
                time.time())
        self._run(lambda db: db.execute(
            "INSERT INTO ttg_sweeps (id, record, function, total, created, updated) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
            "function = excluded.function, total = excluded.total, state = 'active', "
            "updated = excluded.updated", args))

    def find(self, sweep_id: str) -> Sweep | None:
        row = self._run(lambda db: db.execute("SELECT record FROM ttg_sweeps WHERE id = %s",
                                              (sweep_id,)).fetchone())
        return Sweep.from_record(json.loads(row[0])) if row else None

    def sweeps(self) -> list[SweepInfo]:
        rows = self._run(lambda db: db.execute(
            f"SELECT s.record, s.state, greatest(s.updated, max(p.updated)), {_SUMS} "
            "FROM ttg_sweeps s LEFT JOIN ttg_progress p ON p.sweep = s.id "
            "GROUP BY s.id ORDER BY s.created DESC, s.id").fetchall())
        out = []
        for record, state, updated, *counts in rows:
            sweep = Sweep.from_record(json.loads(record))
            out.append(SweepInfo(sweep, state, Progress(sweep.total, *counts), float(updated)))
        return out

    def state(self, sweep_id: str) -> str:
        row = self._run(lambda db: db.execute("SELECT state FROM ttg_sweeps WHERE id = %s",
                                              (sweep_id,)).fetchone())
        if row is None:
            self.sweep(sweep_id)  # raises SweepNotFound
            raise AssertionError("unreachable")
        return str(row[0])

    def delete(self, sweep_id: str) -> int:
        def delete(db: Any) -> int:
            with db.transaction():
                row = db.execute("SELECT coalesce(sum(n_ok + n_error + n_crashed + n_timeout), 0) "
                                 "FROM ttg_progress WHERE sweep = %s", (sweep_id,)).fetchone()
                for table, column in (("ttg_chunks", "sweep"), ("ttg_progress", "sweep"),
                                      ("ttg_sweeps", "id")):
                    db.execute(f"DELETE FROM {table} WHERE {column} = %s", (sweep_id,))
            return int(row[0]) if row else 0

        return int(self._run(delete))

    def set_state(self, sweep_id: str, state: str) -> None:
        self._run(lambda db: db.execute("UPDATE ttg_sweeps SET state = %s, updated = %s WHERE id = %s",
                                        (state, time.time(), sweep_id)))

    # -- results ------------------------------------------------------------------------

    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        params = self._chunk_params(sweep_id, records)
        counts = records.counts()
        params.update({k: counts.get(k, 0) for k in STATUSES}, slot=random.randrange(_SLOTS), now=time.time())
        runs = 0

        def op(db: psycopg.Connection[Any]) -> bool:
            nonlocal runs
            runs += 1
            row = db.execute(_COMMIT, params).fetchone()
            if (row and row[0]) or runs == 1:
                return bool(row and row[0])
            # A retry, after the connection was lost while the first try ran. The
            # server may have committed that try or not; either way the retry is
            # safe: the exclusion constraint makes it an insert (the first try was
            # lost) or a no-op. A no-op whose stored chunk is ours byte for byte
            # means our first try won.
            mine = db.execute("SELECT data = %b FROM ttg_chunks WHERE sweep = %s AND start = %s "
                              "AND stop = %s", (params["data"], sweep_id, records.start, records.stop)
                              ).fetchone()
            return bool(mine and mine[0])

        return self._run(op)

    def committed_ranges(self, sweep_id: str, start: int, stop: int) -> list[tuple[int, int]]:
        rows = self._run(lambda db: db.execute(  # answered from the exclusion constraint's GiST index
            "SELECT start, stop FROM ttg_chunks WHERE sweep = %s AND int8range(start, stop) && "
            "int8range(%s, %s) ORDER BY start", (sweep_id, start, stop)).fetchall())
        return [(int(a), int(b)) for a, b in rows]

    def progress(self, sweep_id: str) -> Progress:
        row = self._run(lambda db: db.execute(
            f"SELECT s.total, {_SUMS} FROM ttg_sweeps s LEFT JOIN ttg_progress p ON p.sweep = s.id "
            "WHERE s.id = %s GROUP BY s.id", (sweep_id,)).fetchone())
        if row is None:
            self.sweep(sweep_id)  # raises SweepNotFound
            raise AssertionError("unreachable")
        return Progress(*(int(v) for v in row))

    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        # Keyset pages of 64 chunks rather than a server-side cursor: no transaction
        # stays open for the length of an export (which would hold back vacuum and
        # pin a pooled connection), and a page lost with its connection is just
        # asked again.
        where = "AND n_failed > 0" if failed_only else ""
        sql = (f"SELECT start, stop, data FROM ttg_chunks WHERE sweep = %s AND start > %s {where} "
               f"ORDER BY start LIMIT {_PAGE}")
        at = -1
        while True:
            rows = self._run(partial(_fetch, sql, (sweep_id, at)))
            if not rows:
                return
            for a, b, blob in rows:
                yield ChunkRecords.decode(a, b, blob)
            at = rows[-1][0]

    def _replace(self, sweep_id: str, old: ChunkRecords, new: list[ChunkRecords]) -> bool:
        c_old = old.counts()
        delta = {k: -c_old.get(k, 0) for k in STATUSES}
        for rec in new:
            for k, n in rec.counts().items():
                delta[k] += n
        inserts = [self._chunk_params(sweep_id, rec) for rec in new]
        runs = 0

        def op(db: psycopg.Connection[Any]) -> bool:
            nonlocal runs
            runs += 1
            with db.transaction():
                deleted = db.execute("DELETE FROM ttg_chunks WHERE sweep = %s AND start = %s AND stop = %s",
                                     (sweep_id, old.start, old.stop))
                if deleted.rowcount == 0:
                    # on a retry, our first try may have gone through before the connection was lost
                    return runs > 1 and self._replaced(db, sweep_id, old, new)
                if inserts:
                    with db.cursor() as cur:
                        cur.executemany(_INSERT, inserts)
                db.execute(_ADDSTATUSES, (sweep_id, random.randrange(_SLOTS),
                                         *(delta[k] for k in STATUSES), time.time()))
            return True

        return self._run(op)

    def _replaced(self, db: psycopg.Connection[Any], sweep_id: str, old: ChunkRecords,
                  new: list[ChunkRecords]) -> bool:
        rows = db.execute("SELECT start, stop FROM ttg_chunks WHERE sweep = %s AND int8range(start, stop) && "
                          "int8range(%s, %s) ORDER BY start", (sweep_id, old.start, old.stop)).fetchall()
        return [(int(a), int(b)) for a, b in rows] == [(r.start, r.stop) for r in new]

    def _chunk_params(self, sweep_id: str, rec: ChunkRecords) -> dict[str, Any]:
        counts = rec.counts()
        params: dict[str, Any] = {
            "sweep": sweep_id, "start": rec.start, "stop": rec.stop,
            "n_failed": len(rec) - counts.get("ok", 0), "worker": rec.worker, "attempt": rec.attempt,
            "data": rec.encode(), "vals": None, "statuses": None, "durations": None, "errors": None,
        }
        if self.sql_view:
            params.update(sql_copy(rec))
        return params


def _fetch(sql: str, args: tuple[Any, ...], db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(sql, args, binary=True).fetchall()
