"""The leases one RabbitMQ client holds: one record per lease token, one place
that forgets it.

A lease is an unacknowledged delivery; its token is
``{client}.{channel generation}:{delivery tag}``. A delivery whose channel
closed is gone (RabbitMQ has it back), except one lost to a consumer timeout
while its chunk still runs here (recovery.py): if another worker got the chunk
first, the record stays as an *orphan* that may finish (its heartbeat
succeeds, its ack does nothing); if this client took the chunk back, the old
token *moves* to the new delivery, so the holder's ack, release and heartbeat
reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ...core.chunking import Chunk


@dataclass
class Delivery:
    token: str
    sweep: str
    chunk: Chunk
    #: the message body, republished on release whatever copy of the lease the caller has
    body: bytes
    #: pushed to a consumer of ours (it fills the consumer's prefetch window), not got
    pushed: bool
    #: lost to a consumer timeout while it still runs here, another worker having it now
    orphan: bool = False

    @property
    def tag(self) -> int:
        return int(self.token.partition(":")[2])


class Deliveries:
    def __init__(self) -> None:
        self._by_token: dict[str, Delivery] = {}
        #: token of a delivery lost to a consumer timeout -> token of the delivery of the
        #: same chunk this client took again in its place
        self._moved: dict[str, str] = {}

    def add(self, delivery: Delivery) -> None:
        self._by_token[delivery.token] = delivery

    def current(self, token: str, *, done: bool = False) -> str:
        """The token this client holds the lease by now (after moves); with ``done``,
        the moves that led there are forgotten (the lease ends)."""
        while token in self._moved:
            token = self._moved.pop(token) if done else self._moved[token]
        return token

    def move(self, old: str, new: str) -> None:
        self._moved[old] = new

    def held(self, token: str) -> Delivery | None:
        """The live delivery of ``token`` (not an orphan), or None."""
        d = self._by_token.get(token)
        return d if d is not None and not d.orphan else None

    def orphaned(self, token: str) -> bool:
        d = self._by_token.get(token)
        return d is not None and d.orphan

    def forget(self, token: str) -> Delivery | None:
        """The lease ended (acked, released, dead-lettered); returns its record."""
        return self._by_token.pop(token, None)

    def forget_sweep(self, sweep: str) -> None:
        """The sweep's queue was deleted, and its deliveries with it."""
        for token in [t for t, d in self._by_token.items() if d.sweep == sweep and not d.orphan]:
            del self._by_token[token]

    def channel_closed(self) -> list[Delivery]:
        """The channel holding the live deliveries closed: they are gone. Returns them."""
        gone = [d for d in self._by_token.values() if not d.orphan]
        for d in gone:
            del self._by_token[d.token]
        return gone

    def orphan(self, delivery: Delivery) -> None:
        delivery.orphan = True
        self._by_token[delivery.token] = delivery

    def clear(self) -> None:
        self._by_token.clear()
        self._moved.clear()

    def live(self, sweep: str | None = None) -> Iterator[Delivery]:
        """The live deliveries (of one sweep, or all)."""
        return (d for d in self._by_token.values() if not d.orphan and (sweep is None or d.sweep == sweep))

    def __len__(self) -> int:
        return sum(1 for _ in self.live())
