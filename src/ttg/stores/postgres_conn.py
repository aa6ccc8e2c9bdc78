"""Connecting to PostgreSQL: the store URL, the libpq settings TTG adds, and
driver errors turned into one sentence that names the problem and the fix."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import make_conninfo

from ..errors import ConfigError, StoreError, StoreUnavailable, TtgError

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
        raise malformed(safe_url(url), exc) from exc
    return conninfo, flag in ("1", "true", "yes", "on")


def safe_url(url: str) -> str:
    """The URL without password or query, for messages."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"


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
