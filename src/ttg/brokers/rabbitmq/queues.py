"""The queues of a sweep (layout.py): declared once per connection, counted and
read without consuming them."""

from __future__ import annotations

import logging

import pika.exceptions

from ...core.chunking import Chunk
from ..base import DeadLetter
from .layout import ANNOUNCE, DELIVERY_LIMIT, queue_names
from .link import Link

log = logging.getLogger(__name__)


class Queues:
    def __init__(self, link: Link) -> None:
        self.link = link
        #: sweeps whose queues this connection declared: True all, False the chunk queue only
        self.declared: dict[str, bool] = {}

    def declare(self, sweep_id: str, priority: int = 0, *, all_queues: bool = True) -> None:
        """The sweep's chunk queue, then (``all_queues``) its dead-letter and delay
        queues. A submit declares those two after its first chunk is queued: nothing
        is dead-lettered or delayed before a chunk has run, and a worker that does
        either declares them itself first."""
        done = self.declared.get(sweep_id)
        if done or (done is False and not all_queues):
            return
        q, delay, dead = queue_names(sweep_id)
        ch = self.link.ch
        if done is None:
            ch.queue_declare(q, durable=True, arguments={
                "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead, "x-ttg-priority": priority})
            ch.exchange_declare(ANNOUNCE, "fanout", durable=True)
            self.declared[sweep_id] = False
        if all_queues:
            ch.queue_declare(dead, durable=True)
            ch.queue_declare(delay, durable=True, arguments={
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
            self.declared[sweep_id] = True

    def count(self, queue: str) -> int:
        """Ready messages in ``queue`` (0 when it does not exist)."""
        ch = self.link.conn.channel()
        try:
            n = int(ch.queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
        ch.close()
        return n

    def exists(self, queue: str) -> bool:
        ch = self.link.conn.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        ch.close()
        return True

    def read_dead(self, sweep_id: str) -> list[DeadLetter]:
        """Read the dead-letter queue without consuming it (gets, then closes the
        channel so every message goes back)."""
        out: list[DeadLetter] = []
        ch = self.link.conn.channel()
        try:
            while True:
                method, props, _ = ch.basic_get(queue_names(sweep_id)[2], auto_ack=False)
                if method is None:
                    break
                h = props.headers or {}
                try:
                    chunk = Chunk(int(h["ttg-start"]), int(h["ttg-stop"]))
                except (KeyError, TypeError, ValueError):
                    log.debug("%s holds a message with no chunk range", queue_names(sweep_id)[2])
                    continue
                reason = h.get("ttg-reason")
                if reason is None:  # dead-lettered by RabbitMQ itself (x-delivery-limit)
                    reason = f"delivered {DELIVERY_LIMIT} times without an acknowledgement"
                out.append(DeadLetter(sweep_id, chunk, str(reason), float(h.get("ttg-at") or 0)))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            return []
        if ch.is_open:
            ch.close()
        return sorted(out, key=lambda d: d.at)
