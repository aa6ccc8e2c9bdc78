"""The RabbitMQ broker: a durable quorum queue per sweep; leases live with the
connection that took them.

Queues, exchange and headers: layout.py.

A lease is an unacknowledged delivery (deliveries.py): it lasts exactly as long
as the connection that took it, and RabbitMQ redelivers it at once when that
connection closes (a worker killed, a machine cut off: its heartbeats stop).
There is no deadline to extend; ``extend`` only checks the lease still exists.
Because a connection must answer heartbeats while the function runs, worker
children hold no AMQP connection: they reach the broker through their
supervisor (``for_child``, worker/proxy.py), which consumes ahead for them
(consumer.py). Otherwise ``basic.get`` takes a chunk; a sweep queue found empty
is tried again after a delay that doubles from 10 ms to 0.5 s, and at once
when ``ttg.sweeps`` announces it. A delivery that outlives the server's
``consumer_timeout`` is handled by recovery.py.

Failed attempts = ``ttg-failures`` + the quorum queue's ``x-delivery-count``
(deliveries returned unacknowledged, i.e. lost leases). A release republishes
the chunk with its new count (publisher confirms) and then acks the old
delivery, so a release without a failure costs the chunk nothing.

Publishing waits for the publisher confirms (of many chunks at once,
publish.py), so a ``submit`` that returned is never lost. Submitting is not
deduplicated (AMQP has no way to ask what a queue holds): the client queues
only uncommitted ranges, and a duplicate chunk that does get queued is
acknowledged without being computed. The sweep list and the count of other
clients' leases come from the management API (management.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import pika
import pika.exceptions

from ...core.chunking import Chunk
from ...core.clock import SYSTEM, Clock
from ...core.retry import Failure
from ...errors import BrokerUnavailable, LeaseLost
from ...settings import Settings
from ..base import Broker, BrokerBackend, DeadLetter, Lease, QueueStats, poll
from . import recovery
from .consumer import Prefetch, Raw
from .deliveries import Deliveries, Delivery
from .layout import chunk_headers, persistent, queue_names, read_headers
from .link import AMQP_ERRORS, Link, ack_timed_out
from .management import Management, split_url
from .publish import publish_confirmed
from .queues import Queues
from .sweeps import SweepList

log = logging.getLogger(__name__)

#: from this many chunks on, a submit waits for their confirms all at once (publish.py)
BULK_PUBLISH = 16
#: how long an empty queue is left alone at most before the next basic.get
MAX_EMPTY_BACKOFF = 0.5
#: ``service`` reads the connection at most this often (each read is a poll and
#: pika's dispatch: the supervisor's largest cost per chunk after its acks)
SERVICE_SECONDS = 0.005


class RabbitBroker(BrokerBackend):
    def __init__(self, url: str, lease_seconds: float = 10.0, poll_seconds: float = 0.05,
                 clock: Clock = SYSTEM) -> None:
        super().__init__(lease_seconds, clock)
        self.poll_seconds = poll_seconds
        self.url, api = split_url(url)
        self.management = Management(self.url, api)
        self.deliveries = Deliveries()
        self.link = Link(self.url, lambda frame: self.prefetch.on_cancelled(frame), self._on_reset,
                         self._channel_lost)
        self.queues = Queues(self.link)
        self.prefetch = Prefetch(self.link, self.deliveries, self.queues.count, self._give_back)
        #: an announced sweep is tried at once, whatever its backoff (``_empty``)
        self.sweeps = SweepList(self.link, self.management, self._announced)
        #: sweep -> (next basic.get not before, current backoff) for queues found empty
        self._empty: dict[str, tuple[float, float]] = {}
        if not log.isEnabledFor(logging.DEBUG) and logging.getLogger("pika").level == logging.NOTSET:
            # pika logs each failed connection (with a traceback) and each closed channel at
            # ERROR/WARNING; TTG reports every one of them itself, in one line
            logging.getLogger("pika").setLevel(logging.CRITICAL)
        self.link.connect()

    @classmethod
    def from_url(cls, url: str, settings: Settings, clock: Clock = SYSTEM) -> RabbitBroker:
        return cls(url, settings.lease_seconds, poll_seconds=settings.poll_seconds, clock=clock)

    @classmethod
    def for_child(cls, url: str, settings: Settings, proxied: Callable[[], Broker]) -> Broker:
        """A lease lives with the connection that took it, and a connection must
        answer heartbeats while the function runs (which may hold the GIL for
        minutes): children reach the broker through their supervisor's connection."""
        return proxied()

    @property
    def capacity(self) -> int:
        return self.prefetch.capacity

    def _announced(self, sweep_id: str) -> None:
        self._empty.pop(sweep_id, None)

    # -- the connection ------------------------------------------------------------------------

    def _on_reset(self, new_connection: bool) -> None:
        """The channel that held our deliveries and consumers is gone: RabbitMQ has them back."""
        self.deliveries.channel_closed()
        self.prefetch.reset()
        if new_connection:
            self.queues.declared.clear()

    def _channel_lost(self, exc: BaseException | None) -> None:
        """The server closed our channel (``exc``: why, when we saw it happen): every delivery
        on it went back to its queue. Log why and open a new one."""
        reason = exc if exc is not None else self.link.closing_reason()
        held = len(self.deliveries)
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker) and ack_timed_out(reason):
            recovery.log_timeout(reason, held)
            lost = list(self.deliveries.live())
            self.link.reopen_channel()
            recovery.reclaim(lost, self.deliveries, self._get, self._republish)
            return
        if held:
            log.warning("RabbitMQ closed the channel (%s); the %d chunk(s) it held go back to the queue",
                        getattr(reason, "reply_text", None) or repr(reason), held)
        self.link.reopen_channel()

    def service(self) -> None:
        """Answer heartbeats and take in what the server sent (the supervisor calls
        this every tick, so held leases stay alive while children compute)."""
        self.prefetch.apply()
        if time.monotonic() - self.link.read_at < SERVICE_SECONDS:
            return  # read a moment ago (a lease request reads too)
        try:
            self.link.take_in()
        except AMQP_ERRORS as exc:
            log.warning("RabbitMQ connection lost (%r); reconnecting", exc)
            self.link.close_quietly()
            try:
                self.link.connect()
            except BrokerUnavailable as again:  # the next tick tries again; never crash the supervisor
                log.error("%s", again)
            return
        if not self.link.ch.is_open:  # e.g. a consumer timeout: notice it now, not at the next call
            self._channel_lost(None)

    # -- queues ------------------------------------------------------------------------------

    def _publish(self, queue: str, body: bytes, headers: dict[str, Any], expiration_ms: int = 0) -> None:
        self.link.ch.basic_publish("", queue, body, persistent(headers, expiration_ms), mandatory=True)

    # -- the contract ------------------------------------------------------------------------

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        todo = list(items)

        def go() -> int:
            self.queues.declare(sweep_id, priority, all_queues=False)
            q = queue_names(sweep_id)[0]
            for chunk, body in todo[:1]:  # workers can start on it while the rest is published
                self._publish(q, body, chunk_headers(sweep_id, chunk, 0, None, priority))
                self.sweeps.announce(sweep_id, priority)
            self.queues.declare(sweep_id, priority)
            rest = [(body, persistent(chunk_headers(sweep_id, chunk, 0, None, priority)))
                    for chunk, body in todo[1:]]
            if len(rest) >= BULK_PUBLISH:
                publish_confirmed(self.link.params, q, rest)
            else:
                for body, props in rest:
                    self.link.ch.basic_publish("", q, body, props, mandatory=True)
            return len(todo)

        return int(self.link.run(go))

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        return poll(lambda: self._try_lease(sweep_id, skip), timeout, self.poll_seconds)

    def set_capacity(self, holders: int, *, long_chunks: bool = False) -> None:
        """Consume from each sweep queue leased from, with a prefetch of four chunks per
        holder (consumer.py), instead of answering a ``basic.get`` (a replicated
        log entry on a quorum queue) for each. While chunks are long
        (worker/pace.py), no consumer: one ``basic.get`` when a holder asks for work,
        so no chunk waits here that another worker could start; what was pushed
        goes back, uncounted, at the next ``service``."""
        p = self.prefetch
        was_long = p.capacity == 0 and p.prefetch > 0
        p.capacity = 0 if long_chunks else 4 * holders
        if long_chunks:
            p.refocus = None
            p.unsubscribe = bool(p.consumers)
            log.info("a chunk took a second or more: leasing one at a time (no prefetch)")
        elif was_long:
            log.info("chunks are short again: consuming ahead")

    def _try_lease(self, sweep_id: str | None, skip: Collection[str] = ()) -> Lease | None:
        # read (which also sends the buffered acks, and so brings the next pushes) unless
        # chunks pushed already answer this request and the next, and it read a moment ago
        if self.prefetch.pushed(sweep_id) < 2 or time.monotonic() - self.link.read_at >= SERVICE_SECONDS:
            self.link.run(self.sweeps.listen)  # (also takes in what the consumers received)
        now = time.monotonic()
        for s in [sweep_id] if sweep_id else self.sweeps.ordered():
            if s in skip:
                if s in self.prefetch.consumers:  # its pushes go back, uncounted, for others
                    self.link.run(partial(self.prefetch.stop, s))
                continue
            raw = self.prefetch.take(s)
            got: Lease | None
            if raw is not None:  # pushed to us: no request needed (a delivery of a lost channel is forgotten)
                got = self.link.run(partial(self._lease_from, s, *raw), retry=False)
                if got is not None:
                    return got
                continue
            if s in self.prefetch.consumers:  # the next push comes within the prefetch window; a
                continue                      # basic.get beside it would take a chunk beyond it
            ready_at, backoff = self._empty.get(s, (0.0, 0.0))
            if now < ready_at:
                continue
            got = self.link.run(partial(self._get, s))
            if got is not None:
                self._empty.pop(s, None)
                if self.prefetch.capacity:  # consume from it, once this chunk is on its way (service)
                    self.prefetch.refocus = s
                return got
            backoff = min(max(backoff * 2, 0.01), MAX_EMPTY_BACKOFF)
            self._empty[s] = (now + backoff, backoff)
        return None

    def _give_back(self, sweep_id: str, raw: Raw) -> None:
        """A pushed chunk nobody leased goes back without counting an attempt
        (republished with its counts, then acked, as ``release`` does)."""
        lease = self._lease_from(sweep_id, *raw)
        if lease is not None:
            self.release(lease)

    def _get(self, sweep_id: str) -> Lease | None:
        try:
            method, props, body = self.link.ch.basic_get(queue_names(sweep_id)[0], auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # no such queue: nothing submitted (or cancelled)
                self.link.reopen_channel()
                return None
            raise
        if method is None:
            return None
        return self._lease_from(sweep_id, method, props, body)

    def _lease_from(self, sweep_id: str, method: Any, props: Any, body: bytes) -> Lease | None:
        """A delivery (got or pushed) as a Lease; None when it is not a TTG chunk (then
        it is moved to the dead-letter queue)."""
        h = props.headers or {}
        try:
            chunk, failures, failure, priority = read_headers(h)
        except (KeyError, TypeError, ValueError) as exc:  # not from TTG: set it aside, never run it
            reason = f"not a TTG chunk message: no valid ttg-start/ttg-stop headers ({exc!r})"
            q, _, dead = queue_names(sweep_id)
            log.error("moving a message from %s to %s: %s", q, dead, reason)
            self.link.ch.queue_declare(dead, durable=True)
            self._publish(dead, body, {**h, "ttg-reason": reason, "ttg-at": repr(self.clock.time())})
            self.link.ch.basic_ack(method.delivery_tag)
            return None
        token = self.link.token(method.delivery_tag)
        self.deliveries.add(Delivery(token, sweep_id, chunk, body,
                                     pushed=isinstance(method, pika.spec.Basic.Deliver)))
        return Lease(sweep_id, chunk, body, token, self.clock.monotonic() + self.lease_seconds, failures,
                     failure, priority)

    def extend(self, lease: Lease) -> Lease:
        token = self.deliveries.current(lease.token)
        exists = self.deliveries.held(token) is not None and self.link.run(
            partial(self.queues.exists, queue_names(lease.sweep_id)[0]))
        token = self.deliveries.current(lease.token)  # (_do may have reconnected, or taken the chunk back)
        if self.deliveries.orphaned(token):  # lost to a consumer timeout: let it finish
            return replace(lease, deadline=self.clock.monotonic() + self.lease_seconds)
        if self.deliveries.held(token) is None or not exists:
            raise LeaseLost(f"lease on {lease.sweep_id} {lease.chunk} was lost (its connection closed, "
                            "or the sweep was cancelled).")
        return replace(lease, deadline=self.clock.monotonic() + self.lease_seconds)

    def ack(self, lease: Lease) -> None:
        token = self.deliveries.current(lease.token, done=True)
        if self.deliveries.orphaned(token):
            self.deliveries.forget(token)
        elif self.deliveries.held(token) is not None:
            self.link.run(lambda: self._ack(self.deliveries.current(token, done=True)))

    def _ack(self, token: str) -> None:
        d = self.deliveries.held(token)
        if d is None:  # its channel closed: acking the tag would hit another delivery
            return
        if self.prefetch.capacity:
            # A supervisor's ack is only buffered; its next read sends it: at once when
            # the ack came with a lease request, else within one tick. An ack lost with
            # the connection is harmless: the chunk is committed, so it comes back and
            # is acked without computing.
            self.link.buffered_ack(d.tag)
        else:
            self.link.ch.basic_ack(d.tag)
        self.deliveries.forget(token)

    def _finish(self, lease: Lease, publish: Callable[[Delivery], None]) -> None:
        """End a lease by publishing what replaces its message (``publish``), then
        acking it; a no-op when the lease was lost meanwhile (RabbitMQ has it)."""
        token = self.deliveries.current(lease.token, done=True)
        if self.deliveries.orphaned(token):
            self.deliveries.forget(token)
            return
        if self.deliveries.held(token) is None:
            return

        def go() -> None:
            now = self.deliveries.current(token, done=True)  # (taken back on the way: recovery.py)
            d = self.deliveries.held(now)
            if d is None:  # lost on the way (reconnected): RabbitMQ has it
                return
            publish(d)
            self._ack(now)

        self.link.run(go)

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        last = failure or lease.last_failure
        failures = lease.failures + (1 if failure else 0)
        q, delay_q, _ = queue_names(lease.sweep_id)

        def publish(d: Delivery) -> None:
            if not self.queues.exists(q):  # cancelled: drop it
                return
            headers = chunk_headers(lease.sweep_id, lease.chunk, failures, last, lease.priority)
            if delay > 0:
                self._publish(delay_q, d.body, headers, max(1, int(delay * 1000)))
            else:
                self._publish(q, d.body, headers)
                self.sweeps.announce(lease.sweep_id, lease.priority)

        self._finish(lease, publish)

    def _republish(self, lease: Lease) -> None:
        """Put a delivery back in its queue as it was (a stray got while reclaiming)."""
        q = queue_names(lease.sweep_id)[0]
        self._publish(q, lease.body, chunk_headers(lease.sweep_id, lease.chunk, lease.failures,
                                                   lease.last_failure, lease.priority))
        self._ack(lease.token)

    def dead_letter(self, lease: Lease, reason: str) -> None:
        def publish(d: Delivery) -> None:
            self.queues.declare(lease.sweep_id)
            headers = chunk_headers(lease.sweep_id, lease.chunk, lease.failures, lease.last_failure,
                                    lease.priority)
            headers.update({"ttg-reason": reason, "ttg-at": repr(self.clock.time())})
            self._publish(queue_names(lease.sweep_id)[2], b"", headers)

        self._finish(lease, publish)

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        result: list[DeadLetter] = self.link.run(partial(self.queues.read_dead, sweep_id))
        return result

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        """Queued and dead counts are exact. ``leased`` is what the management API
        counts unacknowledged (every client's; it lags by up to its statistics
        interval), and never less than what this client holds itself."""
        def read() -> QueueStats:
            sweeps = [sweep_id] if sweep_id else self.sweeps.every()
            queued = dead = 0
            for s in sweeps:
                q, delay_q, dead_q = queue_names(s)
                queued += self.queues.count(q) + self.queues.count(delay_q)
                dead += self.queues.count(dead_q)
            mine = sum(1 for _ in self.deliveries.live(sweep_id)) + self.prefetch.waiting(sweep_id)
            everyone = self.management.unacked([queue_names(s)[0] for s in sweeps])
            return QueueStats(queued, max(mine, everyone or 0), dead)

        result: QueueStats = self.link.run(read)
        return result

    def cancel(self, sweep_id: str) -> int:
        q, delay_q, _ = queue_names(sweep_id)

        def go() -> int:
            n = self.queues.count(q) + self.queues.count(delay_q)
            for name in (q, delay_q):
                self.link.ch.queue_delete(name)
            self.queues.declared.pop(sweep_id, None)
            self.prefetch.drop(sweep_id)
            self.deliveries.forget_sweep(sweep_id)  # RabbitMQ dropped those deliveries with the queue
            return n

        return int(self.link.run(go))

    def close(self) -> None:
        """Close the connection: RabbitMQ gives every lease it held back at once.
        (Using the broker again opens a new connection.)"""
        if self.prefetch.consumers and self.link.up:
            try:  # pushed chunks nobody started: back without counting an attempt
                self.prefetch.stop_all()
            except (BrokerUnavailable, *AMQP_ERRORS) as exc:
                log.debug("could not give back prefetched chunks: %r", exc)
        self.link.close_quietly()
        self._on_reset(True)
        self.deliveries.clear()
