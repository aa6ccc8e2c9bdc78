"""A worker child process: how the supervisor starts one, and its body.

The child opens its own store and the broker client its broker gives it
(``Broker.for_child``: a connection of its own, or calls relayed to the
supervisor, worker/proxy.py), runs the worker loop (child.py), and tells the
supervisor why it stops before it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import replace
from multiprocessing.connection import Connection

from ..brokers import Broker, open_child_broker
from ..core.codec import Codec
from ..errors import TtgError
from ..settings import Settings
from ..stores import ResultStore, open_store
from .child import ChildLoop, ChildOptions
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
                            args=(conn, beacon, self.settings, self.options, os.getpid()))
        proc.start()
        conn.close()  # the child's end, in this process: EOF is seen when the child dies
        return proc


def child_main(conn: Connection, beacon: memoryview, settings: Settings, options: ChildOptions,
               parent: int) -> None:
    """The body of a worker child process (forked by the supervisor)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # host-supervisor-child: the embedded broker reads the pids to expire a dead worker's leases
    host = options.worker_id or socket.gethostname()
    options = replace(options, worker_id=f"{host}-{parent}-{os.getpid()}")
    pipe = ChildPipe(conn)
    reason = "error"
    try:
        # the embedded store must exist already for a networked broker: this may be another machine
        create = settings.broker_url.startswith("local://")
        broker = open_child_broker(settings, lambda: ProxyBroker(pipe, settings.lease_seconds,
                                                                 options.poll_seconds))
        with broker, open_store(settings, create=create) as store:
            reason = run_child(broker, store, Codec(settings.secret), options, pipe, beacon)
    except TtgError as exc:
        log.error("worker child stopped: %s", exc)
        time.sleep(1.0)  # do not spin when the broker or store is down; the supervisor restarts us
        reason = "restart"
    finally:
        try:
            pipe.bye(reason)
            conn.close()
        except (OSError, ValueError):
            pass
    os._exit(0 if reason in CLEAN_EXITS else 3)


def run_child(broker: Broker, store: ResultStore, codec: Codec, options: ChildOptions, pipe: ChildPipe,
              beacon: memoryview) -> str:
    """Run the worker loop of one child; returns why it stopped."""
    return ChildLoop(broker, store, codec, options, pipe, beacon, child_events(options, pipe)).run()


def child_events(options: ChildOptions, pipe: ChildPipe) -> Events:
    """What a child tells: its log context, and a summary of each chunk when asked."""
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
