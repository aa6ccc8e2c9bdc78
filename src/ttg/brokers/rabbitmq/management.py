"""RabbitMQ's management HTTP API, for what AMQP cannot tell: which sweep queues
exist (with their priorities) and how many deliveries every client holds.

Port 15672 of the broker's host, or ``?management=URL`` in the broker URL; the
URL's user and password. Its counts are the server's statistics, refreshed
every ``collect_statistics_interval`` (5 s by default): they may lag that much.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

#: how long one reading of the unacknowledged counts is used
UNACKED_SECONDS = 1.0


def split_url(url: str) -> tuple[str, str]:
    """The AMQP URL without TTG's ``management`` query parameter, and the management API URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    management = query.pop("management", [""])[0]
    rest = "&".join(f"{k}={v}" for k, vs in query.items() for v in vs)
    amqp = urlunsplit((parts.scheme, parts.netloc, parts.path or "/%2F", rest, ""))
    if not management:
        scheme = "https" if parts.scheme == "amqps" else "http"
        management = f"{scheme}://{parts.hostname or 'localhost'}:15672"
    return amqp, management


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class Management:
    def __init__(self, amqp_url: str, api: str) -> None:
        self.api = api.rstrip("/")
        parts = urlsplit(amqp_url)
        self.vhost = vhost_of(amqp_url)
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._unacked: tuple[float, dict[str, int]] = (-UNACKED_SECONDS, {})
        self._warned = False

    def queues(self) -> list[dict[str, Any]] | None:
        """The virtual host's queues (name, arguments, messages_unacknowledged), or
        None when the API does not answer."""
        got = self._get(f"/api/queues/{quote(self.vhost, safe='')}"
                        "?columns=name,arguments,messages_unacknowledged")
        return got if isinstance(got, list) else None

    def unacked(self, queues: list[str]) -> int | None:
        """Deliveries of these queues that some client holds unacknowledged, as the
        server's statistics last counted them; None when the API does not answer."""
        at, counts = self._unacked
        if time.monotonic() - at >= UNACKED_SECONDS:
            listing = self.queues()
            if listing is None:
                if not self._warned:
                    log.warning("the RabbitMQ management API at %s does not answer: leased chunks are "
                                "counted for this client only", self.api)
                    self._warned = True
                return None
            self._warned = False
            counts = {str(q.get("name")): int(q.get("messages_unacknowledged") or 0) for q in listing}
            self._unacked = (time.monotonic(), counts)
        return sum(counts.get(q, 0) for q in queues)

    def _get(self, path: str) -> Any:
        req = urllib.request.Request(self.api + path)
        req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("RabbitMQ management API unavailable at %s: %s", self.api, exc)
            return None
