"""Result stores (and worker presence, kept in the same database), chosen by URL
scheme; each backend's driver is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..extras import need
from ..settings import Settings
from .base import Progress, ResultStore, SweepInfo
from .presence import PresenceStore, WorkerBeat

__all__ = ["PresenceStore", "Progress", "ResultStore", "SweepInfo", "WorkerBeat", "open_presence",
           "open_store"]


def _sqlite(url: str, create: bool) -> ResultStore:
    from .sqlite import SqliteStore

    return SqliteStore(url.removeprefix("sqlite://"), create=create)


def _sqlite_presence(url: str, create: bool) -> PresenceStore:
    from .sqlite import SqlitePresence

    return SqlitePresence(url.removeprefix("sqlite://"), create=create)


def _redis(url: str, create: bool) -> ResultStore:
    need("redis", "redis", "the Redis store")
    from .redis import RedisStore

    return RedisStore(url)


def _redis_presence(url: str, create: bool) -> PresenceStore:
    need("redis", "redis", "the Redis store")
    from .redis import RedisPresence

    return RedisPresence(url)


def _postgres(url: str, create: bool) -> ResultStore:
    _need_psycopg()
    from .postgres.store import PostgresStore

    return PostgresStore(url)


def _postgres_presence(url: str, create: bool) -> PresenceStore:
    _need_psycopg()
    from .postgres.presence import PostgresPresence

    return PostgresPresence(url)


def _need_psycopg() -> None:
    need("psycopg", "postgres", "the PostgreSQL store")


_STORES: dict[str, Callable[[str, bool], ResultStore]] = {
    "sqlite": _sqlite, "redis": _redis, "rediss": _redis, "postgresql": _postgres, "postgres": _postgres,
}
_PRESENCE: dict[str, Callable[[str, bool], PresenceStore]] = {
    "sqlite": _sqlite_presence, "redis": _redis_presence, "rediss": _redis_presence,
    "postgresql": _postgres_presence, "postgres": _postgres_presence,
}


def _url(settings: Settings, url: str | None) -> str:
    url = url or settings.store_url
    if not url:
        raise ConfigError(f"no result store goes with the broker {settings.broker.partition('://')[0]}:// "
                          "by default; give one with --store or TTG_STORE (postgresql://, redis://).")
    scheme = urlsplit(url).scheme
    if scheme not in _STORES:
        known = ", ".join(f"{s}://" for s in _STORES)
        raise ConfigError(f"unknown result store URL scheme {scheme + '://' if scheme else url!r}; "
                          f"use one of {known}.")
    return url


def open_store(settings: Settings, url: str | None = None, *, create: bool = True) -> ResultStore:
    """Open the result store at ``url`` (default: the settings' store).

    ``create=False``: an embedded store must exist already. Workers of a networked
    broker pass it: an SQLite file they created would hold results nobody sees."""
    url = _url(settings, url)
    return _STORES[urlsplit(url).scheme](url, create)


def open_presence(settings: Settings, url: str | None = None, *, create: bool = True) -> PresenceStore:
    """Open the worker presence kept in the result store's database (as ``open_store``)."""
    url = _url(settings, url)
    return _PRESENCE[urlsplit(url).scheme](url, create)
