"""A worker child process: how the supervisor starts one, and its body.

The child opens its own store and the broker client its broker gives it
(``Broker.for_child``: a connection of its own, or calls relayed to the
supervisor, worker/proxy.py), runs the worker loop (child.py), and tells the
supervisor why it stops before it exits.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TextIO

from ..brokers import Broker, open_child_broker
from ..core.codec import Codec
from ..errors import DiskFull, TtgError
from ..settings import Settings
from ..stores import ResultStore, open_store
from .child import ChildLoop, ChildOptions
from .devices import device_of, use
from .events import Events, Fanout, LogContext, Tally
from .protocol import ChildPipe
from .proxy import ProxyBroker
from .slots import ChildProcess

log = logging.getLogger(__name__)
_CTX = multiprocessing.get_context("fork")

#: exit statuses of a child that stopped as asked (anything else is a crash)
CLEAN_EXITS = ("stop", "drained", "recycle")


class ForkLauncher:
    """Starts children as forked processes running ``child_main``."""

    def __init__(self, settings: Settings, options: ChildOptions) -> None:
        self.settings, self.options = settings, options

    def start(self, number: int, conn: Connection, beacon: memoryview) -> ChildProcess:
        proc = _CTX.Process(target=child_main, name=f"ttg-child-{number}", daemon=True,
                            args=(conn, beacon, self.settings, self.options, os.getpid(), number))
        proc.start()
        conn.close()  # the child's end, in this process: EOF is seen when the child dies
        return proc


def child_main(conn: Connection, beacon: memoryview, settings: Settings, options: ChildOptions,
               parent: int, number: int = 0) -> None:
    """The body of child ``number`` of a worker (forked by the supervisor)."""
    _die_with_parent(parent)
    device = device_of(options.devices, options.children_per_device, number)
    if device is not None:
        use(device)
    _own_streams(options.prints_to_stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # host-supervisor-child: the embedded broker reads the pids to expire a dead worker's leases
    host = options.worker_id or socket.gethostname()
    options = replace(options, worker_id=f"{host}-{parent}-{os.getpid()}")
    pipe = ChildPipe(conn)

    def body() -> str:
        # the embedded store must exist already for a networked broker: this may be another machine
        create = settings.broker_url.startswith("local://")
        broker = open_child_broker(settings, lambda: ProxyBroker(pipe, settings.lease_seconds,
                                                                 options.poll_seconds))
        with broker, open_store(settings, create=create) as store:
            return run_child(broker, store, Codec(settings.secret), options, pipe, beacon)

    reason, detail = "error", ""
    try:
        reason, detail = child_outcome(body)
    finally:
        try:
            pipe.bye(reason, detail)
            conn.close()
        except (OSError, ValueError):
            pass
    os._exit(0 if reason in CLEAN_EXITS else 3)


def child_outcome(body: Callable[[], str]) -> tuple[str, str]:
    """Run a child's body; returns why it stopped and the detail its Bye carries. A
    full disk stops the whole worker ("fatal"); any other TTG error (the broker or
    the store unreachable as the child starts) has the child replaced ("restart"),
    after a pause so that it does not spin."""
    try:
        return body(), ""
    except DiskFull as exc:
        return "fatal", str(exc)
    except TtgError as exc:
        log.error("worker child stopped: %s", exc)
        time.sleep(1.0)
        return "restart", str(exc)


def run_child(broker: Broker, store: ResultStore, codec: Codec, options: ChildOptions, pipe: ChildPipe,
              beacon: memoryview) -> str:
    """Run the worker loop of one child; returns why it stopped."""
    return ChildLoop(broker, store, codec, options, pipe, beacon, child_events(options, pipe)).run()


def child_events(options: ChildOptions, pipe: ChildPipe) -> Events:
    """What a child tells: its log context, and a summary of each chunk when asked."""
    context = LogContext(options.worker_id)
    return Fanout(context, Tally(pipe.report)) if options.report_chunks else context


class _Tolerant(io.TextIOBase):
    """A child's stdout or stderr: what the function prints goes where it always went,
    but a closed or broken stream (``ttg run ... | head``) never fails a point:
    the output is dropped instead."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.stream, "encoding", "utf-8"))


def _own_streams(prints_to_stderr: bool) -> None:
    """``prints_to_stderr`` (``ttg run``): the function's prints go to stderr, so that
    stdout carries only what ``ttg`` itself says."""
    if prints_to_stderr:
        try:
            os.dup2(2, 1)
        except OSError:
            pass
    sys.stdout = _Tolerant(sys.stdout)
    sys.stderr = _Tolerant(sys.stderr)


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the ppid check below and lease expiry cover us
    if os.getppid() != parent:
        os._exit(1)
