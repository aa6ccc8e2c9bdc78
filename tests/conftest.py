"""Shared fixtures: a TTG home per test, the CLI in a subprocess, and the broker and
store fixtures parametrized over every backend (a new backend joins every
contract test by adding its name to BROKERS or STORES and a branch below)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ttg import settings as settings_mod
from ttg.brokers import Broker, open_broker
from ttg.settings import Settings
from ttg.stores import PresenceStore, ResultStore, open_presence, open_store

ROOT = Path(__file__).resolve().parent.parent
#: "memory" is ttg.testing.MemoryBroker: in one process, no URL
BROKERS = ["local", "redis", "amqp", "memory"]
STORES = ["sqlite", "redis", "postgres"]
#: The shared test Redis (scripts/services starts it). Each test keeps its keys
#: under a prefix of its own (``redis_url``), deleted at the end of the run; no
#: test empties the database, so suites can share it.
REDIS_URL = os.environ.get("TTG_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: The shared test PostgreSQL (scripts/services starts it). The tests of one run keep
#: their tables in a schema of their own, POSTGRES_SCHEMA, emptied before each test
#: that uses it and dropped at the end of the run.
POSTGRES_URL = os.environ.get("TTG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_SCHEMA = f"ttg_test_{os.getpid()}"
#: The shared test RabbitMQ; each test gets a virtual host of its own.
RABBIT_API = os.environ.get("TTG_TEST_RABBIT_API", "http://127.0.0.1:15672")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Any]:
    """Start ttg processes (tests.processes.Procs); each is killed with its whole
    process group at teardown, whatever happened in the test."""
    from tests.processes import Procs  # (it imports this module)

    p = Procs(tmp_path / "logs")
    yield p
    p.cleanup()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".ttg"


@pytest.fixture
def settings(home: Path) -> Settings:
    return settings_mod.load(environ={}, home=home, lease_seconds=2.0)


def _owner(home: Path) -> str:
    """A name for the test that owns ``home``: for its Redis prefix and RabbitMQ vhost."""
    import hashlib

    return "ttg-test-" + hashlib.sha1(str(home).encode()).hexdigest()[:12]


_redis_prefixes: set[str] = set()


def redis_url(home: Path) -> str:
    """REDIS_URL with the test's own key prefix (named after its home, so every
    fixture of one test agrees on it): a test never sees another's keys."""
    prefix = _owner(home)
    _redis_prefixes.add(prefix)
    sep = "&" if "?" in REDIS_URL else "?"
    return f"{REDIS_URL}{sep}prefix={prefix}"


def drop_redis_keys(prefix: str) -> None:
    """Delete the keys under ``prefix`` (and only those) from the test Redis."""
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at:at + 1000])


@pytest.fixture(scope="session", autouse=True)
def _drop_redis_keys() -> Iterator[None]:
    yield
    for prefix in _redis_prefixes:
        drop_redis_keys(prefix)


def broker_url(kind: str, home: Path) -> str:
    if kind == "local":
        return f"local://{home / 'broker.db'}"
    if kind == "redis":
        return redis_url(home)
    if kind == "amqp":
        return rabbit_vhost(home).url
    raise AssertionError(kind)


def rabbit_vhost(home: Path) -> Any:
    """The test's own RabbitMQ virtual host (named after its home, so every
    fixture of one test agrees on it)."""
    from ttg.testing import RabbitVhost

    return RabbitVhost(_owner(home), api=RABBIT_API)


def store_url(kind: str, home: Path) -> str:
    if kind == "sqlite":
        return f"sqlite://{home / 'results.db'}"
    if kind == "redis":
        return redis_url(home)
    if kind == "postgres":
        return postgres_url()
    raise AssertionError(kind)


