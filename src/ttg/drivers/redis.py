"""Redis plumbing shared by the Redis broker and the Redis store: a client that
fails fast on a first connection and rides out restarts later, and redis-py's
errors turned into one sentence that names the problem and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .urls import redact

T = TypeVar("T")


def connect(url: str, error: type[Exception]) -> redis.Redis:
    """A client that fails fast with one clear sentence when the first connection
    fails, then retries dropped connections with exponential backoff (about 15 s
    in all, enough for a restart).

    The first PING runs without retries: redis-py counts a refused connection
    and a refused password (AuthenticationError is a ConnectionError) as
    retryable, and nests the connect retries inside the command retries, so
    with the backoff in place a wrong URL or password would be reported only
    after many backoffs, not at once."""
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
