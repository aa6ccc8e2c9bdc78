"""Lease heartbeats, sent by the supervisor on behalf of its children.

The supervisor's loop runs this every tick. A lease is extended once a third
of its period has passed, so two heartbeats can fail before it expires. A
heartbeat that finds the lease lost (another worker has the chunk now) stops
that child: its work would be refused at commit anyway. A broker that cannot
be reached is only logged: the next tick tries again, and the lease's
remaining time covers short outages. Each try waits out the broker client's
own reconnect backoff (about 15 s for Redis), so once one fails the rest of
that beat is skipped: they would each wait as long, and hold up the
supervisor's loop (and its stop) as many times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..brokers.base import Broker, Lease
from ..errors import BrokerError, LeaseLost
from .events import Events
from .slots import Slot

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, broker: Broker, events: Events | None = None) -> None:
        self.broker = broker
        self.events = events or Events()
        self.extended = 0
        #: a heartbeat of this beat failed: the others wait for the next
        self._failed = False
        #: the last call to the broker failed for want of it (the supervisor's releases too)
        self.broker_down = False

    def beat(self, slots: Iterable[Slot], on_lost: Callable[[Slot, Lease, LeaseLost], None]) -> None:
        """Extend what each child holds: the chunk it computes (a lost one stops the
        child) and the others (a lost one is only forgotten: its commit is refused
        or already done, and its ack finds nothing to ack)."""
        now = self.broker.clock.monotonic()
        self._failed = False
        for slot in slots:
            lease = slot.lease
            if lease is not None and slot.killed_for is None:
                try:
                    slot.lease = self._extend(lease, now)
                except LeaseLost as exc:
                    on_lost(slot, lease, exc)
            for token, held in list(slot.held.items()):
                try:
                    slot.held[token] = self._extend(held, now)
                except LeaseLost:
                    slot.held.pop(token, None)

    def _extend(self, lease: Lease, now: float) -> Lease:
        """``lease``, extended once a third of its period has passed."""
        if now < lease.deadline - self.broker.lease_seconds * 2 / 3 or self._failed:
            return lease
        try:
            lease = self.broker.extend(lease)
        except LeaseLost:
            self.broker_down = False
            self.events.lease_lost(lease)
            raise
        except BrokerError as exc:
            log.warning("heartbeat for %s %s failed (will retry): %s", lease.sweep_id, lease.chunk, exc)
            self._failed = self.broker_down = True
            return lease
        self.broker_down = False
        self.extended += 1
        self.events.lease_extended(lease)
        return lease
