"""Result stores, chosen by URL scheme; each backend's driver is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..settings import Settings
from .base import Progress, ResultStore, SweepInfo

__all__ = ["Progress", "ResultStore", "SweepInfo", "open_store"]


def _sqlite(url: str, settings: Settings, create: bool) -> ResultStore:
    from .sqlite import SqliteStore

    return SqliteStore(url.removeprefix("sqlite://"), create=create)


def _redis(url: str, settings: Settings, create: bool) -> ResultStore:
    from .redis import RedisStore

    return RedisStore(url)


def _postgres(url: str, settings: Settings, create: bool) -> ResultStore:
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(f"the PostgreSQL store needs psycopg 3 ({exc}); install it with "
                          "pip install 'ttg[postgres]'.") from exc
    return PostgresStore(url)


_SCHEMES: dict[str, Callable[[str, Settings, bool], ResultStore]] = {
    "sqlite": _sqlite, "redis": _redis, "rediss": _redis,
    "postgresql": _postgres, "postgres": _postgres,
}


def open_store(settings: Settings, url: str | None = None, *, create: bool = True) -> ResultStore:
    """Open the result store at ``url`` (default: the settings' store).

    ``create=False``: an embedded store must exist already. Workers of a networked
    broker pass it: an SQLite file they created would hold results nobody sees."""
    url = url or settings.store_url
    if not url:
        raise ConfigError(f"no result store goes with the broker {settings.broker.partition('://')[0]}:// "
                          "by default; give one with --store or TTG_STORE (postgresql://, redis://).")
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigError(f"unknown result store URL scheme {scheme + '://' if scheme else url!r}; "
                          f"use one of {known}.")
    return _SCHEMES[scheme](url, settings, create)
