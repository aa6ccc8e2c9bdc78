"""The PostgreSQL store's schema, as an ordered list of migrations.

``MIGRATIONS[k]`` takes the schema from version ``k`` to ``k + 1``; version 1
creates everything. ``migrate()`` runs at every connect: one cheap query when
the schema is current; otherwise it takes a transaction-scoped advisory lock
(so workers starting together do not race), re-reads the version and applies
what is missing in that one transaction (PostgreSQL DDL is transactional:
a migration applies whole or not at all). Never edit a released migration;
append a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from ...errors import ConfigError

#: The extension providing GiST equality on text, for the no-overlap constraint.
EXTENSION = "btree_gist"

_V1 = """
CREATE TABLE ttg_sweeps (
    id        text PRIMARY KEY,
    record    text NOT NULL,              -- the sweep as JSON, exactly as TTG reads it back
    function  text NOT NULL,
    total     bigint NOT NULL,
    state     text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    created   double precision NOT NULL,  -- epoch seconds
    updated   double precision NOT NULL
);

-- Exact progress counters, striped over 16 slots per sweep so that concurrent
-- commits rarely wait for one another; progress is the sum over the slots.
CREATE TABLE ttg_progress (
    sweep      text NOT NULL,
    slot       smallint NOT NULL,
    n_ok       bigint NOT NULL DEFAULT 0,
    n_error    bigint NOT NULL DEFAULT 0,
    n_crashed  bigint NOT NULL DEFAULT 0,
    n_timeout  bigint NOT NULL DEFAULT 0,
    updated    double precision NOT NULL,
    PRIMARY KEY (sweep, slot)
);

CREATE TABLE ttg_chunks (
    sweep         text NOT NULL,
    start         bigint NOT NULL,
    stop          bigint NOT NULL,
    n_failed      integer NOT NULL,
    worker        text NOT NULL,
    attempt       integer NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    data          bytea NOT NULL,             -- the records blob (core/records.py), authoritative
    vals          jsonb,                      -- SQL-readable copy (sql_view=1), else NULL:
    statuses      jsonb,                      --   array; NULL when every point is ok
    durations     jsonb,                      --   array of nanoseconds
    errors        jsonb,                      --   {"offset": "Type: message"}
    CONSTRAINT ttg_chunks_range CHECK (start >= 0 AND start < stop),
    CONSTRAINT ttg_chunks_pkey PRIMARY KEY (sweep, start),
    -- first commit wins: no two committed ranges of a sweep overlap
    CONSTRAINT ttg_chunks_no_overlap EXCLUDE USING gist (sweep WITH =, int8range(start, stop) WITH &&)
);
CREATE INDEX ttg_chunks_failed ON ttg_chunks (sweep, start) WHERE n_failed > 0;

CREATE VIEW ttg_results AS
SELECT c.sweep,
       c.start + r.ord - 1 AS index,
       coalesce(r.status, 'ok') AS status,
       r.value,
       c.errors ->> (r.ord - 1)::text AS error,
       r.duration_ns::double precision / 1e9 AS duration_s,
       c.worker,
       c.attempt
FROM ttg_chunks AS c
CROSS JOIN LATERAL ROWS FROM (
    jsonb_array_elements(c.vals),
    jsonb_array_elements_text(c.statuses),
    jsonb_array_elements_text(c.durations)
) WITH ORDINALITY AS r(value, status, duration_ns, ord);
"""

#: Worker presence (stores/presence.py): the newest beat of each worker supervisor.
_V2 = """
CREATE TABLE ttg_workers (
    id        text PRIMARY KEY,           -- the supervisor's id, host-pid
    host      text NOT NULL,
    pid       integer NOT NULL,
    state     text NOT NULL,              -- running, stopping, stopped
    started   double precision NOT NULL,  -- epoch seconds, the worker's clock
    beat      double precision NOT NULL,  -- epoch seconds, the worker's clock
    interval  double precision NOT NULL,  -- seconds between its beats
    children  integer NOT NULL,
    chunks    bigint NOT NULL,            -- chunks finished since it started
    leases    jsonb NOT NULL              -- [[sweep, start, stop], ...] held now
);
"""


def _v3_lz4(conn: psycopg.Connection[Any]) -> None:
    """Compress new result blobs with lz4 instead of pglz, which costs the server
    about three times the CPU per blob (docs/benchmarks.md). Needs PostgreSQL 14
    built with lz4; elsewhere the column keeps the default."""
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the migration usable
            conn.execute("ALTER TABLE ttg_chunks ALTER COLUMN data SET COMPRESSION lz4")
    except (pgerrors.SyntaxError, pgerrors.FeatureNotSupported, pgerrors.InvalidParameterValue):
        pass


#: v4: what a worker refuses to run and why, and how many chunks of each sweep it
#: finished (stores/presence.py, WorkerBeat.refusing and .worked)
_V4 = """
ALTER TABLE ttg_workers ADD COLUMN refusing jsonb NOT NULL DEFAULT '[]';
ALTER TABLE ttg_workers ADD COLUMN worked jsonb NOT NULL DEFAULT '[]'
"""

#: SQL, or a function of the connection for a step that depends on the server.
MIGRATIONS: list[str | Callable[[psycopg.Connection[Any]], None]] = [_V1, _V2, _v3_lz4, _V4]
LATEST = len(MIGRATIONS)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS ttg_schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


def version(conn: psycopg.Connection[Any]) -> int:
    """The schema version in the connection's schema (0: no TTG tables yet)."""
    try:  # in autocommit mode a failed statement leaves nothing to roll back
        row = conn.execute("SELECT max(version) FROM ttg_schema_version").fetchone()
    except pgerrors.UndefinedTable:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring the schema to the latest version (the connection is in autocommit mode)."""
    if version(conn) == LATEST:
        return
    with conn.transaction():
        schema = conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            path = conn.execute("SHOW search_path").fetchone()
            raise ConfigError(f"no schema of the search_path ({path[0] if path else '?'}) exists in this "
                              "database; create it (CREATE SCHEMA name) or fix search_path in the URL's "
                              "options.")
        # one lock per schema: migrations of other schemas in the same database need not wait
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('ttg.migrate.' || current_schema(), 0))")
        conn.execute(_VERSION_TABLE)
        current = version(conn)  # again, under the lock: another process may have migrated
        if current > LATEST:
            raise ConfigError(f"the TTG tables in schema {schema[0]} are at version {current}, newer than "
                              f"this TTG knows ({LATEST}); upgrade TTG on this machine.")
        if current < LATEST:
            _ensure_extension(conn)
        for v in range(current + 1, LATEST + 1):
            step = MIGRATIONS[v - 1]
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
            conn.execute("INSERT INTO ttg_schema_version (version) VALUES (%s)", (v,))


def _ensure_extension(conn: psycopg.Connection[Any]) -> None:
    """btree_gist, preferably in schema public (so dropping a TTG schema never takes
    the extension, and the constraints of other schemas with it); else in ours."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (EXTENSION,)).fetchone():
        return
    try:
        with conn.transaction():  # a savepoint: a refusal here leaves the migration usable
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION} WITH SCHEMA public")
        return
    except (pgerrors.InsufficientPrivilege, pgerrors.InvalidSchemaName):
        pass
    try:
        with conn.transaction():
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    except pgerrors.InsufficientPrivilege as exc:
        raise ConfigError(f"this user may not create the {EXTENSION} extension TTG needs ({exc}); ask "
                          f"the database owner to run `CREATE EXTENSION {EXTENSION}` once, or connect "
                          "as the owner the first time.") from exc
