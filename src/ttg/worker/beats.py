"""The supervisor's presence beats (stores/presence.py), written from a thread of its own.

The supervisor's loop only hands over what it knows (``update``: a frozen
WorkerBeat without its time); a daemon thread stamps it with the wall clock
and writes it to the result store every ``presence_seconds``, at once when
the state changes, and one last time ("stopped") at a clean exit. A store
write can block for a long while (an SQLite busy timeout, a PostgreSQL
reconnect with backoff), and the supervisor's loop must keep extending its
children's leases meanwhile, hence the thread, which has its own store
connection. A failed write is logged and tried again at the next beat; it
never stops the worker.

The supervisor forks children while this thread runs. A fork while the
thread is inside the store driver's C code could copy a global lock held
(SQLite's static mutexes), and a child that then used the driver would hang;
so a store call holds ``fork_lock``, and ``Supervisor._spawn`` forks inside
``quiet()``, which takes it. It waits for it at most ``FORK_WAIT`` seconds: a
call that takes longer is waiting on the network or sleeping between retries,
which holds no global lock, and the children should not wait behind it (nor,
while that one call lasts, the next fork at all).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from ..core.clock import SYSTEM, Clock
from ..errors import TtgError
from ..stores.presence import PresenceStore, WorkerBeat

log = logging.getLogger(__name__)

#: How long a fork waits for a presence write in progress (see the module docstring).
FORK_WAIT = 1.0
#: How long a clean exit waits for the last ("stopped") beat to be written.
STOP_WAIT = 5.0


class BeatWriter:
    def __init__(self, open_store: Callable[[], PresenceStore], first: WorkerBeat,
                 clock: Clock = SYSTEM) -> None:
        """``open_store`` opens this thread's own connection (called in the thread,
        again after a failure); ``first`` is the beat to write at start."""
        self.open_store = open_store
        self.clock = clock
        self.interval = first.interval
        self.fork_lock = threading.Lock()
        self._current = first
        self._poke = threading.Event()
        self._done = False
        self._store: PresenceStore | None = None
        self._failing = False
        self._stuck = False
        self._thread = threading.Thread(target=self._run, name="ttg-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No store call runs in the thread while this holds (up to FORK_WAIT; see
        the module docstring): fork inside it."""
        got = self.fork_lock.acquire(timeout=0 if self._stuck else FORK_WAIT)
        self._stuck = not got
        try:
            yield
        finally:
            if got:
                self.fork_lock.release()

    def update(self, beat: WorkerBeat) -> None:
        """What the next beat says (its time is set when it is written); a new state
        is written at once. Called by the supervisor's loop: never blocks."""
        changed = beat.state != self._current.state
        self._current = beat
        if changed:
            self._poke.set()

    def stop(self, last: WorkerBeat) -> None:
        """Write ``last`` (state "stopped") and end the thread, waiting at most STOP_WAIT."""
        self._current = last
        self._done = True
        self._poke.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT)
            if self._thread.is_alive():
                log.warning("could not write this worker's last presence beat within %g s", STOP_WAIT)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                done = self._done
                self._write(self._current)
                if done:
                    return
                self._poke.wait(self.interval)
                self._poke.clear()
        finally:
            self._close()

    def _write(self, beat: WorkerBeat) -> None:
        with self.fork_lock:
            try:
                if self._store is None:
                    self._store = self.open_store()
                self._store.beat(replace(beat, beat=self.clock.time()))
            except Exception as exc:  # best effort: presence must never stop the worker
                self._close()
                # once per outage at warning, then quietly until a write succeeds again
                log.log(logging.DEBUG if self._failing else logging.WARNING,
                        "could not write this worker's presence to the result store (will retry): %s", exc,
                        exc_info=not isinstance(exc, TtgError))
                self._failing = True
                return
        if self._failing:
            log.warning("presence beats written again")
            self._failing = False

    def _close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # a broken connection: nothing left to release
                pass
