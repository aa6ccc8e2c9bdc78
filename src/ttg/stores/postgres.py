"""The PostgreSQL result store: where teams keep results they care about.

URL: ``postgresql://[user[:password]@]host[:port]/database[?param=value&...]``
(``postgres://`` too). Query parameters are libpq's (``sslmode``,
``connect_timeout``, ``application_name``, ...), except TTG's own
``sql_view=1`` (below). ``?options=-csearch_path%3Dmyschema`` puts the tables
in schema ``myschema``, which must exist (``CREATE SCHEMA myschema``).

Tables, created and migrated by TTG itself (stores/postgres_schema.py), in the
first schema of the search path, all prefixed ``ttg_``:

``ttg_schema_version``  one row per applied migration (``version``, ``applied_at``).
``ttg_sweeps``          one row per sweep: ``id`` (primary key), ``record`` (the
                        sweep as JSON text), ``function``, ``total``, ``state``
                        ('active' or 'cancelled', CHECK), ``created``,
                        ``updated`` (epoch seconds).
``ttg_progress``        exact progress counters ``n_ok``, ``n_error``,
                        ``n_crashed``, ``n_timeout`` and ``updated``, striped
                        over 16 rows per sweep (primary key ``(sweep, slot)``).
                        A commit adds its counts to one slot chosen at random,
                        in the same statement as its insert; progress is the
                        sum over the slots. (With one counter row per sweep, six
                        concurrent committers spent 62% of their commit time
                        waiting for each other's row lock, and made half as many
                        commits per second; SUMs over the chunks would make
                        progress cost grow with the sweep.)
``ttg_chunks``          one row per committed chunk: ``sweep``, ``start``,
                        ``stop`` (primary key ``(sweep, start)``, CHECK
                        ``0 <= start < stop``), ``n_failed``, ``worker``,
                        ``attempt``, ``committed_at``, ``data`` (bytea: the
                        records blob of ttg.records, which TTG reads), and an
                        SQL-readable copy of the records when the writer opened
                        the store with ``sql_view=1`` (else NULL): ``vals``,
                        ``statuses``, ``durations`` (ns) and ``errors`` (jsonb).
                        Constraint ``ttg_chunks_no_overlap``:
                        ``EXCLUDE USING gist (sweep WITH =, int8range(start, stop) WITH &&)``
                        (extension btree_gist); partial index
                        ``ttg_chunks_failed (sweep, start) WHERE n_failed > 0``.
``ttg_workers``         one row per worker supervisor (ttg.presence): ``id``
                        (primary key, host-pid), ``host``, ``pid``, ``state``,
                        ``started``, ``beat`` (epoch seconds, the worker's
                        clock), ``interval``, ``children``, ``chunks``, ``leases``
                        (jsonb ``[[sweep, start, stop], ...]``); rows whose beat
                        is older than a day are deleted when a beat is written.
``ttg_results``         view, one row per index of the chunks that have the SQL
                        copy: ``sweep, index, status, value (jsonb), error,
                        duration_s, worker, attempt``.

First commit wins in the database itself: a commit is one statement, ``INSERT
... ON CONFLICT DO NOTHING`` on ``ttg_chunks`` and, only if that inserted, the
counter update. The exclusion constraint makes any overlap with a committed
(or concurrently committing) range a conflict, so of racing overlapping
commits exactly one inserts (the others wait for it, then do nothing) and the
statement tells which. The SQL copy is opt-in because it costs: a
10,000-point chunk commits 2.5 to 4 times slower with it than as a blob alone
(figures in docs/backends/postgresql.md).

Connections: one per store object, that is one per worker child, two per
worker supervisor (one for its presence beats) and one per client command. The connection runs in
autocommit mode: every operation but ``_replace`` and migrations is a single
statement, atomic by itself and one round trip (an explicit BEGIN/COMMIT
would make three, and a read would leave the session idle in transaction);
the others use explicit transactions. Nothing lives in the session across
statements (no prepared statements, temporary tables, SET or session
advisory locks; export pages by key instead of holding a cursor), so the
store works behind pgbouncer in transaction pooling mode. A lost connection
(server restart, ``pg_terminate_backend``, network) is reopened with
exponential backoff (50 ms doubling to 2 s, about 15 s in all) and the
operation retried.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

from ..errors import StoreUnavailable
from ..presence import PRUNE_SECONDS, WorkerBeat
from ..records import ChunkRecords
from ..sweep import Sweep
from .base import Progress, ResultStore, SweepInfo
from .postgres_conn import describe, fatal, first_line, malformed, parse_url, safe_url
from .postgres_schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
_COUNTS = ("ok", "error", "crashed", "timeout")
_SLOTS = 16
_PAGE = 64
_BACKOFF_FIRST, _BACKOFF_MAX, _RETRY_FOR = 0.05, 2.0, 15.0

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

_ADD_COUNTS = """
INSERT INTO ttg_progress AS p (sweep, slot, n_ok, n_error, n_crashed, n_timeout, updated)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (sweep, slot) DO UPDATE SET
    n_ok = p.n_ok + excluded.n_ok, n_error = p.n_error + excluded.n_error,
    n_crashed = p.n_crashed + excluded.n_crashed, n_timeout = p.n_timeout + excluded.n_timeout,
    updated = greatest(p.updated, excluded.updated)
