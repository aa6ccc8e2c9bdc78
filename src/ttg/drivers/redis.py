"""Redis plumbing shared by the Redis broker and the Redis store: a client that
fails fast on a first connection and rides out restarts later, redis-py's
errors turned into one sentence that names the problem and the fix, and the
key space (``?prefix=NAME``) that lets several installations share a database."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from ..errors import ConfigError
from .urls import redact

T = TypeVar("T")

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def keyspace(url: str) -> tuple[str, str]:
    """Split TTG's ``prefix`` query parameter off a Redis URL. Returns the URL for
    redis-py and the text every TTG key starts with: ``ttg:``, or ``NAME:ttg:``
    for ``?prefix=NAME``, so that teams, deployments or test runs can share one
    database, each owning (and able to delete, or to be granted by an ACL) only
    its own keys."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [v for k, v in query if k == "prefix"]
    if not names:
        return url, "ttg:"
    if len(names) > 1 or not _PREFIX.fullmatch(names[0]):
        raise ConfigError(f"the Redis URL {redact(url)} has prefix={names[-1]!r}; give one prefix of "
                          "1 to 64 letters, digits, '_', '.' or '-', e.g. ?prefix=team-a.")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), f"{names[0]}:ttg:"


def in_keyspace(lua: str, space: str) -> str:
    """A Lua script whose literal keys (``'ttg:...'``) are moved into ``space``."""
    return lua.replace("'ttg:", "'" + space)


def connect(url: str, error: type[Exception]) -> redis.Redis:
    """A client that fails fast with one clear sentence when the first connection
    fails, then retries dropped connections with exponential backoff (about 15 s
    in all, enough for a restart).

    The first PING runs without retries: redis-py counts a refused connection
    and a refused password (AuthenticationError is a ConnectionError) as
    retryable, and nests the connect retries inside the command retries, so
    with the backoff in place a wrong URL or password would be reported only
    after many backoffs, not at once. (``url`` comes without TTG's prefix: see
    ``keyspace``.)"""
    try:
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), retry_on_error=[
                                      redis.ConnectionError, redis.TimeoutError], socket_connect_timeout=5,
                                      socket_timeout=60, health_check_interval=15)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise error(describe(url, exc)) from exc
    client.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=12,
                           supported_errors=(redis.ConnectionError, redis.TimeoutError)))
    return client


def describe(url: str, exc: Exception) -> str:
    where = redact(url)
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return (f"Redis at {where} refused the credentials ({exc}); check the user and password "
                "in the URL.")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return (f"cannot reach Redis at {where} ({exc}); check that the server runs and the URL "
                "(host, port, TLS) is right.")
    if isinstance(exc, ValueError):
        return (f"the Redis URL {where} is malformed ({exc}); write it as "
                "redis://[user:password@]host:port/db.")
    return f"Redis at {where} failed: {exc}; check the server's log."


def guarded(url: str, error: type[Exception], fn: Callable[[], T]) -> T:
    """Run ``fn`` (a call on the client of ``url``), turning redis-py's errors into ``error``."""
    try:
        return fn()
    except redis.RedisError as exc:
        raise error(describe(url, exc)) from exc


class Keyspace:
    """One client's view of a Redis database: the connection (``r``), the text
    TTG's keys start with (``ns``), scripts registered in that key space, and
    calls whose redis-py errors become ``error`` with one clear sentence."""

    def __init__(self, url: str, error: type[Exception]) -> None:
        self.url = url
        self.error = error
        plain_url, self.ns = keyspace(url)
        self.r = connect(plain_url, error)

    def script(self, lua: str) -> Any:
        return self.r.register_script(in_keyspace(lua, self.ns))

    def do(self, fn: Callable[[], Any]) -> Any:
        return guarded(self.url, self.error, fn)
