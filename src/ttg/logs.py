"""Log output for the CLI: the human format (default) or one JSON object per line.

Only the CLI calls ``setup``. Library modules log with ``logging.getLogger``
as usual. The JSON lines carry ``sweep``, ``chunk`` and ``worker``: from the
record's ``extra`` when a call gives them, else from the context a worker
child sets while it handles a chunk (``set_chunk``; worker.events.LogContext),
else null. Keys: time (ISO 8601, UTC), level, logger, message, sweep, chunk,
worker, pid, and exc (the traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("human", "json")
HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_sweep: ContextVar[str | None] = ContextVar("ttg_log_sweep", default=None)
_chunk: ContextVar[str | None] = ContextVar("ttg_log_chunk", default=None)
_worker: ContextVar[str | None] = ContextVar("ttg_log_worker", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "sweep": getattr(record, "sweep", None) or _sweep.get(),
            "chunk": getattr(record, "chunk", None) or _chunk.get(),
            "worker": getattr(record, "worker", None) or _worker.get(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: int, fmt: str = "human") -> None:
    """Configure the root logger once for a CLI command (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(HUMAN))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    set_worker(f"{socket.gethostname()}-{os.getpid()}")


def set_worker(worker_id: str) -> None:
    _worker.set(worker_id)


def set_chunk(sweep_id: str | None, chunk: str | None) -> None:
    """The sweep and chunk this process handles now (None: none), for the JSON lines."""
    _sweep.set(sweep_id)
    _chunk.set(chunk)
