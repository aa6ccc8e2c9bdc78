"""A worker supervisor's prefetch: it consumes from the sweep it works on, and
RabbitMQ pushes the next chunks while the current ones run.

The supervisor (``set_capacity``: N children) consumes from the queue of the
sweep a chunk last came from, with a prefetch of 4N unacknowledged deliveries
(a child holds the chunk it computes, the one it commits and the one it leased
ahead; the fourth waits here, so a request made ahead is answered at once).
Pushed chunks wait in the inbox until a child asks. A chunk nobody started
goes back to its queue uncounted when the supervisor moves to another sweep,
stops consuming (chunks became long, worker/pace.py) or closes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import pika.exceptions

from ...errors import BrokerUnavailable
from .deliveries import Deliveries
from .layout import queue_names
from .link import Link

log = logging.getLogger(__name__)

#: before a consumer is cancelled, how long pushes already on their way are waited for at most
SETTLE_SECONDS = 0.2

#: a delivery as pika hands it over: (method, properties, body)
Raw = tuple[Any, Any, bytes]


class Prefetch:
    def __init__(self, link: Link, deliveries: Deliveries, count: Callable[[str], int],
                 give_back: Callable[[str, Raw], None]) -> None:
        """``count(queue)``: the messages ready in a queue (0 when it does not exist);
        ``give_back(sweep, delivery)``: return a push nobody leased, uncounted."""
        self.link, self.deliveries, self.count, self.give_back = link, deliveries, count, give_back
        #: how many deliveries to consume ahead; 0: none (no capacity set, or chunks are long)
        self.capacity = 0
        #: the prefetch our consumers were started with (``capacity`` may have changed since)
        self.prefetch = 0
        #: sweep -> tag of our consumer on its queue
        self.consumers: dict[str, str] = {}
        #: deliveries our consumers received that nobody leased yet, by sweep
        self.inbox: dict[str, deque[Raw]] = {}
        #: a sweep a chunk was just got from, to consume from at the next ``service``
        self.refocus: str | None = None
        #: stop consuming at the next ``service`` (chunks became long)
        self.unsubscribe = False

    def pushed(self, sweep_id: str | None) -> int:
        """Deliveries waiting in the inbox (of one sweep, or the fullest one)."""
        sweeps = [sweep_id] if sweep_id else list(self.consumers)
        return max((len(self.inbox.get(s) or ()) for s in sweeps), default=0)

    def waiting(self, sweep_id: str | None = None) -> int:
        """Pushed deliveries nobody leased yet (of one sweep, or all)."""
        return sum(len(box) for s, box in self.inbox.items() if sweep_id is None or s == sweep_id)

    def take(self, sweep_id: str) -> Raw | None:
        box = self.inbox.get(sweep_id)
        return box.popleft() if box else None

    def reset(self) -> None:
        """The channel that held our consumers (and their deliveries) is gone."""
        self.inbox.clear()
        self.consumers.clear()

    def drop(self, sweep_id: str) -> None:
        """The sweep's queue was deleted: its consumer and pushes went with it."""
        self.consumers.pop(sweep_id, None)
        self.inbox.pop(sweep_id, None)

    def apply(self) -> None:
        """Do what was decided since the last call (at the supervisor's next tick):
        consume from the sweep a chunk was just got from, or stop consuming."""
        if self.refocus is not None:
            sweep, self.refocus = self.refocus, None
            try:
                self.link.run(partial(self.focus, sweep))
            except BrokerUnavailable as exc:  # basic.get goes on taking its chunks
                log.warning("could not consume from %s: %s", sweep, exc)
        if self.unsubscribe:
            self.unsubscribe = False
            try:
                self.link.run(self.stop_all)
            except BrokerUnavailable as exc:  # (a lost connection took the consumers with it)
                log.warning("could not stop consuming: %s", exc)

    def focus(self, sweep_id: str) -> None:
        """Consume from this sweep's queue only (the one a chunk just came from, the
        highest priority with work): chunks of other sweeps do not wait here while
        this one runs."""
        if sweep_id not in self.consumers:
            self.stop_all()
            self._consume(sweep_id)

    def stop_all(self) -> None:
        for sweep in list(self.consumers):
            self.stop(sweep)

    def stop(self, sweep_id: str) -> None:
        """Stop consuming from this sweep's queue and give back the pushes nobody
        leased. The consumer is cancelled once nothing more can be on its way to it,
        and before those are given back, whose acks would bring more."""
        self._quiesce(sweep_id)
        tag = self.consumers.pop(sweep_id, None)
        if tag is not None:
            self.link.ch.basic_cancel(tag)
        for raw in self.inbox.pop(sweep_id, None) or ():
            self.give_back(sweep_id, raw)

    def _quiesce(self, sweep_id: str) -> None:
        """Read until nothing more can be on its way to our consumer on this sweep's
        queue: pika rejects a delivery that arrives while its consumer is being
        cancelled, and RabbitMQ counts every rejected delivery as redelivered, an
        attempt its chunk never failed. Nothing more comes once the consumer's
        prefetch window is full (the buffered acks sent first: they free slots), or
        once the queue has nothing ready. Waits at most ``SETTLE_SECONDS``."""
        end = time.monotonic() + SETTLE_SECONDS
        self.link.take_in()
        while True:
            held = sum(1 for d in self.deliveries.live(sweep_id) if d.pushed)
            if held + len(self.inbox.get(sweep_id) or ()) >= self.prefetch or time.monotonic() >= end:
                return
            if self.count(queue_names(sweep_id)[0]) == 0:
                self.link.take_in()  # what left the queue before it was counted
                return
            self.link.take_in(0.005)

    def _consume(self, sweep_id: str) -> None:
        ch = self.link.ch
        ch.basic_qos(prefetch_count=self.capacity)
        self.prefetch = self.capacity
        try:
            tag = ch.basic_consume(queue_names(sweep_id)[0], partial(self._on_delivery, sweep_id))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # no such queue (cancelled): basic.get finds nothing either
                self.link.reopen_channel()
                return
            raise
        self.consumers[sweep_id] = tag
        self.inbox.setdefault(sweep_id, deque())

    def _on_delivery(self, sweep_id: str, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self.inbox.setdefault(sweep_id, deque()).append((method, props, body))

    def on_cancelled(self, frame: Any) -> None:
        """RabbitMQ ended a consumer: its queue was deleted (``ttg cancel``)."""
        tag = frame.method.consumer_tag
        for sweep, t in list(self.consumers.items()):
            if t == tag:
                self.drop(sweep)  # its pushes were deleted with the queue
