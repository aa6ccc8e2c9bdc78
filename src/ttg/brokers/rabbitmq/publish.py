"""Publishing many messages with publisher confirms, waiting for all of them at once.

pika's blocking channel waits for each message's confirm before it sends the
next, a round trip per chunk. ``publish_confirmed`` sends them all on a connection of
its own (pika's asynchronous ``SelectConnection``, same parameters), then
waits until RabbitMQ has confirmed every one: the same guarantee (when it
returns, every message is on disk on a majority of the nodes), one wait
instead of one per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pika
import pika.spec

from ...errors import BrokerUnavailable


class _Batch:
    """The state of one confirmed batch on its own SelectConnection."""

    def __init__(self, params: pika.ConnectionParameters, queue: str,
                 messages: Sequence[tuple[bytes, pika.BasicProperties]], timeout: float) -> None:
        self.queue, self.messages, self.timeout = queue, messages, timeout
        self.unconfirmed = set(range(1, len(messages) + 1))
        self.error: str | None = None
        self.conn = pika.SelectConnection(params, on_open_callback=self._opened,
                                          on_open_error_callback=self._open_failed,
                                          on_close_callback=self._closed)

    def run(self) -> None:
        self.conn.ioloop.call_later(self.timeout, lambda: self._fail(
            f"RabbitMQ confirmed only {len(self.messages) - len(self.unconfirmed)} of {len(self.messages)} "
            f"messages within {self.timeout:g} s"))
        try:
            self.conn.ioloop.start()
        finally:
            self.conn.ioloop.close()  # (its wake-up socket pair)
        if self.error is None and self.unconfirmed:
            self.error = "the connection closed before every message was confirmed"

    def _opened(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._channel_opened)

    def _channel_opened(self, ch: Any) -> None:
        self.ch = ch
        ch.add_on_close_callback(lambda _ch, reason: self._fail(f"RabbitMQ closed the channel: {reason}"))
        ch.add_on_return_callback(lambda *_: self._fail(f"a message could not be routed to {self.queue} "
                                                        "(was the sweep cancelled meanwhile?)"))
        ch.confirm_delivery(ack_nack_callback=self._confirmed, callback=self._publish_all)

    def _publish_all(self, _frame: Any) -> None:
        for body, props in self.messages:
            self.ch.basic_publish("", self.queue, body, props, mandatory=True)

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self._fail("RabbitMQ refused a message (basic.nack)")
            return
        tag = method.delivery_tag
        if method.multiple:
            self.unconfirmed = {t for t in self.unconfirmed if t > tag}
        else:
            self.unconfirmed.discard(tag)
        if not self.unconfirmed:
            self.conn.close()

    def _fail(self, why: str) -> None:
        """Stop; ``why`` is the error unless every message was confirmed already
        (a channel closing with its connection at the end, or a late timer)."""
        if self.error is None and self.unconfirmed:
            self.error = why
        if self.conn.is_open:
            self.conn.close()
        elif not self.conn.is_closing:
            self.conn.ioloop.stop()

    def _open_failed(self, _conn: Any, exc: BaseException) -> None:
        self.error = f"cannot connect ({exc!r})"
        self.conn.ioloop.stop()

    def _closed(self, _conn: Any, _reason: BaseException) -> None:
        self.conn.ioloop.stop()


def publish_confirmed(params: pika.ConnectionParameters, queue: str,
                      messages: Sequence[tuple[bytes, pika.BasicProperties]], timeout: float = 60.0) -> None:
    """Publish ``messages`` (body, properties) to ``queue`` and return once RabbitMQ
    has confirmed all of them; raises BrokerUnavailable otherwise (then some may
    have been queued: submitting again is safe, as duplicates are acked unrun)."""
    if not messages:
        return
    batch = _Batch(params, queue, messages, timeout)
    batch.run()
    if batch.error is not None:
        raise BrokerUnavailable(f"publishing {len(messages)} chunks to {queue} failed: {batch.error}.")
