"""Server URLs as TTG shows them: never a password, never a query (which may
carry a token or a key)."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact(url: str) -> str:
    """``scheme://[user@]host[:port]/path``: the URL without its password and query."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: shown as given, it is what to fix
        port = f":{parts.netloc.rpartition(':')[2]}"
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"
