"""The supervisor: N child processes, watched from one single-threaded loop.

The loop waits on the children's pipes and process sentinels, so it notices a
death at once. It then releases the dead child's chunk (counted as a failed
attempt: "crashed", or "timeout" when the supervisor killed it) and starts a
new child. It extends its children's leases itself (heartbeat.py), so a child
stuck in native code that holds the GIL keeps its lease, and it kills a child
whose current call has run past the sweep's timeout.

Every ``presence_seconds`` it also writes a presence beat to the result
store (presence.py: who it is, its children, what they hold), from a thread
of its own so that a slow store never delays the loop.

SIGTERM (or Ctrl-C): stop leasing, let running chunks finish for up to
``grace_seconds``, then kill what is left and release those chunks without
counting an attempt; exit status 0. Children ignore SIGINT and SIGTERM (the
supervisor decides) and die with the supervisor (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

from ..brokers.base import Broker, Lease
from ..errors import BrokerError, TtgError
from ..events import Events
from ..presence import MAX_LEASES, WorkerBeat
from ..retry import Failure
from ..settings import Settings
from .child import ChildOptions
from .heartbeat import Heartbeat
from .pace import LONG_SECONDS, Pace
from .pipe import child_main
from .presence import Presence

log = logging.getLogger(__name__)
_CTX = multiprocessing.get_context("fork")
#: how often the loop hands the presence thread a fresh description of itself (each
#: beat, every ``presence_seconds``, writes the latest)
DESCRIBE_EVERY = 0.25


@dataclass
class Slot:
    """One child process and what the supervisor knows of it."""

    number: int
    process: Any
    conn: Connection
    #: shared int64s written by the child: [index being computed + 1 (0: none)]
    beacon: memoryview
    #: the chunk the child computes, and since when (time.monotonic())
    lease: Lease | None = None
    started: float = 0.0
    #: the other chunks it holds, by token: handed to it and not started yet (leasing
    #: runs one ahead, pipe.ProxyBroker), or computed and being committed or not yet
    #: acked. A death releases them without counting an attempt.
    held: dict[str, Lease] = field(default_factory=dict)
    timeout: float | None = None
    #: why the supervisor killed it (a timeout), or None
    killed_for: Failure | None = None
    #: killed at the end of the grace period: release without counting an attempt
    killed_for_shutdown: bool = False
    #: the child said it will not come back ("drained": burst mode, no work left)
    retiring: str | None = None
    watched_index: int = 0
    watched_since: float = field(default_factory=time.monotonic)
    #: a proxied lease request waiting for a chunk: (seq, worker id, sweep id, give up at)
    wants_lease: tuple[int, str, str | None, float] | None = None


class Supervisor:
    def __init__(self, settings: Settings, options: ChildOptions, broker: Broker,
                 processes: int | None = None,
                 on_tick: Callable[[], bool] | None = None, events: Events | None = None) -> None:
        """``on_tick`` runs every tick; returning True stops the supervisor. ``events``
        hears about chunks (ttg.events), from the children too."""
        self.settings = settings
        self.options = options
        self.broker = broker
        self.processes = processes or settings.worker_count
        self.on_tick = on_tick
        self.slots: dict[int, Slot] = {}
        self.events = events or Events()
        self.heartbeat = Heartbeat(broker, self.events)
        self.pace = Pace()
        if broker.holds_leases:  # the children's chunks come through this client
            broker.set_capacity(self.processes)
        self.stopping = False
        self._stop_deadline = 0.0
        #: chunks not released while stopping, the broker being unreachable (see _release)
        self._unreleased = 0
        #: SIGTERM/SIGINT received, and acted on (by the loop, see _on_signal)
        self._signals = self._signals_handled = 0
        self.restarts = 0
        #: chunks the children finished (committed, skipped or dead-lettered)
        self.chunks_done = 0
        self.host = options.worker_id or socket.gethostname()
        #: host-pid; each child's id is host-pid-childpid
        self.worker_id = f"{self.host}-{os.getpid()}"
        self.started = time.time()
        self.presence: Presence | None = None
        self._described_at = 0.0

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (signal, on_tick, or every child drained)."""
        previous = self._install_signals()
        try:
            self._start_presence()
            for n in range(self.processes):
                self._spawn(n)
            while self.slots:
                self._step()
        finally:
            self._kill_all()
            self._restore_signals(previous)
            if self.presence is not None:
                self.presence.stop(self._beat("stopped"))

    def request_stop(self, grace: float | None = None) -> None:
        if self.stopping:
            self._stop_deadline = min(self._stop_deadline, time.monotonic())  # second request: now
            return
        self.stopping = True
        self._stop_deadline = time.monotonic() + (self.settings.grace_seconds if grace is None else grace)
        for slot in self.slots.values():
            _send(slot.conn, ("stop",))
            self._read(slot)
            if slot.lease is None and not slot.held:
                # idle (or leased a moment ago: then its chunk is released
                # uncounted when its death is handled), so no need to wait for it
                slot.killed_for_shutdown = True
                _kill(slot)

    def _step(self) -> None:
        while self._signals_handled < self._signals:
            self._signals_handled += 1
            self.request_stop()
        # short ticks while a proxied child waits for work, and under `ttg run` (on_tick), so
        # the end of a sweep is seen within 20 ms rather than 100
        tick = 0.01 if any(s.wants_lease for s in self.slots.values()) else 0.02 if self.on_tick else 0.1
        self.broker.service()
        waitables: list[Any] = [s.conn for s in self.slots.values()]
        waitables += [s.process.sentinel for s in self.slots.values()]
        ready = wait(waitables, timeout=tick)
        for slot in list(self.slots.values()):
            if slot.conn in ready:
                self._read(slot)
            if slot.process.sentinel in ready:
                self._on_exit(slot)
        self._serve_leases()
        self._check_timeouts()
        self._check_pace()
        if not (self.stopping and self.heartbeat.broker_down):  # (leases soon given up: see _release)
            self.heartbeat.beat(self.slots.values(), self._lease_lost)
        if self.stopping and time.monotonic() >= self._stop_deadline:
            for slot in self.slots.values():
                if slot.process.is_alive():
                    slot.killed_for_shutdown = True
                    _kill(slot)
        if self.on_tick is not None and not self.stopping and self.on_tick():
            self.request_stop()
        now = time.monotonic()
        if self.presence is not None and (self.stopping or now - self._described_at >= DESCRIBE_EVERY):
            self._described_at = now
            self.presence.update(self._beat("stopping" if self.stopping else "running"))

    # -- presence ------------------------------------------------------------

    def _start_presence(self) -> None:
        if self.settings.presence_seconds <= 0:
            return
        from ..stores import open_store

        settings = self.settings
        create = settings.broker_url.startswith("local://")  # as the children open it
        self.presence = Presence(lambda: open_store(settings, create=create), self._beat("running"))
        self.presence.start()

    def _beat(self, state: str) -> WorkerBeat:
        """What this supervisor says of itself now (time set when written)."""
        leases = [(x.sweep_id, x.chunk.start, x.chunk.stop) for s in self.slots.values()
                  for x in ([s.lease] if s.lease is not None else []) + list(s.held.values())]
        return WorkerBeat(self.worker_id, self.host, os.getpid(), self.started, 0.0,
                          self.settings.presence_seconds, len(self.slots), self.chunks_done,
                          tuple(sorted(leases)[:MAX_LEASES]), state)

    # -- children ------------------------------------------------------------

    def _spawn(self, number: int) -> None:
        parent_conn, child_conn = _CTX.Pipe()
        beacon = memoryview(mmap.mmap(-1, 16)).cast("q")
        proc = _CTX.Process(target=child_main, name=f"ttg-child-{number}", daemon=True,
                            args=(child_conn, beacon, self.settings, self.options, os.getpid()))
        # not in the middle of a presence write's driver call (see presence.py)
        with self.presence.quiet() if self.presence is not None else nullcontext():
            proc.start()
        child_conn.close()
        self.slots[number] = Slot(number, proc, parent_conn, beacon)

    def _read(self, slot: Slot) -> None:
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                if msg[0] == "leased":
                    slot.held.pop(msg[1].token, None)
                    slot.lease, slot.timeout = msg[1], msg[2]
                    slot.started = slot.watched_since = time.monotonic()
                    slot.watched_index = 0
                elif msg[0] == "computed":
                    if slot.lease is not None and slot.lease.token == msg[1]:
                        slot.held[msg[1]] = slot.lease
                        slot.lease = None
                        self.pace.computed(time.monotonic() - slot.started)
                elif msg[0] == "finished":
                    _forget(slot, msg[1])  # (a proxied ack_and_lease may have done it already)
                    self.chunks_done += 1
                elif msg[0] == "report":
                    self.events.chunk_report(msg[1])
                elif msg[0] == "bye":
                    slot.retiring = msg[1]
                elif msg[0] == "call":
                    self._serve_call(slot, *msg[1:])
        except (EOFError, OSError):
            pass  # the child is gone; its sentinel tells the rest

    # -- broker calls proxied for children (brokers whose leases live with a connection) --

    def _serve_call(self, slot: Slot, seq: int, method: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> None:
        if method in ("lease", "ack_and_lease"):
            if method == "ack_and_lease":  # ack, then one try for the next chunk
                try:
                    self.broker.ack(args[0])
                except TtgError as exc:
                    _send(slot.conn, ("ret", seq, False, exc))
                    return
                _forget(slot, args[0].token)
                args, kwargs = args[1:], {**kwargs, "timeout": kwargs.pop("wait", 0.0)}
            slot.wants_lease = (seq, args[0], kwargs.get("sweep_id"), time.monotonic() + kwargs["timeout"])
            self._serve_leases()
            return
        if method not in ("submit", "ack", "release", "dead_letter", "dead_letters", "stats", "cancel"):
            _send(slot.conn, ("ret", seq, False, TtgError(f"unknown broker call {method!r}")))
            return
        try:
            result = getattr(self.broker, method)(*args, **kwargs)
        except TtgError as exc:
            _send(slot.conn, ("ret", seq, False, exc))
            return
        if method in ("ack", "release", "dead_letter"):
            _forget(slot, args[0].token)
        _send(slot.conn, ("ret", seq, True, result))

    def _serve_leases(self) -> None:
        for slot in self.slots.values():
            if slot.wants_lease is None:
                continue
            seq, worker_id, sweep_id, give_up = slot.wants_lease
            if self.stopping:  # no more work: the child sees "stop" next and exits
                slot.wants_lease = None
                _send(slot.conn, ("ret", seq, True, None))
                continue
            try:
                lease = self.broker.lease(worker_id, timeout=0, sweep_id=sweep_id)
            except TtgError as exc:
                slot.wants_lease = None
                _send(slot.conn, ("ret", seq, False, exc))
                continue
            if lease is None and time.monotonic() < give_up:
                continue
            slot.wants_lease = None
            if lease is not None:  # ours to release, uncounted, if the child dies before it starts it
                slot.held[lease.token] = lease
            _send(slot.conn, ("ret", seq, True, lease))

    def _on_exit(self, slot: Slot) -> None:
        self._read(slot)  # messages sent just before dying
        slot.process.join()
        code = slot.process.exitcode
        del self.slots[slot.number]
        slot.conn.close()
        self._release_dead(slot, code)
        if self.stopping or slot.retiring in ("drained", "stop"):
            return
        if code != 0 or slot.retiring == "recycle":
            self.restarts += 1
            self._spawn(slot.number)

    def _release_dead(self, slot: Slot, code: int | None) -> None:
        """Release what a dead child held: the chunk it computed counts a failed
        attempt (unless killed for shutdown); the others (not started yet, or
        being committed) do not."""
        for lease in slot.held.values():
            self._release(lease, None)
        slot.held.clear()
        if slot.lease is None:
            return
        failure = None
        if not slot.killed_for_shutdown:
            index = slot.beacon[0] - 1 if slot.beacon[0] > 0 else None
            failure = slot.killed_for or Failure("crashed", describe_exit(code, index), index)
            log.warning("child %s died on %s %s: %s", slot.number, slot.lease.sweep_id,
                        slot.lease.chunk, failure.reason)
            self.events.chunk_failed(slot.lease, failure)
        self._release(slot.lease, failure)

    def _release(self, lease: Lease, failure: Failure | None) -> None:
        if self.stopping and self.heartbeat.broker_down:
            # each try would wait out the broker client's reconnect backoff (~15 s) and
            # hold up the stop: its lease lapses instead, and the chunk comes back (an
            # attempt counted if the broker was back meanwhile: nothing is tried to know)
            self._unreleased += 1
            return
        try:
            self.broker.release(lease, failure=failure)
            self.heartbeat.broker_down = False
        except BrokerError as exc:  # the lease will expire and come back anyway
            log.error("could not release %s %s: %s", lease.sweep_id, lease.chunk, exc)
            self.heartbeat.broker_down = True

    def _check_pace(self) -> None:
        """Lease ahead while chunks are short, not once they are long (pace.py). Only
        a broker whose leases come through this supervisor leases ahead."""
        if not self.broker.holds_leases:
            return
        now = time.monotonic()
        if not self.pace.update(now - s.started for s in self.slots.values() if s.lease is not None):
            return
        if self.pace.long:
            log.info("a chunk took %g s or more: leasing one at a time", LONG_SECONDS)
        else:
            log.info("chunks take under %g s again: leasing ahead", LONG_SECONDS / 2)
        self.broker.set_capacity(self.processes, long_chunks=self.pace.long)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.lease is None or slot.timeout is None or slot.killed_for is not None:
                continue
            current = slot.beacon[0]
            if current != slot.watched_index:
                slot.watched_index, slot.watched_since = current, now
            elif current and now - slot.watched_since > slot.timeout:
                index = current - 1
                slot.killed_for = Failure("timeout", f"index {index} ran longer than the "
                                          f"{slot.timeout:g} s timeout", index)
                log.warning("killing child %s: %s", slot.number, slot.killed_for.reason)
                _kill(slot)

    def _lease_lost(self, slot: Slot, lease: Lease, exc: TtgError) -> None:
        self._read(slot)
        if slot.lease is None or slot.lease.token != lease.token:
            return  # the child finished the chunk while we were extending it
        log.warning("child %s lost its lease on %s %s: %s; stopping it", slot.number,
                    lease.sweep_id, lease.chunk, exc)
        slot.lease = None  # not ours to release any more
        _kill(slot)

    def _kill_all(self) -> None:
        for slot in list(self.slots.values()):
            slot.killed_for_shutdown = True
            _kill(slot)
            slot.process.join(5)
            self._read(slot)
            self._release_dead(slot, slot.process.exitcode)
            self.slots.pop(slot.number, None)
        if self._unreleased:
            log.error("%d chunk(s) not released: the broker cannot be reached; they go back to the "
                      "queue when their leases lapse (within %g s)", self._unreleased,
                      self.broker.lease_seconds)

    # -- signals -------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        handler = self._on_signal
        return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted here: the loop stops at its next step. A handler runs between any
        # two bytecodes, so acting here could interleave with a pipe message being
        # read or written, or with a broker call, and corrupt it.
        log.warning("received %s: finishing current chunks (grace %.0f s)",
                    signal.Signals(signum).name, self.settings.grace_seconds)
        self._signals += 1

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def describe_exit(code: int | None, index: int | None) -> str:
    where = f" at index {index}" if index is not None else ""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = {"SIGSEGV": " (segmentation fault)", "SIGKILL": " (killed; out of memory?)",
                "SIGABRT": " (aborted)", "SIGBUS": " (bus error)"}.get(name, "")
        return f"the process was killed by {name}{hint}{where}"
    return f"the process exited with status {code}{where} (os._exit or a crash in native code)"


def _forget(slot: Slot, token: str) -> None:
    """The child is done with this chunk (acked, released or dead-lettered)."""
    if slot.lease is not None and slot.lease.token == token:
        slot.lease = None
    slot.held.pop(token, None)


def _kill(slot: Slot) -> None:
    try:
        os.kill(slot.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _send(conn: Connection, msg: tuple[Any, ...]) -> None:
    try:
        conn.send(msg)
    except (OSError, ValueError):
        pass  # a dead child's pipe; its sentinel tells the rest
