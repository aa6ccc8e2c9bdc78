"""Local workers in a process of their own, for ``ttg.run`` and ``ttg.start``.

The process that calls ``ttg.run`` may hold threads: a notebook that called
scikit-learn once holds an OpenMP pool, and a child forked from it deadlocks on
the first lock a thread held at the fork (every point then ran into its
timeout). So the supervisor runs in a new interpreter (``main`` below), which
forks its children itself. It is started with
``subprocess``, not ``multiprocessing``: it never imports the caller's script,
so a script needs no ``if __name__ == "__main__":`` for it.

What it needs comes through its stdin, a pipe from the caller, as JSON: the
settings, the sweep, the caller's ``sys.path``, and each function the workers
cannot import (core/funcref.py), by value (cloudpickle, base64) with its
fingerprint. Only those functions are unpickled, and only because the caller
handed ``ttg.run`` such a callable (the opt-in); nothing of it goes through the
broker or over a network. It writes one JSON line to
its stdout as it exits: the run's outcome, or the error that ended it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import errors
from ..core import fingerprint, funcref
from ..core.sweep import Sweep
from ..errors import TtgError
from ..settings import Settings

#: a function given by value: (cloudpickle of it, its fingerprint as a dict)
ByValue = tuple[bytes, dict[str, Any]]


class LocalWorkers:
    """The process running a sweep's local workers, seen from the caller."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._result: dict[str, Any] | None = None

    @classmethod
    def spawn(cls) -> LocalWorkers:
        """Start the process; it loads TTG while the caller submits the sweep, then
        waits for ``begin`` (or ``abandon``)."""
        import ttg

        env = dict(os.environ)  # the same TTG as the caller's, wherever that came from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(ttg.__file__).parents[1]),
                                                        env.get("PYTHONPATH")) if p)
        # a session of its own: a Ctrl-C in the caller's terminal reaches the caller, which
        # passes it on once (wait); a second one would cut the grace period short
        proc = subprocess.Popen([sys.executable, "-c", "from ttg.client.background import main; main()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                                env=env)
        return cls(proc)

    def begin(self, settings: Settings, sweep: Sweep, functions: Mapping[str, ByValue]) -> None:
        """Run ``sweep``: hand the process what it needs."""
        spec = {"settings": settings.to_record(), "sweep": sweep.to_record(), "path": list(sys.path),
                "parent": os.getpid(),
                "functions": {ref: [base64.b64encode(blob).decode(), code]
                              for ref, (blob, code) in functions.items()}}
        self._send(json.dumps(spec).encode())

    def abandon(self) -> None:
        """Nothing to run: the process exits at once."""
        self._send(b"")
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _send(self, blob: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(blob)
            self.proc.stdin.close()
        except OSError:  # it died at once: wait() reports how
            pass

    def wait(self, timeout: float | None = None) -> str:
        """The run's outcome once the process has exited (subprocess.TimeoutExpired
        before); raises the TtgError that ended it."""
        if self._result is None:
            self.proc.wait(timeout)  # its stdout holds one line: it never fills the pipe
            assert self.proc.stdout is not None
            with self.proc.stdout:
                out = self.proc.stdout.read()
            self._result = _last_json(out) or {
                "error": f"the local workers' process exited with status {self.proc.returncode} without "
                         "saying why (see its messages above)", "type": "TtgError"}
        if "error" in self._result:
            kind = getattr(errors, str(self._result.get("type")), TtgError)
            raise (kind if isinstance(kind, type) and issubclass(kind, TtgError) else TtgError)(
                self._result["error"])
        return str(self._result["outcome"])

    def running(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """As Ctrl-C: the workers finish their chunks (within the grace period) and stop."""
        if self.running():
            self.proc.send_signal(signal.SIGINT)


def _last_json(out: bytes) -> dict[str, Any] | None:
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def main() -> None:
    """The process's body: read what to run, run it, say how it ended."""
    import cloudpickle  # what a run needs is loaded before it is asked for (spawn)

    from .. import logs
    from ..brokers import open_broker  # noqa: F401
    from ..core.fingerprint import Code
    from ..stores import open_store  # noqa: F401
    from .local import run_local  # noqa: F401

    data = sys.stdin.buffer.read()  # from the process that started this one, through a pipe
    if not data:
        return  # abandoned: nothing to run
    spec = json.loads(data)
    sys.path[:] = spec["path"]
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed here goes to stderr: stdout carries the one line
    settings = Settings.from_record(spec["settings"])
    logs.setup(logging.WARNING, settings.log_format)

    for ref, (blob, code) in spec["functions"].items():
        # a callable the caller handed ttg.run by value, through this process's own pipe
        fn = cloudpickle.loads(base64.b64decode(blob))  # opt-in: not importable, given by value
        funcref.register_local(ref, fn)
        fingerprint.remember(fn, Code.from_dict(code))
    parent = int(spec["parent"])
    try:
        outcome = run(settings, Sweep.from_record(spec["sweep"]), lambda: os.getppid() != parent)
        result: dict[str, Any] = {"outcome": outcome}
    except TtgError as exc:
        result = {"error": str(exc), "type": type(exc).__name__}
    out.write(json.dumps(result) + "\n")
    out.flush()


def run(settings: Settings, sweep: Sweep, orphaned: Callable[[], bool]) -> str:
    """Run local workers on ``sweep`` until it ends, or until ``orphaned()`` (the
    caller is gone); returns the outcome."""
    from ..brokers import open_broker
    from ..stores import open_store
    from .local import run_local

    with open_broker(settings) as broker, open_store(settings) as store:
        return run_local(settings, sweep, broker, store, stop=orphaned).outcome