"""

_BEAT = """
WITH pruned AS (DELETE FROM ttg_workers WHERE beat < %(before)s AND id <> %(id)s)
INSERT INTO ttg_workers (id, host, pid, state, started, beat, interval, children, chunks, leases)
VALUES (%(id)s, %(host)s, %(pid)s, %(state)s, %(started)s, %(beat)s, %(interval)s, %(children)s,
        %(chunks)s, %(leases)s::jsonb)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, state = excluded.state,
    started = excluded.started, beat = excluded.beat, interval = excluded.interval,
    children = excluded.children, chunks = excluded.chunks, leases = excluded.leases
"""

_SUMS = ("coalesce(sum(p.n_ok), 0)::bigint, coalesce(sum(p.n_error), 0)::bigint, "
         "coalesce(sum(p.n_crashed), 0)::bigint, coalesce(sum(p.n_timeout), 0)::bigint")


class PostgresStore(ResultStore):
    concurrent_commit = True  # the driver releases the GIL while the server works

    def __init__(self, url: str) -> None:
        """Connect (failing at once, with one sentence, when the server, the
        database or the credentials are wrong) and migrate the schema."""
        self.url = url
        self._conninfo, self.sql_view = parse_url(url)
        self.where = safe_url(url)
        self._db: psycopg.Connection[Any] | None = None
        try:
            self._first_connection()
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is None:  # libpq refused the connection parameters themselves
                raise malformed(self.where, exc) from exc
            raise describe(self.where, exc) from exc
        except psycopg.Error as exc:
            raise describe(self.where, exc) from exc

    # -- connection ---------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None:
            db = psycopg.connect(self._conninfo, autocommit=True, prepare_threshold=None)
            try:
                migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _first_connection(self) -> None:
        """Connect and migrate. An error there means the URL, the server, the database
        or the credentials are wrong, and is raised at once; but a session cut off
        once the server had answered (its backend terminated, a restart beginning)
        is tried again with backoff, as any statement is (``_run``)."""
        delay, deadline = _BACKOFF_FIRST, time.monotonic() + _RETRY_FOR
        while True:
            try:
                self._connection()
                return
            except psycopg.OperationalError as exc:
                cut_off = (isinstance(exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown
                                      | pgerrors.CannotConnectNow)
                           or "closed the connection unexpectedly" in str(exc))
                if not cut_off or time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL at %s: %s; retrying", self.where, first_line(exc))
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def _discard(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except psycopg.Error:  # closing a dead connection: nothing left to release
                pass
            self._db = None

    def _run(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``op`` on the connection; when the connection is lost (or a deadlock
        rolled the statement back), reconnect with exponential backoff and run it
        again, for about 15 s. Every ``op`` is safe to run again (see commit)."""
        delay, lost_at = _BACKOFF_FIRST, 0.0
        while True:
            try:
                return op(self._connection())
            except psycopg.Error as exc:
                if not self._retryable(exc):
                    raise describe(self.where, exc) from exc
                now = time.monotonic()
                if not lost_at:
                    lost_at = now
                    log.warning("PostgreSQL at %s: %s; retrying", self.where, first_line(exc))
                elif now - lost_at > _RETRY_FOR:
                    raise StoreUnavailable(f"lost the connection to PostgreSQL at {self.where} and could not "
                                           f"get it back in {_RETRY_FOR:g} s ({first_line(exc)}); check "
                                           "that the server runs and is reachable.") from exc
                if self._db is not None and (self._db.broken or self._db.closed):
                    self._discard()
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def _retryable(self, exc: psycopg.Error) -> bool:
        if isinstance(exc, pgerrors.TransactionRollback):  # deadlock or serialization failure
            return True
        if not isinstance(exc, psycopg.OperationalError) or fatal(exc):
            return False
        return self._db is None or self._db.broken or self._db.closed or isinstance(
            exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown | pgerrors.CannotConnectNow)

    def close(self) -> None:
        self._discard()

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

    def set_state(self, sweep_id: str, state: str) -> None:
        self._run(lambda db: db.execute("UPDATE ttg_sweeps SET state = %s, updated = %s WHERE id = %s",
                                        (state, time.time(), sweep_id)))

    # -- results ------------------------------------------------------------------------

    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        params = self._chunk_params(sweep_id, records)
        counts = records.counts()
        params.update({k: counts.get(k, 0) for k in _COUNTS}, slot=random.randrange(_SLOTS), now=time.time())
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
        delta = {k: -c_old.get(k, 0) for k in _COUNTS}
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
                db.execute(_ADD_COUNTS, (sweep_id, random.randrange(_SLOTS),
                                         *(delta[k] for k in _COUNTS), time.time()))
            return True

        return self._run(op)

    # -- worker presence --------------------------------------------------------------

    def beat(self, info: WorkerBeat) -> None:
        params = {"id": info.worker, "host": info.host, "pid": info.pid, "state": info.state,
                  "started": info.started, "beat": info.beat, "interval": info.interval,
                  "children": info.children, "chunks": info.chunks,
                  "leases": json.dumps([list(x) for x in info.leases]), "before": info.beat - PRUNE_SECONDS}
        self._run(lambda db: db.execute(_BEAT, params))

    def workers(self) -> list[WorkerBeat]:
        rows = self._run(lambda db: db.execute(
            "SELECT id, host, pid, started, beat, interval, children, chunks, leases, state "
            "FROM ttg_workers ORDER BY beat DESC, id COLLATE \"C\"").fetchall())
        return [WorkerBeat(str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4]), float(r[5]), int(r[6]),
                           int(r[7]), tuple((str(s), int(a), int(b)) for s, a, b in r[8]), str(r[9]))
                for r in rows]

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


