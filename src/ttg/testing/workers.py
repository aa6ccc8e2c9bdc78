"""Worker children that run in threads of the test's process, so a supervisor
(worker/supervisor.py) can be driven in-process, step by step, with an
in-memory broker and an injected clock.

``ThreadLauncher(broker, open_store, options)`` is a supervisor's launcher: each
child runs the real worker loop (worker/child.py) in a thread, on a real pipe
to the supervisor, with the broker given (shared, as a forked child's own
client would be) and a store of its own. ``kill()`` is SIGKILL as far as the
supervisor and the backends can tell: the child is dead at once (its sentinel
fires, exit code -9) and every call it makes afterwards fails without
effect. A function that raises ``Killed`` dies the same way, mid-chunk, at
the index it was computing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..brokers.base import Broker
from ..core.codec import Codec
from ..stores.base import ResultStore
from ..worker.child import ChildOptions
from ..worker.process import CLEAN_EXITS, child_outcome, run_child
from ..worker.protocol import ChildPipe
from ..worker.slots import ChildProcess
from .faults import FaultyBroker, FaultyStore


class Killed(BaseException):
    """Raised by a test's function: its child dies there, as by SIGKILL."""


class _Dead(BaseException):
    """A call made by a child already killed."""


class ThreadChild:
    """A child in a thread (satisfies worker.slots.ChildProcess)."""

    _pids = iter(range(4_000_000, 5_000_000))

    def __init__(self, target: Callable[[ThreadChild], str], name: str) -> None:
        self.pid: int | None = next(self._pids)
        self._read, self._write = os.pipe()
        self.exitcode: int | None = None
        self.killed = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, args=(target,), name=name, daemon=True)

    @property
    def sentinel(self) -> int:
        return self._read

    def start(self) -> None:
        self._thread.start()

    def _main(self, target: Callable[[ThreadChild], str]) -> None:
        code = 3
        try:
            code = 0 if target(self) in CLEAN_EXITS else 3
        except (Killed, _Dead):
            code = -signal.SIGKILL
        finally:
            self._exit(code)

    def _exit(self, code: int) -> None:
        with self._lock:
            if self.exitcode is None:
                self.exitcode = code
                os.close(self._write)
                self._done.set()

    def kill(self) -> None:
        self.killed = True
        self._exit(-signal.SIGKILL)

    def check(self) -> None:
        """Every call a killed child makes dies here."""
        if self.killed:
            raise _Dead()

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)


class ThreadLauncher:
    def __init__(self, broker: Broker | Callable[[], Broker], open_store: Callable[[], ResultStore],
                 options: ChildOptions, codec: Codec | None = None) -> None:
        """``broker``: the client every child shares (the in-memory broker), or how to
        open one of its own (a broker whose client is not for several threads)."""
        self.broker, self.open_store, self.options = broker, open_store, options
        self.codec = codec or Codec()
        self.children: list[ThreadChild] = []

    def start(self, number: int, conn: Connection, beacon: memoryview) -> ChildProcess:
        def body(child: ThreadChild) -> str:
            pipe = _GuardedPipe(conn, child)
            own = self.broker if isinstance(self.broker, Broker) else self.broker()
            broker, store = FaultyBroker(own), FaultyStore(self.open_store())
            broker.faults.guard = store.faults.guard = child.check
            try:
                loop = (broker, store, self.codec, self.options, pipe, beacon)
                reason, detail = child_outcome(lambda: run_child(*loop))
                pipe.bye(reason, detail)
                return reason
            finally:
                store.inner.close()
                conn.close()

        child = ThreadChild(body, f"ttg-thread-child-{number}")
        self.children.append(child)
        child.start()
        return child


class _GuardedPipe(ChildPipe):
    """The child's end of its pipe: nothing more goes out once it is dead."""

    def __init__(self, conn: Connection, child: ThreadChild) -> None:
        super().__init__(conn)
        self.child = child

    def send(self, msg: Any) -> None:
        self.child.check()
        super().send(msg)
