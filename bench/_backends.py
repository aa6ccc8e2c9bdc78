"""The backends the benchmarks compare, and a fresh, private namespace on each
for every measurement (what a fresh TTG home is for the embedded backend).

- ``embedded``: the local broker and the SQLite store, files in a fresh home.
- ``redis``: Redis broker + Redis store, database 14 of the server on
  127.0.0.1:6379, each measurement's keys under a prefix of their own
  (``?prefix=``), deleted afterwards: nothing else in the database is touched.
- ``rabbit+pg``: RabbitMQ broker (a virtual host of its own per measurement,
  made and deleted with ttg.testing.RabbitVhost) + PostgreSQL store (a schema
  of its own per measurement, in a database this run creates and drops).
- ``redis+pg``: Redis broker (database 14, a prefix of its own) + PostgreSQL store.

``Services`` owns what lives for the whole run (the PostgreSQL database);
``Services.namespace(backend)`` gives a ``Target`` for one
measurement and removes what it made afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from _common import Target, fresh_home

REDIS = "redis://127.0.0.1:6379"
REDIS_DB = 14
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_ADMIN_DB = "test"
RABBIT_API = "http://127.0.0.1:15672"


@dataclass(frozen=True)
class Backend:
    key: str
    label: str
    broker: str  # "local", "redis", "amqp"
    store: str  # "sqlite", "redis", "postgres"


EMBEDDED = Backend("embedded", "embedded (local broker + SQLite store)", "local", "sqlite")
REDIS_REDIS = Backend("redis", "Redis broker + Redis store", "redis", "redis")
RABBIT_PG = Backend("rabbit+pg", "RabbitMQ broker + PostgreSQL store", "amqp", "postgres")
REDIS_PG = Backend("redis+pg", "Redis broker + PostgreSQL store", "redis", "postgres")
ALL = [EMBEDDED, REDIS_REDIS, RABBIT_PG, REDIS_PG]
BY_KEY = {b.key: b for b in ALL}


def pick(keys: str) -> list[Backend]:
    """Backends from a comma-separated list of keys ("all" for every one)."""
    if keys == "all":
        return list(ALL)
    unknown = [k for k in keys.split(",") if k not in BY_KEY]
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BY_KEY)}")
    return [BY_KEY[k] for k in keys.split(",")]


def rabbit_api(path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(RABBIT_API + path, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


class Services:
    """The servers' side of a benchmark run: a PostgreSQL database of its own
    (created here, dropped at exit) and key prefixes of its own in Redis database
    ``redis_db``."""

    def __init__(self, backends: list[Backend], redis_db: int = REDIS_DB, redis: str = REDIS,
                 pg_compression: str = "") -> None:
        """``pg_compression`` (e.g. "lz4"): create TTG's tables in every new schema and set
        this compression on ttg_chunks.data before any worker starts (a what-if: TTG
        itself leaves PostgreSQL's default, pglz)."""
        self.backends = backends
        self.pg_compression = pg_compression
        self.redis_db = redis_db
        self.redis_server = redis
        self.pg_db = f"ttg_bench_{os.getpid()}"
        self._n = 0
        self._pg_made = False

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> Services:
        if any(b.broker == "amqp" for b in self.backends):
            rabbit_api("/api/overview")  # fails here, clearly, if the management API is not there
        if any(b.store == "postgres" for b in self.backends):
            with self.pg_admin() as db:
                db.execute(f'CREATE DATABASE "{self.pg_db}"')
            self._pg_made = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pg_made:
            with self.pg_admin() as db:
                db.execute(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')

    # -- per measurement --------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"{self.redis_server}/{self.redis_db}"

    def pg_url(self, schema: str) -> str:
        return f"{PG_SERVER}/{self.pg_db}?options=-csearch_path%3D{schema}"

    @contextmanager
    def namespace(self, backend: Backend, redis_url: str | None = None) -> Iterator[Target]:
        """A Target nobody else uses, removed afterwards. ``redis_url``: use this
        Redis (e.g. a private server) instead of database ``redis_db`` of the shared one."""
        self._n += 1
        tag = f"{os.getpid()}-{self._n}"
        broker = store = ""
        vhost = None
        schema = None
        with fresh_home() as home:
            try:
                if backend.broker == "redis" or backend.store == "redis":
                    redis = redis_url or f"{self.redis_url}?prefix=ttg-bench-{tag}"
                    broker = redis if backend.broker == "redis" else ""
                if backend.broker == "amqp":
                    from ttg.testing import RabbitVhost

                    vhost = RabbitVhost(f"ttg-bench-{tag}").create()
                    broker = vhost.url
                if backend.store == "postgres":
                    schema = f"bench_{tag.replace('-', '_')}"
                    with self.pg() as db:
                        db.execute(f"CREATE SCHEMA {schema}")
                    store = self.pg_url(schema)
                    if self.pg_compression:
                        self._set_compression(store)
                elif backend.store == "redis":
                    store = redis
                yield Target(home, broker, store)
            finally:
                if vhost is not None:
                    vhost.delete()
                if schema is not None:
                    with self.pg() as db:
                        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                if redis_url is None and (backend.broker == "redis" or backend.store == "redis"):
                    self.drop_redis_keys(f"ttg-bench-{tag}")

    def _set_compression(self, url: str) -> None:
        from ttg.stores.postgres.store import PostgresStore

        st = PostgresStore(url)  # creates TTG's tables
        try:
            st.session.run(lambda db: db.execute(
                f"ALTER TABLE ttg_chunks ALTER COLUMN data SET COMPRESSION {self.pg_compression}"))
        finally:
            st.close()

    # -- helpers ----------------------------------------------------------------------------

    def drop_redis_keys(self, prefix: str) -> None:
        """Delete a measurement's keys (those under its prefix), and nothing else."""
        import redis

        with redis.Redis.from_url(self.redis_url) as r:
            keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
            for at in range(0, len(keys), 1000):
                r.delete(*keys[at:at + 1000])

    @contextmanager
    def pg_admin(self) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/{PG_ADMIN_DB}", autocommit=True) as db:
            yield db

    @contextmanager
    def pg(self) -> Iterator[Any]:
        """A connection to this run's database."""
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/{self.pg_db}", autocommit=True) as db:
            yield db

    def pg_transactions(self) -> int:
        """Committed + rolled-back transactions in this run's database so far, as
        the statistics system has them (backends report at most once a second
        while busy, and when they go idle or exit). Read from another database,
        so that reading does not count."""
        with self.pg_admin() as db:
            db.execute("SELECT pg_stat_clear_snapshot()")
            row = db.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                             (self.pg_db,)).fetchone()
        return int(row[0]) if row else 0


def vhost_stats(vhost_url: str) -> dict[str, int]:
    """Message counters of a RabbitMQ virtual host (management API; sampled
    every few seconds by the server)."""
    from urllib.parse import unquote, urlsplit

    name = unquote(urlsplit(vhost_url).path[1:])
    info = rabbit_api(f"/api/vhosts/{quote(name, safe='')}")
    ms = info.get("message_stats") or {}
    keys = ("publish", "get", "get_no_ack", "get_empty", "ack", "deliver", "redeliver", "confirm")
    return {k: int(ms.get(k, 0)) for k in keys}


def server_versions(backends: list[Backend]) -> str:
    """The servers' versions, for the log."""
    out = []
    if any(b.broker == "redis" or b.store == "redis" for b in backends):
        import redis

        r = redis.Redis.from_url(f"{REDIS}/{REDIS_DB}")
        out.append(f"Redis {r.info('server')['redis_version']}")
        r.close()
    if any(b.broker == "amqp" for b in backends):
        out.append(f"RabbitMQ {rabbit_api('/api/overview').get('rabbitmq_version')}")
    if any(b.store == "postgres" for b in backends):
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/{PG_ADMIN_DB}") as db:
            row = db.execute("SHOW server_version").fetchone()
        out.append(f"PostgreSQL {row[0] if row else '?'}")
    return ", ".join(out) or "no servers"
