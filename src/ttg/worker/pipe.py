"""The child's end of the pipe to its supervisor, and the child process's entry point.

Over the pipe a child reports what it holds (so the supervisor can extend
and, on its death, release its lease) and learns when to stop. For brokers
whose leases live with a connection (``Broker.holds_leases``: RabbitMQ), the
child has no broker connection of its own: ``ProxyBroker`` sends each broker
call to the supervisor, which runs it on the connection it keeps alive.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from ..brokers import holds_leases, open_broker
from ..brokers.base import Broker, DeadLetter, Lease, QueueStats
from ..chunking import Chunk
from ..codec import Codec
from ..errors import TtgError
from ..events import ChunkReport, Events, Fanout, Tally
from ..retry import Failure
from ..settings import Settings
from ..stores import open_store
from .child import ChildLoop, ChildOptions
from .pace import LONG_SECONDS

log = logging.getLogger(__name__)


class ChildPipe:
    """Reports to the supervisor, hears "stop", and carries proxied broker calls."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._stop = False
        self._seq = 0
        #: replies that arrived while waiting for another: seq -> ("ret", seq, ok, value)
        self._replies: dict[int, tuple[Any, ...]] = {}

    def leased(self, lease: Lease, timeout: float | None) -> None:
        self.conn.send(("leased", replace(lease, body=b""), timeout))

    def computed(self, lease: Lease) -> None:
        self.conn.send(("computed", lease.token))

    def finished(self, lease: Lease) -> None:
        self.conn.send(("finished", lease.token))

    def report(self, report: ChunkReport) -> None:
        self.conn.send(("report", report))

    def stop_requested(self) -> bool:
        while not self._stop and self.conn.poll():
            self._take(self.conn.recv())
        return self._stop

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``broker.method(*args, **kwargs)`` in the supervisor; its exceptions re-raise here."""
        return self.result(self.send_call(method, *args, **kwargs))

    def send_call(self, method: str, *args: Any, **kwargs: Any) -> int:
        """Ask for ``broker.method(*args, **kwargs)`` without waiting; ``result`` collects it."""
        self._seq += 1
        self.conn.send(("call", self._seq, method, args, kwargs))
        return self._seq

    def result(self, seq: int) -> Any:
        """The reply to call ``seq`` (waiting for it); its exceptions re-raise here."""
        while seq not in self._replies:
            self._take(self.conn.recv())
        msg = self._replies.pop(seq)
        if msg[2]:
            return msg[3]
        raise msg[3]

    def _take(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "stop":
            self._stop = True
        elif msg[0] == "ret":
            self._replies[msg[1]] = msg


class ProxyBroker(Broker):
    """The supervisor's broker, seen from a child (only brokers that hold leases in
    a connection are proxied; today that is RabbitMQ, whose traits it carries).

    Leasing runs one chunk ahead: with each chunk it hands out, it asks the
    supervisor for the next one without waiting (with the previous chunk's ack),
    so the answer is in the pipe by the time this chunk is done, and a child
    never waits for its supervisor between two chunks. A child thus holds up to
    three chunks: the one it computes, the one it commits and the next; the
    supervisor releases those it had not started, uncounted, if it dies. After
    a chunk that took ``pace.LONG_SECONDS`` or more it asks only when it is done."""

    holds_leases = True
    dedupes = False
    exact_leased = False

    def __init__(self, pipe: ChildPipe, lease_seconds: float, ahead_wait: float = 0.5) -> None:
        """``ahead_wait``: how long the supervisor may wait for a chunk to answer a
        request made ahead (the child's poll period)."""
        super().__init__(lease_seconds)
        self.pipe = pipe
        self.ahead_wait = ahead_wait
        #: the request for the next chunk, sent ahead: its call number
        self._ahead: int | None = None
        #: when the last chunk was handed out (time.monotonic()), None after none was
        self._handed: float | None = None

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        return int(self.pipe.call("submit", sweep_id, list(items), priority=priority))

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None) -> Lease | None:
        return self._next(None, worker_id, timeout, sweep_id)

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None) -> Lease | None:
        return self._next(done, worker_id, 0.0, sweep_id)

    def _next(self, done: Lease | None, worker_id: str, timeout: float, sweep_id: str | None) -> Lease | None:
        """The chunk asked for ahead, else one asked for now (``done`` acked first
        either way); then the request for the one after goes out, unless the last
        chunk took ``pace.LONG_SECONDS`` or more (pace.py)."""
        short = self._handed is None or time.monotonic() - self._handed < LONG_SECONDS
        self._handed = None
        got: Lease | None = None
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            got = self.pipe.result(ahead)  # usually there already
        if got is None:  # nothing was ready ahead: ask now and wait, as without it
            if done is not None:
                got = self.pipe.call("ack_and_lease", done, worker_id, sweep_id=sweep_id)
            else:
                got = self.pipe.call("lease", worker_id, timeout=timeout, sweep_id=sweep_id)
            done = None
            if got is None:
                return None
        self._handed = time.monotonic()
        if not short:
            if done is not None:  # acked now, not with the next request
                self.pipe.call("ack", done)
            return got
        if done is not None:
            self._ahead = self.pipe.send_call("ack_and_lease", done, worker_id, sweep_id=sweep_id,
                                              wait=self.ahead_wait)
        else:
            self._ahead = self.pipe.send_call("lease", worker_id, timeout=self.ahead_wait, sweep_id=sweep_id)
        return got

    def extend(self, lease: Lease) -> Lease:
        raise NotImplementedError("the supervisor extends leases")

    def ack(self, lease: Lease) -> None:
        self.pipe.call("ack", lease)

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        self.pipe.call("release", lease, failure=failure, delay=delay)

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self.pipe.call("dead_letter", lease, reason)

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        got: list[DeadLetter] = self.pipe.call("dead_letters", sweep_id)
        return got

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        got: QueueStats = self.pipe.call("stats", sweep_id)
        return got

    def cancel(self, sweep_id: str) -> int:
        return int(self.pipe.call("cancel", sweep_id))


def child_main(conn: Connection, beacon: memoryview, settings: Settings, options: ChildOptions,
               parent: int) -> None:
    """The body of a worker child process (forked by the supervisor)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # host-supervisor-child: the embedded broker reads the pids to expire a dead worker's leases
    host = options.worker_id or socket.gethostname()
    options = replace(options, worker_id=f"{host}-{parent}-{os.getpid()}")
    codec = Codec(settings.secret)
    pipe = ChildPipe(conn)
    reason = "error"
    try:
        create = settings.broker_url.startswith("local://")  # else this may be another machine
        broker: Broker
        if holds_leases(settings.broker_url):
            broker = ProxyBroker(pipe, settings.lease_seconds, options.poll_seconds)
        else:
            broker = open_broker(settings)
        with broker, open_store(settings, create=create) as store:
            reason = ChildLoop(broker, store, codec, options, pipe, beacon, _events(options, pipe)).run()
    except TtgError as exc:
        log.error("worker child stopped: %s", exc)
        time.sleep(1.0)  # do not spin when the broker or store is down; the supervisor restarts us
        reason = "restart"
    finally:
        try:
            conn.send(("bye", reason))
            conn.close()
        except (OSError, ValueError):
            pass
    os._exit(0 if reason in ("stop", "drained", "recycle") else 3)


def _events(options: ChildOptions, pipe: ChildPipe) -> Events:
    from ..logs import LogContext

    context = LogContext(options.worker_id)
    return Fanout(context, Tally(pipe.report)) if options.report_chunks else context


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the ppid check below and lease expiry cover us
    if os.getppid() != parent:
        os._exit(1)
