"""A chunk message as the worker reads it, and the points it hands the function."""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Lease
from ..core import funcref
from ..core.chunking import Chunk
from ..core.failures import Retries, parse_max_failures
from ..core.sweep import MAX_CONCURRENCY
from ..errors import BadMessage, ConfigError
from ..spaces import Space


@dataclass(frozen=True)
class Task:
    """A decoded chunk message."""

    sweep_id: str
    chunk: Chunk
    fn: str
    space: dict[str, Any] | None
    #: a big space spec travels as its digest (core/sweep.py, ``INLINE_SPEC_BYTES``)
    space_ref: str | None
    rows: list[Any] | None
    batched: bool
    timeout: float | None
    max_attempts: int
    auto: float | None
    raw: dict[str, Any]
    #: the digest of the code that may compute it (None: queued by an older TTG)
    code: str | None = None
    #: files besides the function's module that the digest covers (core/fingerprint.py)
    code_paths: tuple[str, ...] = ()
    #: tries of a point in place after an exception (None: one try)
    retries: Retries | None = None
    #: stop the sweep once this many of its points failed (core/failures.py)
    max_failures: str | None = None
    #: points of an async function a child runs at once (worker/aio.py)
    concurrency: int = 1
    #: the SHA-256 of the shipped function's pickle (client/ship.py); None: imported
    shipped: str | None = None

    @classmethod
    def parse(cls, body: Any, lease: Lease) -> Task:
        try:
            chunk = Chunk(int(body["start"]), int(body["stop"]))
            ref, code = body.get("space_ref"), body.get("code")
            paths = tuple(str(p) for p in body.get("code_paths") or ())
            retries = None if body.get("retries") is None else Retries.from_message(body["retries"])
            task = cls(str(body["sweep"]), chunk, str(body["fn"]), body.get("space"),
                       None if ref is None else str(ref), body.get("rows"),
                       bool(body.get("batched")), _seconds(body.get("timeout")),
                       int(body.get("max_attempts") or 3), _seconds(body.get("auto")), body,
                       None if code is None else str(code), paths, retries,
                       parse_max_failures(body.get("max_failures")), _concurrency(body.get("concurrency")),
                       _digest(body.get("shipped")))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise BadMessage(f"malformed chunk message ({type(exc).__name__}: {exc}).") from exc
        if task.sweep_id != lease.sweep_id or task.chunk != lease.chunk:
            raise BadMessage(f"message names sweep {task.sweep_id} {task.chunk} but was queued as "
                             f"{lease.sweep_id} {lease.chunk} (replayed into another sweep?).")
        if (task.shipped is None) == funcref.is_shipped(task.fn):
            raise BadMessage("chunk message's function and its 'shipped' digest disagree (a shipped "
                             "function needs both, an imported one neither).")
        if [task.space, task.space_ref, task.rows].count(None) != 2:
            raise BadMessage("chunk message needs exactly one of 'space', 'space_ref' or 'rows'.")
        if not (isinstance(task.space, dict) or isinstance(task.rows, list) or task.space_ref):
            raise BadMessage("chunk message's 'space' is not a mapping, or its 'rows' not a list.")
        if task.space is not None and task.space.get("kind") == "file":
            # the rows of a file travel in the message: a worker never opens a path it is sent
            raise BadMessage("chunk message names a file to read; the rows of a file space travel in the "
                             "message, a worker opens no path it is sent.")
        return task

    def body_for(self, piece: Chunk) -> dict[str, Any]:
        body = dict(self.raw, start=piece.start, stop=piece.stop)
        if self.rows is not None:
            body["rows"] = self.rows[piece.start - self.chunk.start:piece.stop - self.chunk.start]
        return body


def _digest(v: Any) -> str | None:
    """A SHA-256 of a message: absent, or 64 lowercase hex digits."""
    if v is None:
        return None
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(f"{v!r} is not a SHA-256 digest")
    return v


def _concurrency(v: Any) -> int:
    """Points at once of a message: absent (1) or an integer from 1 to MAX_CONCURRENCY."""
    if v is None:
        return 1
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency {v!r} is not an integer from 1 to {MAX_CONCURRENCY}")
    return v


def _seconds(v: Any) -> float | None:
    """A duration of a message: None, or a positive finite number (ValueError otherwise)."""
    if v is None:
        return None
    seconds = float(v)
    if not 0 < seconds < math.inf:
        raise ValueError(f"{v!r} is not a positive number of seconds")
    return seconds


def batch_input(space: Space, part: Chunk) -> Any:
    """A chunk's points for a batched function: an int array for a range space,
    else a dict of column arrays."""
    import numpy as np

    cols = space.columns(part.start, part.stop)
    if space.kind == "range":
        return np.asarray(next(iter(cols.values())))
    return {name: np.asarray(values) for name, values in cols.items()}


def rows_to_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    names = list(rows[0]) if rows else []
    return {name: np.asarray([r.get(name) for r in rows]) for name in names}


def rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
