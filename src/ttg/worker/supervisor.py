"""The supervisor: N child processes, watched from one single-threaded loop.

The loop waits on the children's pipes and process sentinels, so it notices a
death at once. It then releases the dead child's chunk (counted as a failed
attempt: "crashed", or "timeout" when the supervisor killed it) and starts a
new child. It extends its children's leases itself (heartbeat.py), so a child
stuck in native code that holds the GIL keeps its lease, and it kills a child
whose current call has run past the sweep's timeout. Children whose broker
relays their calls through it (``Broker.for_child``) are served here too
(worker/proxy.py), and the broker's connection is kept alive every tick
(``Broker.service``).

Every ``presence_seconds`` it also writes a presence beat (beats.py: who it
is, its children, what they hold), from a thread of its own so that a slow
store never delays the loop.

SIGTERM (or Ctrl-C): stop leasing, let running chunks finish for up to
``grace_seconds``, then kill what is left and release those chunks without
counting an attempt; exit status 0. Children ignore SIGINT and SIGTERM (the
supervisor decides) and die with the supervisor (PR_SET_PDEATHSIG).

One step of the loop (``step``) can be driven on its own, with an injected
clock and children that run in threads (ttg.testing), so its decisions are
tested in-process.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any, Protocol

from ..brokers.base import Broker, Lease
from ..core.clock import SYSTEM, Clock
from ..core.codec import Codec
from ..core.retry import Failure
from ..errors import BrokerError, DiskFull, TtgError
from ..settings import Settings
from ..stores.presence import MAX_LEASES, WorkerBeat
from .beats import BeatWriter
from .child import ChildOptions
from .events import Events
from .heartbeat import Heartbeat
from .pace import Pace
from .process import ForkLauncher
from .protocol import Bye, Call, Computed, Finished, Leased, Refused, Report, Stop, ToSupervisor
from .proxy import ProxyServer
from .slots import ChildProcess, Slot

log = logging.getLogger(__name__)
#: how often the loop hands the presence thread a fresh description of itself (each
#: beat, every ``presence_seconds``, writes the latest)
DESCRIBE_EVERY = 0.25
#: a sweep whose chunks the children left to other workers within this many seconds is
#: named in the presence beat (WorkerBeat.refusing)
REFUSING_SECONDS = 60.0


class Launcher(Protocol):
    def start(self, number: int, conn: Connection, beacon: memoryview) -> ChildProcess:
        """Start child ``number`` on its end of the pipe (the launcher owns ``conn``
        from now on) with its beacon."""


class Supervisor:
    def __init__(self, settings: Settings, options: ChildOptions, broker: Broker,
                 processes: int | None = None,
                 on_tick: Callable[[], bool] | None = None, events: Events | None = None,
                 *, launcher: Launcher | None = None, clock: Clock = SYSTEM) -> None:
        """``on_tick`` runs every tick; returning True stops the supervisor. ``events``
        hears about chunks (worker/events.py), from the children too. ``launcher``
        starts the children (forked processes by default)."""
        self.settings = settings
        self.options = options
        self.broker = broker
        self.processes = processes or settings.worker_count
        self.on_tick = on_tick
        self.launcher: Launcher = launcher or ForkLauncher(settings, options)
        self.clock = clock
        self.slots: dict[int, Slot] = {}
        self.events = events or Events()
        self.heartbeat = Heartbeat(broker, self.events)
        self.codec = Codec(settings.secret)
        self.proxy = ProxyServer(broker, clock)
        self.pace = Pace()
        broker.set_capacity(self.processes)
        self.stopping = False
        self._stop_deadline = 0.0
        #: chunks not released while stopping, the broker being unreachable (see _release)
        self._unreleased = 0
        #: chunks not released because the disk is full: tried again as the worker stops
        self._unreleased_full: list[tuple[Lease, Failure | None]] = []
        #: SIGTERM/SIGINT received, and acted on (by the loop, see _on_signal)
        self._signals = self._signals_handled = 0
        self.restarts = 0
        #: chunks the children finished (committed, skipped or dead-lettered)
        self.chunks_done = 0
        self.host = options.worker_id or socket.gethostname()
        #: host-pid; each child's id is host-pid-childpid
        self.worker_id = f"{self.host}-{os.getpid()}"
        self.started = clock.time()
        self.presence: BeatWriter | None = None
        #: why a child said nothing can go on (the disk is full), or None
        self.fatal: str | None = None
        #: sweep -> chunks of it the children finished (the sweep worked on last, last)
        self.worked: dict[str, int] = {}
        #: sweep -> (why its chunks are left to other workers, when that last happened)
        self.refusing: dict[str, tuple[str, float]] = {}
        self._described_at = 0.0

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (signal, on_tick, or every child drained)."""
        previous = self._install_signals()
        try:
            self.start()
            while self.slots:
                self.step()
        finally:
            self.close()
            self._restore_signals(previous)

    def start(self) -> None:
        """Start the presence beats and the children."""
        self._start_presence()
        for n in range(self.processes):
            self._spawn(n)

    def close(self) -> None:
        """Kill what is left, release its chunks uncounted, write the last beat."""
        self._kill_all()
        if self.presence is not None:
            self.presence.stop(self._beat("stopped"))

    def request_stop(self, grace: float | None = None) -> None:
        now = self.clock.monotonic()
        if self.stopping:
            self._stop_deadline = min(self._stop_deadline, now)  # second request: now
            return
        self.stopping = True
        self._stop_deadline = now + (self.settings.grace_seconds if grace is None else grace)
        for slot in self.slots.values():
            # an idle child sees it within its poll and exits, giving back any chunk it
            # got meanwhile (killing it then would leave that chunk to lapse, counted)
            slot.send(Stop())

    def step(self) -> None:
        """One turn of the loop: wait a tick for the children, then act on what happened."""
        while self._signals_handled < self._signals:
            self._signals_handled += 1
            self.request_stop()
        # short ticks while a proxied child waits for work, and under `ttg run` (on_tick), so
        # that the end of a sweep is seen soon
        tick = 0.01 if self.proxy.waiting else 0.02 if self.on_tick else 0.1
        self.broker.service()
        waitables: list[Any] = [s.conn for s in self.slots.values()]
        waitables += [s.process.sentinel for s in self.slots.values()]
        ready = wait(waitables, timeout=tick)
        for slot in list(self.slots.values()):
            if slot.conn in ready:
                self._read(slot)
            if slot.process.sentinel in ready:
                self._on_exit(slot)
        self.proxy.serve(self.slots, stopping=self.stopping)
        self._check_timeouts()
        self._check_pace()
        if not (self.stopping and self.heartbeat.broker_down):  # (leases soon given up: see _release)
            self.heartbeat.beat(self.slots.values(), self._lease_lost)
        if self.stopping and self.clock.monotonic() >= self._stop_deadline:
            for slot in self.slots.values():
                if slot.process.is_alive():
                    slot.killed_for_shutdown = True
                    slot.kill()
        if self.on_tick is not None and not self.stopping and self.on_tick():
            self.request_stop()
        now = self.clock.monotonic()
        if self.presence is not None and (self.stopping or now - self._described_at >= DESCRIBE_EVERY):
            self._described_at = now
            self.presence.update(self._beat("stopping" if self.stopping else "running"))

    # -- presence ------------------------------------------------------------

    def _start_presence(self) -> None:
        if self.settings.presence_seconds <= 0:
            return
        from ..stores import open_presence

        settings = self.settings
        create = settings.broker_url.startswith("local://")  # as the children open the store
        self.presence = BeatWriter(lambda: open_presence(settings, create=create), self._beat("running"),
                                 self.clock)
        self.presence.start()

    def _beat(self, state: str) -> WorkerBeat:
        """What this supervisor says of itself now (time set when written)."""
        leases = [(x.sweep_id, x.chunk.start, x.chunk.stop) for s in self.slots.values() for x in s.leases()]
        lately = self.clock.monotonic() - REFUSING_SECONDS
        refusing = tuple(sorted((s, why) for s, (why, at) in self.refusing.items() if at >= lately))
        return WorkerBeat(self.worker_id, self.host, os.getpid(), self.started, 0.0,
                          self.settings.presence_seconds, len(self.slots), self.chunks_done,
                          tuple(sorted(leases)[:MAX_LEASES]), state, refusing,
                          tuple(list(self.worked.items())[-MAX_LEASES:]))

    # -- children ------------------------------------------------------------

    def _spawn(self, number: int) -> None:
        parent_conn, child_conn = Pipe()
        beacon = memoryview(mmap.mmap(-1, 16)).cast("q")
        # not in the middle of a presence write's driver call (see beats.py)
        with self.presence.quiet() if self.presence is not None else nullcontext():
            proc = self.launcher.start(number, child_conn, beacon)
        self.slots[number] = Slot(number, proc, parent_conn, beacon, watched_since=self.clock.monotonic())

    def _read(self, slot: Slot) -> None:
        try:
            while slot.conn.poll():
                self._take(slot, slot.conn.recv())
        except (EOFError, OSError):
            pass  # the child is gone; its sentinel tells the rest

    def _take(self, slot: Slot, msg: ToSupervisor) -> None:
        match msg:
            case Leased(lease, timeout, loop):
                slot.computing(lease, timeout, self.clock.monotonic(), loop=loop)
            case Computed(token):
                if slot.computed(token):
                    self.pace.computed(self.clock.monotonic() - slot.started)
            case Finished(token):
                held = next((x for x in slot.leases() if x.token == token), None)
                if held is not None:
                    self.worked[held.sweep_id] = self.worked.pop(held.sweep_id, 0) + 1  # (newest last)
                slot.forget(token)  # (a proxied ack_and_lease may have done it already)
                self.chunks_done += 1
            case Report(report):
                self.events.chunk_report(report)
            case Refused(sweep_id, reason, token):
                slot.forget(token)  # given back: not to extend, nor to release again
                self.refusing[sweep_id] = (reason, self.clock.monotonic())
            case Bye(reason, detail):
                slot.retiring = reason
                if reason == "fatal" and self.fatal is None:
                    log.error("stopping: %s", detail)
                    self.fatal = detail
                    self.request_stop()
            case Call():
                self.proxy.handle(slot, msg, self.slots, stopping=self.stopping)

    def _on_exit(self, slot: Slot) -> None:
        self._read(slot)  # messages sent just before dying
        slot.process.join()
        code = slot.process.exitcode
        del self.slots[slot.number]
        slot.conn.close()
        self.proxy.forget(slot)
        self._release_dead(slot, code)
        if self.stopping or slot.retiring in ("drained", "stop", "fatal"):
            return
        # anything else is replaced: recycled, stopped by an outage ("restart"), or gone
        # without a word (a crash, whatever its exit status: os._exit(0) is one too)
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
        # neither a shutdown nor an outage ("restart": the broker or the store failed;
        # "fatal": the disk is full) is the chunk's fault
        if not slot.killed_for_shutdown and slot.retiring not in ("restart", "fatal"):
            index = slot.beacon[0] - 1 if slot.beacon[0] > 0 else None
            failure = slot.killed_for or Failure("crashed", describe_exit(code, index), index)
            # with signing, the failure is signed as the chunk's next one a supervisor saw: only
            # such a history may ever turn into a final record (retry.decide)
            lease = slot.lease
            before = self.codec.signed_failures(lease.sweep_id, lease.chunk, lease.last_failure) or 0
            failure = self.codec.sign_failure(lease.sweep_id, lease.chunk, failure, before + 1)
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
        except DiskFull:  # the embedded broker's disk: tried again before the worker exits
            self._unreleased_full.append((lease, failure))

    def _release_when_room(self) -> None:
        """Give back what a full disk kept from being released, trying for the grace
        period: were its lease left to lapse, the chunk would be charged an attempt
        for the disk. What is still unreleased then is taken over when its lease
        lapses (counted once, as a lost lease)."""
        end = self.clock.monotonic() + self.settings.grace_seconds
        while self._unreleased_full:
            lease, failure = self._unreleased_full[0]
            try:
                self.broker.release(lease, failure=failure)
                self._unreleased_full.pop(0)
            except (DiskFull, BrokerError):
                if self.clock.monotonic() >= end:
                    log.error("%d chunk(s) not released: the disk stayed full; other workers take them "
                              "over when their leases lapse", len(self._unreleased_full))
                    return
                time.sleep(0.5)

    def _check_pace(self) -> None:
        """Tell the broker when chunks turn long or short again (pace.py): a broker
        that leases ahead stops doing so while chunks are long."""
        now = self.clock.monotonic()
        if self.pace.update(now - s.started for s in self.slots.values() if s.lease is not None):
            self.broker.set_capacity(self.processes, long_chunks=self.pace.long)

    def _check_timeouts(self) -> None:
        now = self.clock.monotonic()
        for slot in self.slots.values():
            if slot.lease is None or slot.timeout is None or slot.killed_for is not None:
                continue
            current, tries = slot.beacon[0], slot.beacon[1]  # each try is timed on its own
            if current != slot.watched_index or tries != slot.watched_tries:
                slot.watched_index, slot.watched_tries, slot.watched_since = current, tries, now
            elif current and now - slot.watched_since > slot.timeout:
                index = current - 1
                reason = (f"index {index} (the point last started) held the event loop for longer than "
                          f"{slot.timeout:g} s, the timeout and a margin" if slot.loop else
                          f"index {index} ran longer than the {slot.timeout:g} s timeout")
                slot.killed_for = Failure("timeout", reason, index)
                log.warning("killing child %s: %s", slot.number, slot.killed_for.reason)
                slot.kill()

    def _lease_lost(self, slot: Slot, lease: Lease, exc: TtgError) -> None:
        self._read(slot)
        if slot.lease is None or slot.lease.token != lease.token:
            return  # the child finished the chunk while we were extending it
        log.warning("child %s lost its lease on %s %s: %s; stopping it", slot.number,
                    lease.sweep_id, lease.chunk, exc)
        slot.lease = None  # not ours to release any more
        slot.kill()

    def _kill_all(self) -> None:
        for slot in list(self.slots.values()):
            slot.killed_for_shutdown = True
            slot.kill()
            slot.process.join(5)
            self._read(slot)
            self._release_dead(slot, slot.process.exitcode)
            self.slots.pop(slot.number, None)
        self._release_when_room()
        if self._unreleased:
            log.error("%d chunk(s) not released: the broker cannot be reached; they go back to the "
                      "queue when their leases lapse (within %g s)", self._unreleased,
                      self.broker.lease_seconds)

    # -- signals -------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
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

    def signal(self) -> None:
        """As a SIGTERM: the loop starts stopping at its next step (for tests and embedders)."""
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
