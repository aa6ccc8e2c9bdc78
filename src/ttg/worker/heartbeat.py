"""Lease heartbeats, sent by the supervisor on behalf of its children.

The supervisor's loop runs this every tick. A lease is extended once a third
of its period has passed, so two heartbeats can fail before it expires. A
heartbeat that finds the lease lost (another worker has the chunk now) stops
that child: its work would be refused at commit anyway. A broker that cannot
be reached is only logged: the next tick tries again, and the lease's
remaining time covers short outages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..brokers.base import Broker, Lease
from ..errors import BrokerError, LeaseLost
from ..events import Events

if TYPE_CHECKING:
    from .supervisor import Slot

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, broker: Broker, events: Events | None = None) -> None:
        self.broker = broker
        self.events = events or Events()
        self.extended = 0

    def beat(self, slots: Iterable[Slot], on_lost: Callable[[Slot, Lease, LeaseLost], None]) -> None:
        now = self.broker.clock()
        period = self.broker.lease_seconds
        for slot in slots:
            lease = slot.lease
            if lease is None or slot.killed_for is not None or now < lease.deadline - period * 2 / 3:
                continue
            try:
                slot.lease = self.broker.extend(lease)
                self.extended += 1
                self.events.lease_extended(slot.lease)
            except LeaseLost as exc:
                self.events.lease_lost(lease)
                on_lost(slot, lease, exc)
            except BrokerError as exc:
                log.warning("heartbeat for %s %s failed (will retry): %s", lease.sweep_id, lease.chunk, exc)
