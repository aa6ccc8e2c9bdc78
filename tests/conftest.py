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
from ttg.stores import ResultStore, open_store

ROOT = Path(__file__).resolve().parent.parent
BROKERS = ["local", "redis"]
STORES = ["sqlite", "redis"]
#: The shared test Redis (scripts/services starts it); each test empties this database.
REDIS_URL = os.environ.get("TTG_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".ttg"


@pytest.fixture
def settings(home: Path) -> Settings:
    return settings_mod.load(environ={}, home=home, lease_seconds=2.0)


def broker_url(kind: str, home: Path) -> str:
    if kind == "local":
        return f"local://{home / 'broker.db'}"
    if kind == "redis":
        return REDIS_URL
    raise AssertionError(kind)


def store_url(kind: str, home: Path) -> str:
    if kind == "sqlite":
        return f"sqlite://{home / 'results.db'}"
    if kind == "redis":
        return REDIS_URL
    raise AssertionError(kind)


def empty_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Iterator[Broker]:
    if request.param == "redis":
        empty_redis()
    b = open_broker(settings, broker_url(request.param, home))
    yield b
    b.close()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, settings: Settings, home: Path) -> Iterator[ResultStore]:
    if request.param == "redis":
        empty_redis()
    s = open_store(settings, store_url(request.param, home))
    yield s
    s.close()


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
    """How many committed records each index has (must be exactly 1 each)."""
    s = open_store(settings_mod.load(environ={}, home=home))
    counts: dict[int, int] = {}
    try:
        for rec in s.chunks(sweep_id):
            for i in range(rec.start, rec.stop):
                counts[i] = counts.get(i, 0) + 1
    finally:
        s.close()
    return counts


def assert_exactly_once(home: Path, sweep_id: str, total: int) -> None:
    counts = records_per_index(home, sweep_id)
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