def postgres_url(schema: str = POSTGRES_SCHEMA) -> str:
    """POSTGRES_URL with TTG's tables in ``schema`` (libpq's ``options=-csearch_path=``)."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


_postgres_schemas: set[str] = set()


def empty_postgres(schema: str = POSTGRES_SCHEMA) -> None:
    """Create ``schema`` if needed and empty TTG's tables in it (dropped at the end of the run)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        _postgres_schemas.add(schema)
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'ttg%%' "
            "AND tablename <> 'ttg_schema_version'", (schema,))]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(f'{schema}.{t}' for t in tables)}")


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    yield
    if _postgres_schemas:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for schema in _postgres_schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _empty(kind: str) -> None:
    """Start a store or broker fixture of this kind from nothing (a Redis one
    starts empty: its keys are the test's own)."""
    if kind == "postgres":
        empty_postgres()


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Iterator[Broker]:
    _empty(request.param)
    vhost = rabbit_vhost(home).create() if request.param == "amqp" else None
    if request.param == "memory":
        from ttg.testing import MemoryBroker

        b: Broker = MemoryBroker(settings.lease_seconds)
    else:
        b = open_broker(settings, broker_url(request.param, home))
    yield b
    b.close()
    if vhost is not None:
        vhost.delete()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Iterator[ResultStore]:
    _empty(request.param)
    s = open_store(settings, store_url(request.param, home))
    yield s
    s.close()


@pytest.fixture(params=STORES)
def presence(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Iterator[PresenceStore]:
    """Worker presence kept by each store backend."""
    _empty(request.param)
    p = open_presence(settings, store_url(request.param, home))
    yield p
    p.close()


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TTG_HOME"] = str(home)
    env.update(extra)
    return env


def ttg(home: Path, *args: str, timeout: float = 120, check: bool = False,
        **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ttg CLI in a subprocess (cwd: the repository root)."""
    proc = subprocess.run([sys.executable, "-m", "ttg", *args], cwd=ROOT, env=cli_env(home, **env),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ttg {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def ttg_popen(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ttg", *args], cwd=ROOT, env=cli_env(home, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def records_per_index(home: Path, sweep_id: str) -> dict[int, int]:
    """How many committed records each index has in the embedded store of ``home``."""
    return store_records_per_index(f"sqlite://{home.resolve() / 'results.db'}", sweep_id)


def assert_exactly_once(home: Path, sweep_id: str, total: int) -> None:
    """Every index of the sweep has exactly one record in the embedded store of ``home``."""
    assert_exactly_once_in(f"sqlite://{home.resolve() / 'results.db'}", sweep_id, total)


def store_records_per_index(url: str, sweep_id: str) -> dict[int, int]:
    """How many committed records each index has in the store at ``url``."""
    s = open_store(settings_mod.load(environ={}), url)
    counts: dict[int, int] = {}
    try:
        for rec in s.chunks(sweep_id):
            for i in range(rec.start, rec.stop):
                counts[i] = counts.get(i, 0) + 1
    finally:
        s.close()
    return counts


def assert_exactly_once_in(url: str, sweep_id: str, total: int) -> None:
    """Every index of the sweep has exactly one record in the store at ``url``."""
    counts = store_records_per_index(url, sweep_id)
    missing = [i for i in range(total) if counts.get(i, 0) == 0]
    twice = {i: c for i, c in counts.items() if c != 1}
    assert not missing, f"{len(missing)} indices have no record, e.g. {missing[:10]}"
    assert not twice, f"indices with more than one record: {dict(list(twice.items())[:10])}"
    assert len(counts) == total, f"{len(counts)} indexed records for {total} points"


def sweep_id_from(stdout: str) -> str:
    """The sweep id from `ttg run`'s summary or `ttg submit`'s last line."""
    for line in stdout.splitlines():
        if line.startswith("sweep "):
            return line.split()[1].rstrip(":")
    return stdout.strip().splitlines()[-1].strip()


def read_table(home: Path, sweep_id: str) -> Any:
    import ttg

    return ttg.results(sweep_id, home=home).to_arrow()
