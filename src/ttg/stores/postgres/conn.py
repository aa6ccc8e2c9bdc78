"""Connecting to PostgreSQL: the store URL, the libpq settings TTG adds, a
session that reconnects and retries, and driver errors turned into one
sentence that names the problem and the fix.

A ``Session`` is one connection in autocommit mode: every operation but
``_replace`` and migrations is a single statement, atomic by itself and one
round trip (an explicit BEGIN/COMMIT would make three, and a read would leave
the session idle in transaction); the others use explicit transactions.
Nothing lives in the session across statements (no prepared statements,
temporary tables, SET or session advisory locks), so it works behind
pgbouncer in transaction pooling mode. A lost connection (server restart,
``pg_terminate_backend``, network) is reopened with exponential backoff
(50 ms doubling to 2 s, about 15 s in all) and the operation retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import make_conninfo

from ...drivers.urls import redact
from ...errors import ConfigError, StoreError, StoreUnavailable, TtgError
from .schema import migrate

log = logging.getLogger(__name__)
T = TypeVar("T")
_BACKOFF_FIRST, _BACKOFF_MAX, _RETRY_FOR = 0.05, 2.0, 15.0

#: libpq settings TTG gives when the URL does not.
DEFAULTS = {"application_name": "ttg", "connect_timeout": "5", "keepalives_idle": "30",
            "keepalives_interval": "10", "keepalives_count": "3"}


def parse_url(url: str) -> tuple[str, bool]:
    """(libpq connection string: the URL without TTG's own parameters, with TTG's
    defaults for what it does not set; sql_view)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {k for k, _ in query}
    flag = dict(query).get("sql_view", "0").lower()
    if flag not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"sql_view={flag!r} in the PostgreSQL URL is neither on nor off; write "
                          "sql_view=1 or sql_view=0.")
    rest = [(k, v) for k, v in query if k != "sql_view"]
    conninfo = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    defaults = {k: v for k, v in DEFAULTS.items() if k not in given}
    try:
        conninfo = make_conninfo(conninfo, **defaults)
    except psycopg.ProgrammingError as exc:
        raise malformed(redact(url), exc) from exc
    return conninfo, flag in ("1", "true", "yes", "on")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.removeprefix("connection failed: ").strip()


def _quoted(text: str, after: str) -> str:
    """The double-quoted name after ``after`` in a server message ('database "x" ...')."""
    _, _, rest = text.partition(after + ' "')
    return rest.partition('"')[0]


def fatal(exc: psycopg.Error) -> bool:
    """Errors that reconnecting cannot cure: wrong credentials, database or role."""
    text = str(exc)
    return any(s in text for s in ("password authentication failed", "no password supplied",
                                   "does not exist", "no pg_hba.conf entry"))


def malformed(where: str, exc: psycopg.Error) -> ConfigError:
    return ConfigError(f"the PostgreSQL URL {where} is malformed ({first_line(exc)}); write it as "
                       "postgresql://user:password@host:port/database[?sslmode=require].")


def describe(where: str, exc: psycopg.Error) -> TtgError:
    """One sentence naming the problem and the fix."""
    text, line = str(exc), first_line(exc)
    if "password authentication failed" in text or "no password supplied" in text:
        return StoreUnavailable(f"PostgreSQL at {where} refused the credentials ({line}); check the user and "
                                "password in the URL (or PGPASSWORD, ~/.pgpass).")
    if 'database "' in text and "does not exist" in text:
        name = _quoted(text, "database")
        return ConfigError(f"database {name} does not exist on PostgreSQL at {where}; create it "
                           f"(createdb {name}) or fix the URL.")
    if 'role "' in text and "does not exist" in text:
        name = _quoted(text, "role")
        return ConfigError(f"role {name} does not exist on PostgreSQL at {where}; create it "
                           f"(createuser -P {name}) or fix the user in the URL.")
    if "no pg_hba.conf entry" in text:
        return StoreUnavailable(f"PostgreSQL at {where} does not accept this user from this host ({line}); "
                                "add a line for it to the server's pg_hba.conf and reload.")
    if "too many clients" in text or "remaining connection slots" in text:
        return StoreUnavailable(f"PostgreSQL at {where} has no connection slots left ({line}); raise "
                                "max_connections or put pgbouncer in front (docs/backends/postgresql.md).")
    if isinstance(exc, pgerrors.DiskFull):
        return StoreUnavailable(f"PostgreSQL at {where} is out of disk space ({line}); free space on the "
                                "server: nothing of this write was stored, and it will be retried.")
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return ConfigError(f"PostgreSQL at {where} refused an operation on TTG's tables ({line}); grant "
                           "the user SELECT, INSERT, UPDATE, DELETE on the ttg_ tables (or CREATE on the "
                           "schema).")
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return StoreUnavailable(f"PostgreSQL at {where} is read-only ({line}); point the URL at the primary.")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"cannot reach PostgreSQL at {where} ({line}); check that the server runs "
                                "and the URL's host and port.")
    return StoreError(f"PostgreSQL at {where} failed ({line}); check the server's log.")


class Session:
    """One connection to the server, reopened and retried as the module docstring says."""

    def __init__(self, url: str) -> None:
        """Connect (failing at once, with one sentence, when the server, the
        database or the credentials are wrong) and migrate the schema."""
        self._conninfo, self.sql_view = parse_url(url)
        self.where = redact(url)
        self._db: psycopg.Connection[Any] | None = None
        try:
            self._first_connection()
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is None:  # libpq refused the connection parameters themselves
                raise malformed(self.where, exc) from exc
            raise describe(self.where, exc) from exc
        except psycopg.Error as exc:
            raise describe(self.where, exc) from exc

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
        is tried again with backoff, as any statement is (``run``)."""
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

    def run(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
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