# -- the SQL-readable copy ------------------------------------------------------------------


def sql_copy(rec: ChunkRecords) -> dict[str, str | None]:
    """The jsonb columns of one chunk (JSON text). Values JSON cannot hold become
    JSON that it can: NaN and infinities the strings "NaN", "Infinity",
    "-Infinity" (which float8 reads back), bytes a "\\x..." hex string, NUL
    characters U+FFFD, anything else null. The blob keeps the exact values."""
    errors = None
    if rec.errors:
        errors = _json({str(k): f"{e[0]}: {e[1]}" for k, e in rec.errors.items()})
    return {"vals": _json(rec.values), "statuses": None if rec.statuses is None else _json(rec.statuses),
            "durations": json.dumps(rec.durations), "errors": errors}


def _json(obj: Any) -> str:
    try:
        text = json.dumps(obj, allow_nan=False, default=_plain, separators=(",", ":"))
        if "\\u0000" not in text:  # jsonb refuses NUL characters
            return text
    except (TypeError, ValueError):
        pass
    return json.dumps(_jsonable(obj), separators=(",", ":"))


def _plain(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)  # numpy, as the records codec stores it
    if callable(tolist):
        return tolist()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, bytes):
        return "\\x" + obj.hex()
    raise TypeError(type(obj).__name__)


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return obj if abs(obj) < 10**1000 else None
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, str):
        return obj.replace("\x00", "\ufffd")
    if isinstance(obj, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    try:
        return _jsonable(_plain(obj))
    except TypeError:
        return None
