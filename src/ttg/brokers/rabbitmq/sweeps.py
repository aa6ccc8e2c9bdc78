"""Which sweeps have work: the management API's queue listing (highest priority
first), and the ``ttg.sweeps`` fanout that announces new work at once.

Each client binds an exclusive queue ``ttg.listen.{client}.{generation}`` to
the fanout, consumed on a channel of its own (a closed main channel must not
end it); its messages are dispatched whenever the connection reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika

from ...errors import BrokerUnavailable
from .layout import ANNOUNCE
from .link import Link
from .management import Management

#: how long a listing of the sweeps is used before it is read again
LISTING_SECONDS = 2.0
#: how long an announced sweep is kept while the listing does not show it yet
ANNOUNCED_SECONDS = 10.0


class SweepList:
    def __init__(self, link: Link, management: Management,
                 on_announce: Callable[[str], None] = lambda sweep: None) -> None:
        self.link, self.management, self.on_announce = link, management, on_announce
        self._cache: tuple[float, list[str]] = (-LISTING_SECONDS, [])
        #: sweep -> (priority, when) announced since the last listing
        self._announced: dict[str, tuple[int, float]] = {}
        self._listen_ch: Any = None

    def ordered(self) -> list[str]:
        """Sweeps with a chunk queue, highest priority first (the listing, read at
        most every LISTING_SECONDS, and the sweeps announced since)."""
        at, cached = self._cache
        if time.monotonic() - at <= LISTING_SECONDS:
            new = [s for s in self._announced if s not in cached]
            if new:  # announced since the listing: priority order among them is the next listing's
                cached = [*cached, *new]
                self._cache = (at, cached)
            return cached
        return self._read()[0]

    def every(self) -> list[str]:
        """Every sweep with a queue of any kind (also only delayed or dead-lettered chunks)."""
        listed, others = self._read()
        return sorted(set(listed) | others)

    def _read(self) -> tuple[list[str], set[str]]:
        listing = self.management.queues()
        if listing is None:
            raise BrokerUnavailable(f"the RabbitMQ management API at {self.management.api} does not answer; "
                                    "enable it (rabbitmq-plugins enable rabbitmq_management) or give the "
                                    "sweep (--sweep NAME).")
        found: list[tuple[int, str]] = []
        others: set[str] = set()
        for qinfo in listing:
            name = str(qinfo.get("name", ""))
            if name.startswith("ttg.q."):
                prio = int((qinfo.get("arguments") or {}).get("x-ttg-priority") or 0)
                found.append((prio, name.removeprefix("ttg.q.")))
            elif name.startswith(("ttg.delay.", "ttg.dead.")):
                others.add(name.split(".", 2)[2])
        now = time.monotonic()
        listed = {s for _, s in found}
        for sweep, (prio, at) in list(self._announced.items()):
            if sweep in listed or now - at > ANNOUNCED_SECONDS:  # listed now, or gone (cancelled) since
                del self._announced[sweep]
            else:  # the listing can lag a moment behind a new queue
                found.append((prio, sweep))
        found.sort(key=lambda p: -p[0])
        cached = [s for _, s in found]
        self._cache = (now, cached)
        return cached, others

    def announce(self, sweep_id: str, priority: int) -> None:
        props = pika.BasicProperties(headers={"ttg-priority": priority})
        self.link.ch.basic_publish(ANNOUNCE, "", sweep_id.encode(), props)

    def listen(self) -> None:
        """Follow ``ttg.sweeps`` (once), and take in what the connection received."""
        if self._listen_ch is not None and self._listen_ch.is_open:
            self.link.take_in()
            return
        ch = self.link.conn.channel()
        ch.exchange_declare(ANNOUNCE, "fanout", durable=True)
        q = f"ttg.listen.{self.link.client_id}.{self.link.generation}"
        ch.queue_declare(q, exclusive=True, auto_delete=True)
        ch.queue_bind(q, ANNOUNCE)
        ch.basic_consume(q, self._on_announce, auto_ack=True)
        self._listen_ch = ch

    def _on_announce(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        sweep = body.decode(errors="replace")
        self._announced[sweep] = (int((props.headers or {}).get("ttg-priority") or 0), time.monotonic())
        self.on_announce(sweep)
