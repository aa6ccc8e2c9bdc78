"""One AMQP connection and its main channel: opened with one clear sentence when
that fails, reopened when they drop, and the two places where pika's public
API is not enough.

Every reopened channel is a new *generation*: deliveries of an older one are
gone (RabbitMQ has them back), and their tokens, which name the generation,
can never match a delivery of the new one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from ...drivers.urls import redact
from ...errors import BrokerUnavailable, ConfigError
from .management import vhost_of

log = logging.getLogger(__name__)

# pika also raises ValueError ("Timeout closed before call") from a connection that
# died under it; all of these mean "the connection is gone"
AMQP_ERRORS = (pika.exceptions.AMQPError, OSError, ValueError)
#: how long a dropped connection is tried again before giving up
RECONNECT_SECONDS = 15.0
#: how long one operation waits for the server's answer before the connection is
#: taken for lost: a server can keep a connection alive (heartbeats) and never answer
#: a call on it (a quorum queue's declare, seen under the soak's faults), and pika
#: waits for an answer without limit
ANSWER_SECONDS = 30.0


class Link:
    def __init__(self, url: str, on_cancelled: Callable[[Any], None],
                 on_reset: Callable[[bool], None], on_lost: Callable[[BaseException | None], None]) -> None:
        """``on_cancelled``: RabbitMQ ended one of our consumers (its queue was
        deleted). ``on_reset(new_connection)``: a new channel (on a new connection
        or not) replaced the one that held our deliveries and consumers.
        ``on_lost(why)``: ``run`` found that the server closed our channel; it must
        open a new one (``reopen_channel``)."""
        self.url = url
        try:
            self.params = pika.URLParameters(url)
        except ValueError as exc:
            raise ConfigError(f"the RabbitMQ URL {redact(url)} is malformed ({exc}); write it as "
                              "amqp://user:password@host:port/vhost.") from exc
        if "heartbeat" not in parse_qs(urlsplit(url).query):  # the URL's ?heartbeat=S wins
            self.params.heartbeat = 20
        self.params.blocked_connection_timeout = 60
        self.params.connection_attempts = 1
        self.on_cancelled, self.on_reset, self.on_lost = on_cancelled, on_reset, on_lost
        self.conn: Any = None
        self.ch: Any = None
        self.generation = 0
        self.client_id = secrets.token_hex(4)
        #: when the connection last read what the server sent (``take_in``)
        self.read_at = 0.0

    @property
    def where(self) -> str:
        return redact(self.url)

    def token(self, delivery_tag: int) -> str:
        return f"{self.client_id}.{self.generation}:{delivery_tag}"

    def connect(self) -> None:
        """Open the connection and its channel. The first time, any failure is final
        (one sentence); later, a dropped connection is tried again for
        RECONNECT_SECONDS (a broker restarting)."""
        delay = 0.05
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                self.conn = pika.BlockingConnection(self.params)
                self.ch = self._new_channel()
                break
            except pika.exceptions.ProbableAuthenticationError as exc:
                raise BrokerUnavailable(f"RabbitMQ at {self.where} refused the credentials; check "
                                        "the user and password in the URL.") from exc
            except pika.exceptions.ProbableAccessDeniedError as exc:
                raise BrokerUnavailable(f"RabbitMQ at {self.where} refused access to virtual host "
                                        f"{vhost_of(self.url)!r}; create it or give the user permissions on "
                                        "it (rabbitmqctl add_vhost / set_permissions), or fix the URL's "
                                        "path.") from exc
            except AMQP_ERRORS as exc:
                if time.monotonic() > deadline or self.generation == 0:
                    raise BrokerUnavailable(f"cannot reach RabbitMQ at {self.where} ({exc!r}); check "
                                            "that the server runs and the URL (host, port, vhost).") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.generation += 1
        self.on_reset(True)

    def reopen_channel(self) -> None:
        """A new main channel (the server closed ours); a new connection if that fails."""
        try:
            self.ch = self._new_channel()
        except AMQP_ERRORS:
            self.close_quietly()
            self.connect()
            return
        self.generation += 1  # deliveries of the closed channel are gone
        self.on_reset(False)

    def _new_channel(self) -> Any:
        ch = self.conn.channel()
        ch.confirm_delivery()
        ch.add_on_cancel_callback(self.on_cancelled)
        return ch

    def ensure(self) -> bool:
        """Reconnect if the connection is closed (by us, or dropped); False when the
        connection is up but the server closed our channel since we last used it."""
        if self.conn is None or not self.conn.is_open:
            self.connect()  # leases of the old connection are gone
            return True
        return bool(self.ch.is_open)

    @property
    def up(self) -> bool:
        return self.conn is not None and self.conn.is_open

    def run(self, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        """Run ``fn`` on the channel, reconnecting once (with backoff) if the connection dropped,
        and on a new channel (``on_lost``) if the server closed ours, for a consumer timeout say."""
        if not self.ensure():
            self.on_lost(None)  # closed by the server since we last used it
        cancel = self._deadline()
        try:
            return fn()
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.on_lost(exc)
            if retry and ack_timed_out(exc):  # not this operation's fault: run it again
                return self.run(fn, retry=False)
            raise BrokerUnavailable(f"RabbitMQ refused an operation: {exc.reply_text}.") from exc
        except AMQP_ERRORS as exc:
            if self.up and not self.ch.is_open:  # the channel closed meanwhile
                self.on_lost(None)
                if retry:
                    return self.run(fn, retry=False)
                raise BrokerUnavailable(f"RabbitMQ closed the channel: {exc!r}.") from exc
            if not retry:
                raise BrokerUnavailable(f"lost the connection to RabbitMQ at {self.where}: "
                                        f"{exc!r}.") from exc
            log.warning("RabbitMQ connection lost (%r); reconnecting", exc)
            self.close_quietly()
            self.connect()
            return self.run(fn, retry=False)
        finally:
            cancel()

    def close_quietly(self) -> None:
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        except AMQP_ERRORS:
            pass

    def take_in(self, wait: float = 0.0) -> None:
        """Send what is buffered, read what the server sent and dispatch it (deliveries,
        announcements, heartbeats), waiting at most ``wait`` seconds for more."""
        self.conn.process_data_events(time_limit=wait)
        self.read_at = time.monotonic()

    # -- where pika's public API is not enough ---------------------------------------------

    def _deadline(self) -> Callable[[], None]:
        """Drop the connection if the operation about to run is not answered within
        ANSWER_SECONDS (``run`` then reconnects and runs it again); returns what
        cancels that. A blocking connection's own timers fire only between calls,
        so this uses its I/O loop's, through the connection underneath (``_impl``),
        which runs while a call waits; and ends the connection as pika's own
        heartbeat checker does when the server falls silent."""
        impl = self.conn._impl

        def unanswered() -> None:
            log.warning("RabbitMQ at %s has not answered for %g s; dropping the connection", self.where,
                        ANSWER_SECONDS)
            impl._terminate_stream(pika.exceptions.StreamLostError(
                f"no answer from the server for {ANSWER_SECONDS:g} s"))

        timer = impl._adapter_call_later(ANSWER_SECONDS, unanswered)
        return timer.cancel  # type: ignore[no-any-return]

    def buffered_ack(self, delivery_tag: int) -> None:
        """Ack without writing to the socket now: the next read sends it, with the
        others. The blocking channel's ``basic_ack`` flushes every ack (a write
        per chunk); its underlying asynchronous channel buffers, and it is only
        reachable as the private ``_impl``."""
        self.ch._impl.basic_ack(delivery_tag=delivery_tag)

    def closing_reason(self) -> BaseException | None:
        """Why the server closed our channel, when we notice it closed between two
        calls. pika keeps it in the blocking channel's private ``_closing_reason``
        (it raises it only at the next call, which would be lost with the channel)."""
        reason = getattr(self.ch, "_closing_reason", None)
        return reason if isinstance(reason, BaseException) else None


def ack_timed_out(exc: BaseException | None) -> bool:
    """The server closed the channel because a delivery outlived its ``consumer_timeout``."""
    return (isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == 406
            and "acknowledgement" in exc.reply_text and "timed out" in exc.reply_text)
