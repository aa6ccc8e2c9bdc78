"""The RabbitMQ broker: a durable quorum queue per sweep; leases live with the
connection that took them.

Queues (vhost of the URL):

``ttg.q.{sweep}``      quorum queue of the sweep's chunks. Message body: the chunk
                       message; headers ``ttg-start``, ``ttg-stop``,
                       ``ttg-failures`` (failed attempts before this message was
                       published), ``ttg-last-failure`` (JSON). Arguments: a
                       ``x-delivery-limit`` safety net (TTG splits poison chunks
                       long before it), dead-lettering to ``ttg.dead.{sweep}``,
                       and ``x-ttg-priority`` (read back through the management
                       API to lease from the highest-priority sweep first).
``ttg.delay.{sweep}``  classic queue holding chunks released with a delay; each
                       message expires after its delay and is dead-lettered back
                       into ``ttg.q.{sweep}``.
``ttg.dead.{sweep}``   classic queue: the dead-letter record (headers ``ttg-reason``,
                       ``ttg-at``).
``ttg.sweeps``         fanout exchange: a message (body: the sweep id) after every
                       submit and release. Each client binds an exclusive queue
                       ``ttg.listen.{client}`` to it, so an idle worker sees new
                       work at once instead of waiting for the next listing.

A worker supervisor (``set_capacity``: N children) consumes from each sweep queue
it leases from, with a prefetch of 4N unacknowledged deliveries (a child holds
the chunk it computes, the one it commits and the one it leased ahead; the
fourth waits here): RabbitMQ pushes the next chunks while the current ones
run, and they wait in ``_inbox`` until a child asks. Before the supervisor
consumes from a sweep (and for plain clients, which set no capacity),
``basic.get`` takes a chunk; a sweep queue found empty is tried again after a
delay that doubles from 10 ms to 0.5 s, and at once when ``ttg.sweeps``
announces it. While chunks are long (worker/pace.py) the supervisor does not
consume: ``basic.get`` answers each request, so no chunk waits here unstarted.

A lease is an unacknowledged delivery (pushed or got): it lasts exactly as long
as the connection that took it, and RabbitMQ redelivers it at once when that
connection closes (a worker killed, a machine cut off: its heartbeats stop).
There is no deadline to extend; ``extend`` only checks the lease still exists.
Because a connection must answer heartbeats while the function runs, worker
children do not hold AMQP connections: their supervisor does, and the children
reach the broker through it (``holds_leases``; see ttg.worker.proxy).

Failed attempts = ``ttg-failures`` + the quorum queue's ``x-delivery-count``
(deliveries returned unacknowledged, i.e. lost leases). A release republishes
the chunk with its new count (publisher confirms) and then acks the old
delivery, so a release without a failure costs the chunk nothing.

A delivery left unacknowledged longer than the server's ``consumer_timeout``
(rabbitmq.conf, default 30 minutes) makes RabbitMQ close the channel, which
gives back every delivery on it. AMQP 0-9-1 has no way to extend a delivery,
so ``consumer_timeout`` must exceed the longest chunk: TTG logs an error naming
it when that happens, opens a new channel, and lets the chunks that were
running keep going: the supervisor takes their messages back at once on its
new channel (a returned message is the first a quorum queue delivers again)
and binds each to the chunk still running, so its ack, release and heartbeat
work as before. One that another worker got first is left to finish anyway
(its commit is idempotent, its ack a no-op): it is further along than the copy.

Publishing waits for the publisher confirms (of many chunks at once, see
ttg.brokers.rabbitmq_publish), so a ``submit`` that returned is never lost.
Submitting is not deduplicated (AMQP has no way to ask what a queue holds):
the client queues only uncommitted ranges, and a duplicate chunk that does get
queued is acknowledged without being computed. Queue depth
(``leased``) and the sweep list come from the management plugin's HTTP API
(port 15672, or ``?management=URL`` in the broker URL); without it ``leased``
counts only this process's leases and workers need ``--sweep``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions

from ..chunking import Chunk
from ..errors import BrokerUnavailable, LeaseLost
from ..retry import Failure
from .base import Broker, DeadLetter, Lease, QueueStats, poll
from .rabbitmq_publish import publish_confirmed

log = logging.getLogger(__name__)

DELIVERY_LIMIT = 50
#: fanout exchange announcing new work (see the module docstring)
ANNOUNCE = "ttg.sweeps"
#: from this many chunks on, a submit waits for their confirms all at once (rabbitmq_publish)
BULK_PUBLISH = 16
#: how long an empty queue is left alone at most before the next basic.get
MAX_EMPTY_BACKOFF = 0.5
#: ``service`` reads the connection at most this often (each read is a poll and
#: pika's dispatch: the supervisor's largest cost per chunk after its acks)
SERVICE_SECONDS = 0.005
#: before a consumer is cancelled, how long pushes already on their way are waited for at most (``_quiesce``)
SETTLE_SECONDS = 0.2
# pika also raises ValueError ("Timeout closed before call") from a connection that
# died under it; all of these mean "the connection is gone"
_AMQP_ERRORS = (pika.exceptions.AMQPError, OSError, ValueError)


class RabbitBroker(Broker):
    holds_leases = True
    dedupes = False
    exact_leased = False

    def __init__(self, url: str, lease_seconds: float = 10.0, poll_seconds: float = 0.05,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(lease_seconds, clock)
        self.poll_seconds = poll_seconds
        self.url, self.management = _split_url(url)
        self._params = pika.URLParameters(self.url)
        if "heartbeat" not in parse_qs(urlsplit(self.url).query):  # the URL's ?heartbeat=S wins
            self._params.heartbeat = 20
        self._params.blocked_connection_timeout = 60
        self._params.connection_attempts = 1
        self._conn: Any = None
        self._ch: Any = None
        self._generation = 0
        self._client_id = secrets.token_hex(4)
        #: token -> sweep of every lease this client holds
        self._outstanding: dict[str, str] = {}
        #: tokens of those leases that a consumer of ours was pushed (not got): they fill its
        #: prefetch window (``_quiesce``)
        self._pushed: set[str] = set()
        #: token -> sweep of leases RabbitMQ took back at a consumer timeout while their chunk
        #: still runs and that another worker got first: left to finish, their ack a no-op
        self._orphans: dict[str, str] = {}
        #: token of a lease RabbitMQ took back at a consumer timeout -> token of the delivery of
        #: the same chunk taken again in its place (see _reclaim)
        self._moved: dict[str, str] = {}
        #: token -> message body, to republish on release whatever copy of the lease the caller has
        self._bodies: dict[str, bytes] = {}
        #: token -> chunk of every lease this client holds
        self._chunks: dict[str, Chunk] = {}
        #: sweeps whose queues this connection declared: True all, False the chunk queue only
        self._declared: dict[str, bool] = {}
        self._sweeps_cache: tuple[float, list[str]] = (0.0, [])
        #: sweep -> (priority, when) announced on ttg.sweeps since the last listing
        self._announced: dict[str, tuple[int, float]] = {}
        #: sweep -> (next basic.get not before, current backoff) for queues found empty
        self._empty: dict[str, tuple[float, float]] = {}
        self._listen_ch: Any = None
        #: when the connection last read what the server sent (``_take_in``)
        self._read_at = 0.0
        #: a sweep a chunk was just got from, to consume from at the next ``service``
        self._refocus: str | None = None
        #: stop consuming at the next ``service`` (chunks became long: ``set_capacity``)
        self._unsubscribe = False
        #: deliveries our consumers received and nobody leased yet: sweep -> (method, props, body)
        self._inbox: dict[str, deque[tuple[Any, Any, bytes]]] = {}
        #: sweep -> tag of our consumer on its queue (only with a ``capacity``)
        self._consumers: dict[str, str] = {}
        self.capacity = 0
        #: the prefetch our consumers were started with (``capacity`` may have changed since)
        self._prefetch = 0
        if not log.isEnabledFor(logging.DEBUG) and logging.getLogger("pika").level == logging.NOTSET:
            # pika logs each failed connection (with a traceback) and each closed channel at
            # ERROR/WARNING; TTG reports every one of them itself, in one line
            logging.getLogger("pika").setLevel(logging.CRITICAL)
        self._connect()

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        delay = 0.05
        deadline = time.monotonic() + 15
        while True:
            try:
                self._conn = pika.BlockingConnection(self._params)
                self._ch = self._conn.channel()
                self._ch.confirm_delivery()
                self._ch.add_on_cancel_callback(self._on_consumer_cancelled)
                break
            except pika.exceptions.ProbableAuthenticationError as exc:
                raise BrokerUnavailable(f"RabbitMQ at {_safe(self.url)} refused the credentials; check "
                                        "the user and password in the URL.") from exc
            except pika.exceptions.ProbableAccessDeniedError as exc:
                raise BrokerUnavailable(f"RabbitMQ at {_safe(self.url)} refused access to virtual host "
                                        f"{self._vhost()!r}; create it or give the user permissions on it "
                                        "(rabbitmqctl add_vhost / set_permissions), or fix the URL's "
                                        "path.") from exc
            except _AMQP_ERRORS as exc:
                if time.monotonic() > deadline or self._generation == 0:
                    raise BrokerUnavailable(f"cannot reach RabbitMQ at {_safe(self.url)} ({exc!r}); check "
                                            "that the server runs and the URL (host, port, vhost).") from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._generation += 1
        self._forget_deliveries()
        self._declared.clear()

    def _do(self, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        """Run ``fn`` on the channel, reconnecting once (with backoff) if the connection dropped,
        and on a new channel if the server closed ours for a consumer timeout."""
        if self._conn is None or not self._conn.is_open:
            self._connect()  # closed by us or dropped: leases of the old connection are gone
        elif not self._ch.is_open:
            self._channel_lost(None)  # closed by the server since we last used it
        try:
            return fn()
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._channel_lost(exc)
            if retry and _ack_timed_out(exc):  # not this operation's fault: run it again
                return self._do(fn, retry=False)
            raise BrokerUnavailable(f"RabbitMQ refused an operation: {exc.reply_text}.") from exc
        except _AMQP_ERRORS as exc:
            if self._conn.is_open and not self._ch.is_open:  # the channel closed meanwhile
                self._channel_lost(None)
                if retry:
                    return self._do(fn, retry=False)
                raise BrokerUnavailable(f"RabbitMQ closed the channel: {exc!r}.") from exc
            if not retry:
                raise BrokerUnavailable(f"lost the connection to RabbitMQ at {_safe(self.url)}: "
                                        f"{exc!r}.") from exc
            log.warning("RabbitMQ connection lost (%r); reconnecting", exc)
            self._close_quietly()
            self._connect()
            return self._do(fn, retry=False)

    def _channel_lost(self, exc: BaseException | None) -> None:
        """The server closed our channel (``exc``: why, when we saw it happen): every delivery
        on it went back to its queue. Log why and open a new one."""
        reason = exc if exc is not None else getattr(self._ch, "_closing_reason", None)
        held = len(self._outstanding)
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker) and _ack_timed_out(reason):
            used = re.search(r"Timeout value used: (\d+) ms", reason.reply_text)
            limit = f"{int(used.group(1)) / 1000:g} s" if used else "its limit"
            log.error("RabbitMQ closed the channel because a chunk stayed unacknowledged longer than "
                      "its consumer_timeout (%s), which put the %d chunk(s) this worker held back in "
                      "the queue (it takes back what it can and lets them finish, but they may run "
                      "twice). Set consumer_timeout in rabbitmq.conf above the longest chunk duration "
                      "(in ms), or make chunks shorter (--chunk-size, or --chunk-size auto with "
                      "--target-chunk-seconds).", limit, held)
            lost = {t: (s, self._chunks[t]) for t, s in self._outstanding.items() if t in self._chunks}
            self._reopen_channel()
            self._reclaim(lost)
            return
        if held:
            log.warning("RabbitMQ closed the channel (%s); the %d chunk(s) it held go back to the queue",
                        getattr(reason, "reply_text", None) or repr(reason), held)
        self._reopen_channel()

    def _reclaim(self, lost: dict[str, tuple[str, Chunk]], patience: float = 0.5) -> None:
        """Take back the chunks of leases lost to a consumer timeout, which are still running
        here: a returned message is the first its quorum queue delivers again, so the next
        gets of its queue usually return it (unless another worker was faster). A message
        of another chunk got on the way goes back to its queue, its attempts unchanged."""
        wanted = dict(lost)
        strays = 0
        end = time.monotonic() + patience
        try:
            while wanted and strays <= len(lost) and time.monotonic() < end:
                for sweep in sorted({s for s, _ in wanted.values()}):
                    got = self._get(sweep)
                    if got is None:
                        continue
                    old = next((t for t, (s, c) in wanted.items() if s == sweep and c == got.chunk), None)
                    if old is not None:
                        self._moved[old] = got.token
                        del wanted[old]
                        continue
                    strays += 1
                    q = _names(sweep)[0]
                    self._publish(q, got.body, _headers(sweep, got.chunk, got.failures, got.last_failure,
                                                        got.priority))
                    self._ack(got)
                if wanted:
                    time.sleep(0.01)
        except _AMQP_ERRORS as exc:
            log.warning("could not take back the chunks lost to the consumer timeout: %r", exc)
        for token, (sweep, _) in wanted.items():
            self._orphans[token] = sweep  # another worker has it: let ours finish anyway
        log.info("took back %d of %d chunk(s) after the consumer timeout", len(lost) - len(wanted), len(lost))

    def _current(self, lease: Lease, *, done: bool = False) -> Lease:
        """``lease`` as this client holds it now (another delivery of its chunk after a consumer
        timeout); with ``done``, forget the old tokens."""
        token = lease.token
        while token in self._moved:
            token = self._moved.pop(token) if done else self._moved[token]
        return lease if token == lease.token else replace(lease, token=token)

    def _reopen_channel(self) -> None:
        try:
            self._ch = self._conn.channel()
            self._ch.confirm_delivery()
            self._ch.add_on_cancel_callback(self._on_consumer_cancelled)
        except _AMQP_ERRORS:
            self._close_quietly()
            self._connect()
        self._generation += 1  # deliveries of the closed channel are gone
        self._forget_deliveries()

    def _forget_deliveries(self) -> None:
        """The channel that held our deliveries (and consumers) is gone: RabbitMQ has them back."""
        self._outstanding.clear()
        self._pushed.clear()
        self._bodies.clear()
        self._chunks.clear()
        self._inbox.clear()
        self._consumers.clear()

    def _close_quietly(self) -> None:
        try:
            if self._conn is not None and self._conn.is_open:
                self._conn.close()
        except _AMQP_ERRORS:
            pass

    def service(self) -> None:
        """Answer heartbeats and take in what the server sent (the supervisor calls
        this every tick, so held leases stay alive while children compute)."""
        if self._refocus is not None:
            sweep, self._refocus = self._refocus, None
            try:
                self._do(partial(self._focus, sweep))
            except BrokerUnavailable as exc:  # basic.get goes on taking its chunks
                log.warning("could not consume from %s: %s", sweep, exc)
        if self._unsubscribe:
            self._unsubscribe = False
            try:
                self._do(self._stop_consuming)
            except BrokerUnavailable as exc:  # (a lost connection took the consumers with it)
                log.warning("could not stop consuming: %s", exc)
        if time.monotonic() - self._read_at < SERVICE_SECONDS:
            return  # read a moment ago (a lease request reads too)
        try:
            self._take_in()
        except _AMQP_ERRORS as exc:
            log.warning("RabbitMQ connection lost (%r); reconnecting", exc)
            self._close_quietly()
            try:
                self._connect()
            except BrokerUnavailable as again:  # the next tick tries again; never crash the supervisor
                log.error("%s", again)
            return
        if not self._ch.is_open:  # e.g. a consumer timeout: notice it now, not at the next call
            self._channel_lost(None)

    # -- queues ------------------------------------------------------------------------------

    def _declare(self, sweep_id: str, priority: int = 0, *, all_queues: bool = True) -> None:
        """The sweep's chunk queue, then (``all_queues``) its dead-letter and delay
        queues. A submit declares those two after its first chunk is queued: nothing
        is dead-lettered or delayed before a chunk has run, and a worker that does
        either declares them itself first."""
        done = self._declared.get(sweep_id)
        if done or (done is False and not all_queues):
            return
        q, delay, dead = _names(sweep_id)
        ch = self._ch
        if done is None:
            ch.queue_declare(q, durable=True, arguments={
                "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead, "x-ttg-priority": priority})
            ch.exchange_declare(ANNOUNCE, "fanout", durable=True)
            self._declared[sweep_id] = False
        if all_queues:
            ch.queue_declare(dead, durable=True)
            ch.queue_declare(delay, durable=True, arguments={
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
            self._declared[sweep_id] = True

    def _announce(self, sweep_id: str, priority: int) -> None:
        props = pika.BasicProperties(headers={"ttg-priority": priority})
        self._ch.basic_publish(ANNOUNCE, "", sweep_id.encode(), props)

    def _listen(self) -> None:
        """Follow ``ttg.sweeps`` on a channel of its own (a closed main channel must not
        end it); its messages are dispatched to ``_on_announce`` whenever the
        connection reads (``service``, or here)."""
        if self._listen_ch is not None and self._listen_ch.is_open:
            self._take_in()
            return
        ch = self._conn.channel()
        ch.exchange_declare(ANNOUNCE, "fanout", durable=True)
        q = f"ttg.listen.{self._client_id}.{self._generation}"
        ch.queue_declare(q, exclusive=True, auto_delete=True)
        ch.queue_bind(q, ANNOUNCE)
        ch.basic_consume(q, self._on_announce, auto_ack=True)
        self._listen_ch = ch

    def _take_in(self, wait: float = 0.0) -> None:
        """Send what is buffered, read what the server sent and dispatch it (deliveries,
        announcements, heartbeats), waiting at most ``wait`` seconds for more."""
        self._conn.process_data_events(time_limit=wait)
        self._read_at = time.monotonic()

    def _on_announce(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        sweep = body.decode(errors="replace")
        self._announced[sweep] = (int((props.headers or {}).get("ttg-priority") or 0), time.monotonic())
        self._empty.pop(sweep, None)

    def _publish(self, queue: str, body: bytes, headers: dict[str, Any], expiration_ms: int = 0) -> None:
        self._ch.basic_publish("", queue, body, _props(headers, expiration_ms), mandatory=True)

    # -- the contract ------------------------------------------------------------------------

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        todo = list(items)

        def go() -> int:
            self._declare(sweep_id, priority, all_queues=False)
            q = _names(sweep_id)[0]
            for chunk, body in todo[:1]:  # workers can start on it while the rest is published
                self._publish(q, body, _headers(sweep_id, chunk, 0, None, priority))
                self._announce(sweep_id, priority)
            self._declare(sweep_id, priority)
            rest = [(body, _props(_headers(sweep_id, chunk, 0, None, priority))) for chunk, body in todo[1:]]
            if len(rest) >= BULK_PUBLISH:
                publish_confirmed(self._params, q, rest)
            else:
                for body, props in rest:
                    self._ch.basic_publish("", q, body, props, mandatory=True)
            return len(todo)

        return int(self._do(go))

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None) -> Lease | None:
        return poll(lambda: self._try_lease(sweep_id), timeout, self.poll_seconds)

    def set_capacity(self, holders: int, *, long_chunks: bool = False) -> None:
        """Consume from each sweep queue leased from, with a prefetch of four chunks per
        holder (computing, committing, leased ahead, and one waiting here, so a
        request made ahead is answered at once): RabbitMQ pushes the next chunks
        while the current ones run, instead of answering a ``basic.get`` (a
        replicated log entry on a quorum queue) for each. While chunks are long
        (worker/pace.py), no consumer: one ``basic.get`` when a holder asks for work,
        so no chunk waits here that another worker could start; what was pushed
        goes back, uncounted, at the next ``service``."""
        self.capacity = 0 if long_chunks else 4 * holders
        if long_chunks:
            self._refocus = None
            self._unsubscribe = bool(self._consumers)

    def _try_lease(self, sweep_id: str | None) -> Lease | None:
        # read (which also sends the buffered acks, and so brings the next pushes) unless
        # chunks pushed already answer this request and the next, and it read a moment ago
        pushed = max((len(self._inbox.get(s) or ()) for s in ([sweep_id] if sweep_id else self._consumers)),
                     default=0)
        if pushed < 2 or time.monotonic() - self._read_at >= SERVICE_SECONDS:
            self._do(self._listen)  # (also takes in what the consumers received)
        now = time.monotonic()
        for s in [sweep_id] if sweep_id else self._sweeps():
            box = self._inbox.get(s)
            got: Lease | None
            if box:  # pushed to us: no request needed (a delivery of a lost channel is forgotten)
                got = self._do(partial(self._lease_from, s, *box.popleft()), retry=False)
                if got is not None:
                    return got
                continue
            if s in self._consumers:  # the next push comes within the prefetch window; a
                continue              # basic.get beside it would take a chunk beyond it
            ready_at, backoff = self._empty.get(s, (0.0, 0.0))
            if now < ready_at:
                continue
            got = self._do(partial(self._get, s))
            if got is not None:
                self._empty.pop(s, None)
                if self.capacity:  # consume from it, once this chunk is on its way (service)
                    self._refocus = s
                return got
            backoff = min(max(backoff * 2, 0.01), MAX_EMPTY_BACKOFF)
            self._empty[s] = (now + backoff, backoff)
        return None

    def _focus(self, sweep_id: str) -> None:
        """Consume from this sweep's queue only (the one a chunk just came from, the
        highest priority with work): chunks of other sweeps do not wait here while
        this one runs. Those already pushed go back uncounted."""
        if sweep_id in self._consumers:
            return
        self._stop_consuming()
        self._consume(sweep_id)

    def _stop_consuming(self) -> None:
        for sweep in list(self._consumers):
            self._give_back(sweep)

    def _give_back(self, sweep_id: str) -> None:
        """Stop consuming from this sweep's queue and return the chunks pushed to us that
        nobody leased, without counting an attempt (republished with their counts,
        then acked, as ``release`` does). The consumer is cancelled once nothing more
        can be on its way to it, and before those acks, which would bring more."""
        self._quiesce(sweep_id)
        tag = self._consumers.pop(sweep_id, None)
        if tag is not None:
            self._ch.basic_cancel(tag)
        box = self._inbox.pop(sweep_id, None)
        while box:
            lease = self._lease_from(sweep_id, *box.popleft())
            if lease is not None:
                self.release(lease)

    def _quiesce(self, sweep_id: str) -> None:
        """Read until nothing more can be on its way to our consumer on this sweep's
        queue: pika rejects a delivery that arrives while its consumer is being
        cancelled, and RabbitMQ counts every rejected delivery as redelivered, an
        attempt its chunk never failed. Nothing more comes once the consumer's
        prefetch window is full (the buffered acks sent first: they free slots), or
        once the queue has nothing ready. Waits at most ``SETTLE_SECONDS``."""
        end = time.monotonic() + SETTLE_SECONDS
        self._take_in()
        while True:
            held = sum(1 for t in self._pushed if self._outstanding.get(t) == sweep_id)
            if held + len(self._inbox.get(sweep_id) or ()) >= self._prefetch or time.monotonic() >= end:
                return
            if self._count(_names(sweep_id)[0]) == 0:
                self._take_in()  # what left the queue before it was counted
                return
            self._take_in(0.005)

    def _consume(self, sweep_id: str) -> None:
        self._ch.basic_qos(prefetch_count=self.capacity)
        self._prefetch = self.capacity
        try:
            tag = self._ch.basic_consume(_names(sweep_id)[0], partial(self._on_delivery, sweep_id))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # no such queue (cancelled): basic.get finds nothing either
                self._reopen_channel()
                return
            raise
        self._consumers[sweep_id] = tag
        self._inbox.setdefault(sweep_id, deque())

    def _on_delivery(self, sweep_id: str, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._inbox.setdefault(sweep_id, deque()).append((method, props, body))

    def _on_consumer_cancelled(self, frame: Any) -> None:
        """RabbitMQ ended a consumer: its queue was deleted (``ttg cancel``)."""
        tag = frame.method.consumer_tag
        for sweep, t in list(self._consumers.items()):
            if t == tag:
                del self._consumers[sweep]
                self._inbox.pop(sweep, None)  # deleted with their queue

    def _get(self, sweep_id: str) -> Lease | None:
        try:
            method, props, body = self._ch.basic_get(_names(sweep_id)[0], auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # no such queue: nothing submitted (or cancelled)
                self._reopen_channel()
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
            chunk = Chunk(int(h["ttg-start"]), int(h["ttg-stop"]))
        except (KeyError, TypeError, ValueError) as exc:  # not from TTG: set it aside, never run it
            reason = f"not a TTG chunk message: no valid ttg-start/ttg-stop headers ({exc!r})"
            q, _, dead = _names(sweep_id)
            log.error("moving a message from %s to %s: %s", q, dead, reason)
            self._ch.queue_declare(dead, durable=True)
            self._publish(dead, body, {**h, "ttg-reason": reason, "ttg-at": repr(self.clock())})
            self._ch.basic_ack(method.delivery_tag)
            return None
        lost = int(h.get("x-delivery-count") or 0)
        last = h.get("ttg-last-failure") or ""
        failure = Failure.from_dict(json.loads(last)) if last else None
        if lost:
            failure = Failure("lost", "the connection holding the lease closed: its worker died or was "
                              "cut off")
        token = f"{self._client_id}.{self._generation}:{method.delivery_tag}"
        self._outstanding[token] = sweep_id
        if isinstance(method, pika.spec.Basic.Deliver):
            self._pushed.add(token)
        self._bodies[token] = body
        self._chunks[token] = chunk
        return Lease(sweep_id, chunk, body, token,
                     self.clock() + self.lease_seconds, int(h.get("ttg-failures") or 0) + lost, failure,
                     int(h.get("ttg-priority") or 0))

    def extend(self, lease: Lease) -> Lease:
        exists = self._current(lease).token in self._outstanding and self._do(
            partial(self._queue_exists, _names(lease.sweep_id)[0]))
        held = self._current(lease)  # (_do may have reconnected, or taken the chunk back)
        if held.token in self._orphans:  # lost to a consumer timeout: let it finish
            return replace(lease, deadline=self.clock() + self.lease_seconds)
        if held.token not in self._outstanding or not exists:
            raise LeaseLost(f"lease on {lease.sweep_id} {lease.chunk} was lost (its connection closed, "
                            "or the sweep was cancelled).")
        return replace(lease, deadline=self.clock() + self.lease_seconds)

    def ack(self, lease: Lease) -> None:
        lease = self._current(lease, done=True)
        self._orphans.pop(lease.token, None)
        if lease.token in self._outstanding:
            self._do(lambda: self._ack(self._current(lease, done=True)))

    def _ack(self, lease: Lease) -> None:
        if lease.token not in self._outstanding:  # its channel closed: acking the tag would hit another
            return
        tag = int(lease.token.partition(":")[2])
        if self.capacity:
            # A supervisor's ack is only buffered (pika's channel underneath the blocking
            # one); its next read sends it: at once when the ack came with a lease request,
            # else within one tick. An ack lost with the connection is harmless: the
            # chunk is committed, so it comes back and is acked without computing.
            self._ch._impl.basic_ack(delivery_tag=tag)
        else:
            self._ch.basic_ack(tag)
        self._outstanding.pop(lease.token, None)
        self._pushed.discard(lease.token)
        self._bodies.pop(lease.token, None)
        self._chunks.pop(lease.token, None)

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        held = lease = self._current(lease, done=True)
        self._orphans.pop(lease.token, None)
        if lease.token not in self._outstanding:
            return
        last = failure or lease.last_failure
        failures = lease.failures + (1 if failure else 0)
        q, delay_q, _ = _names(lease.sweep_id)

        def go() -> None:
            lease = self._current(held, done=True)  # (taken back on the way: see _reclaim)
            if lease.token not in self._outstanding:  # lost on the way (reconnected): RabbitMQ has it
                return
            if self._queue_exists(q):  # else cancelled: drop it
                headers = _headers(lease.sweep_id, lease.chunk, failures, last, lease.priority)
                body = self._bodies.get(lease.token, lease.body)
                if delay > 0:
                    self._publish(delay_q, body, headers, max(1, int(delay * 1000)))
                else:
                    self._publish(q, body, headers)
                    self._announce(lease.sweep_id, lease.priority)
            self._ack(lease)

        self._do(go)

    def dead_letter(self, lease: Lease, reason: str) -> None:
        held = lease = self._current(lease, done=True)
        self._orphans.pop(lease.token, None)
        if lease.token not in self._outstanding:
            return

        def go() -> None:
            lease = self._current(held, done=True)  # (taken back on the way: see _reclaim)
            if lease.token not in self._outstanding:  # lost on the way (reconnected): RabbitMQ has it
                return
            self._declare(lease.sweep_id)
            headers = _headers(lease.sweep_id, lease.chunk, lease.failures, lease.last_failure,
                               lease.priority)
            headers.update({"ttg-reason": reason, "ttg-at": repr(self.clock())})
            self._publish(_names(lease.sweep_id)[2], b"", headers)
            self._ack(lease)

        self._do(go)

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        """Read the dead-letter queue without consuming it (gets, then closes the
        channel so every message goes back)."""
        def read() -> list[DeadLetter]:
            out: list[DeadLetter] = []
            ch = self._conn.channel()
            try:
                while True:
                    method, props, _ = ch.basic_get(_names(sweep_id)[2], auto_ack=False)
                    if method is None:
                        break
                    h = props.headers or {}
                    try:
                        chunk = Chunk(int(h["ttg-start"]), int(h["ttg-stop"]))
                    except (KeyError, TypeError, ValueError):
                        log.debug("%s holds a message with no chunk range", _names(sweep_id)[2])
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

        result: list[DeadLetter] = self._do(read)
        return result

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        """Queued and dead counts are exact. ``leased`` counts this client's own
        leases only: AMQP does not tell one client about another's deliveries (the
        management API's count lags by seconds), hence ``exact_leased = False``."""
        def read() -> QueueStats:
            sweeps = [sweep_id] if sweep_id else self._sweeps(fresh=True, any_queue=True)
            queued = dead = 0
            for s in sweeps:
                q, delay_q, dead_q = _names(s)
                queued += self._count(q) + self._count(delay_q)
                dead += self._count(dead_q)
            mine = sum(1 for s in self._outstanding.values() if sweep_id is None or s == sweep_id)
            mine += sum(len(box) for s, box in self._inbox.items() if sweep_id is None or s == sweep_id)
            return QueueStats(queued, mine, dead)

        result: QueueStats = self._do(read)
        return result

    def cancel(self, sweep_id: str) -> int:
        q, delay_q, _ = _names(sweep_id)

        def go() -> int:
            n = self._count(q) + self._count(delay_q)
            for name in (q, delay_q):
                self._ch.queue_delete(name)
            self._declared.pop(sweep_id, None)
            self._consumers.pop(sweep_id, None)
            self._inbox.pop(sweep_id, None)
            for token in [t for t, s in self._outstanding.items() if s == sweep_id]:
                del self._outstanding[token]  # RabbitMQ dropped those deliveries with the queue
                self._pushed.discard(token)
                self._bodies.pop(token, None)
                self._chunks.pop(token, None)
            return n

        return int(self._do(go))

    def close(self) -> None:
        """Close the connection: RabbitMQ gives every lease it held back at once.
        (Using the broker again opens a new connection.)"""
        if self._consumers and self._conn is not None and self._conn.is_open:
            try:  # pushed chunks nobody started: back without counting an attempt
                self._stop_consuming()
            except (BrokerUnavailable, *_AMQP_ERRORS) as exc:
                log.debug("could not give back prefetched chunks: %r", exc)
        self._close_quietly()
        self._forget_deliveries()
        self._orphans.clear()
        self._moved.clear()

    # -- helpers -------------------------------------------------------------------------------

    def _count(self, queue: str) -> int:
        """Ready messages in ``queue`` (0 when it does not exist)."""
        ch = self._conn.channel()
        try:
            n = int(ch.queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
        ch.close()
        return n

    def _queue_exists(self, queue: str) -> bool:
        ch = self._conn.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        ch.close()
        return True

    def _sweeps(self, fresh: bool = False, any_queue: bool = False) -> list[str]:
        """Sweeps with a chunk queue, highest priority first (the management API's
        queue list, cached 2 s); with ``any_queue``, also those with only delayed
        or dead-lettered chunks."""
        at, cached = self._sweeps_cache
        if not (fresh or any_queue or time.monotonic() - at > 2.0):
            new = [s for s in self._announced if s not in cached]
            if new:  # announced since the listing: priority order among them is the next listing's
                cached = [*cached, *new]
                self._sweeps_cache = (at, cached)
            return cached
        listing = self._management(f"/api/queues/{quote(self._vhost(), safe='')}?columns=name,arguments")
        if listing is None:
            raise BrokerUnavailable(f"the RabbitMQ management API at {self.management} does not answer; "
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
            if sweep in listed or now - at > 10.0:  # listed now, or gone (cancelled) since
                del self._announced[sweep]
            else:  # the listing can lag a moment behind a new queue
                found.append((prio, sweep))
        found.sort(key=lambda p: -p[0])
        cached = [s for _, s in found]
        self._sweeps_cache = (now, cached)
        return sorted(set(cached) | others) if any_queue else cached

    def _vhost(self) -> str:
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    def _management(self, path: str) -> Any:
        parts = urlsplit(self.url)
        req = urllib.request.Request(self.management.rstrip("/") + path)
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("RabbitMQ management API unavailable at %s: %s", self.management, exc)
            return None


def _props(headers: dict[str, Any], expiration_ms: int = 0) -> pika.BasicProperties:
    """A persistent message's properties."""
    return pika.BasicProperties(delivery_mode=2, headers=headers,
                                expiration=str(expiration_ms) if expiration_ms else None)


def _names(sweep_id: str) -> tuple[str, str, str]:
    return f"ttg.q.{sweep_id}", f"ttg.delay.{sweep_id}", f"ttg.dead.{sweep_id}"


def _ack_timed_out(exc: pika.exceptions.ChannelClosedByBroker) -> bool:
    """The server closed the channel because a delivery outlived its ``consumer_timeout``."""
    return exc.reply_code == 406 and "acknowledgement" in exc.reply_text and "timed out" in exc.reply_text


def _headers(sweep_id: str, chunk: Chunk, failures: int, last: Failure | None,
             priority: int) -> dict[str, Any]:
    return {"ttg-sweep": sweep_id, "ttg-start": chunk.start, "ttg-stop": chunk.stop,
            "ttg-failures": failures, "ttg-priority": priority,
            "ttg-last-failure": json.dumps(last.to_dict()) if last else ""}


def _split_url(url: str) -> tuple[str, str]:
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


def _safe(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
