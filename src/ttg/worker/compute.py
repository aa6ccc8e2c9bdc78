"""Running the user's function over the points of one chunk, into its records.

The hot loop does as little as it can per point: call, append, and time the
point unless the function is so fast that reading the clock would cost more
than the work. It writes the index being computed into shared memory
(``beacon``) so the supervisor knows which point a crash or a hang happened
on, and it stops early when a ``deadline`` (chunk_size="auto") has passed,
leaving the rest for the caller to hand back.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core import context
from ..core.chunking import MAX_AUTO_PIECE, Chunk
from ..core.codec import pack
from ..core.records import ChunkRecords, error_of
from ..spaces import Space
from . import aio
from .task import Task, batch_input, rows_to_columns

Beacon = Any  # a memoryview of int64: [index + 1 being computed (0: none), calls started]


#: Points timed one by one before deciding whether the function is fast.
PROBE = 32
#: Below this mean duration a point is "fast": timing each would cost more than the
#: work (a clock read is ~50 ns), so the rest of the chunk is timed as a whole.
FAST_NS = 20_000


def compute_part(fn: Callable[[Any], Any], space: Space | None, task: Task, part: Chunk, attempt: int,
                 worker_id: str, beacon: Beacon) -> ChunkRecords:
    """The records of ``part`` of ``task``'s chunk (``space``: None for rows carried
    in the message), with ``ttg.context()`` telling the function where it is. With
    chunk_size="auto" it may cover less than ``part`` (its deadline passed, or
    ``MAX_AUTO_PIECE`` points were computed): the caller hands the rest back."""
    if task.auto is not None and not task.batched:
        part = Chunk(part.start, min(part.stop, part.start + MAX_AUTO_PIECE))
    offset = part.start - task.chunk.start
    if task.rows is not None:
        points: Any = task.rows[offset:offset + len(part)]
    else:
        assert space is not None
        points = batch_input(space, part) if task.batched else space.points(part.start, part.stop)
    tries: dict[int, int] = {}  # index -> tries, for points tried more than once
    asynchronous = aio.is_async(fn)
    call = functools.partial(aio.run_batch, fn) if asynchronous and task.batched else fn
    if task.retries is not None and not (asynchronous and not task.batched):  # (aio tries its own)
        call = task.retries.wrap(call, beacon, tries)
    deadline = None if task.auto is None else time.perf_counter() + task.auto
    timed_out: set[int] = set()
    concurrent = asynchronous and not task.batched and task.concurrency > 1
    context.enter(task.sweep_id, attempt, worker_id, beacon, concurrent=concurrent)
    try:
        if task.batched:
            batch = rows_to_columns(points) if task.rows is not None else points
            values, durations, errors = run_batch(call, batch, len(part), part.start, beacon)
        elif asynchronous:
            values, durations, errors, timed_out = aio.run_points(
                fn, points, part.start, beacon, deadline=deadline, concurrency=task.concurrency,
                timeout=task.timeout, retries=task.retries, tries=tries)
        else:
            values, durations, errors = run_points(call, points, part.start, beacon, deadline)
    finally:
        context.leave()
    n = len(values)
    statuses = None
    if errors:
        statuses = ["ok"] * n
        for k in errors:
            statuses[k] = "timeout" if k in timed_out else "error"
    params = task.rows[offset:offset + n] if task.rows is not None else None
    if task.batched and tries:  # one call for the whole batch: every point took its tries
        tries = dict.fromkeys(range(part.start, part.start + n), tries[part.start])
    return ChunkRecords(part.start, part.start + n, values, durations, worker_id, attempt, statuses, errors,
                        params, task.code, {i - part.start: k for i, k in tries.items()} or None)


def run_points(fn: Callable[[Any], Any], points: Sequence[Any], start: int, beacon: Beacon,
               deadline: float | None = None) -> tuple[list[Any], list[int],
                                                        dict[int, tuple[str, str, str]] | None]:
    """Call ``fn`` on each point; stop soon after ``deadline`` (a
    ``time.perf_counter()`` value) has passed, leaving the rest to the caller.

    Returns values, durations in nanoseconds, and errors by offset (None when
    there were none). Exceptions raised by ``fn`` (SystemExit and KeyboardInterrupt too: a
    child ignores SIGINT, so one can only come from the function) become
    that point's error. The first ``PROBE`` points are timed one by one; if they
    average under ``FAST_NS``, the rest is timed as a stretch and each of its
    points gets the stretch's mean duration.
    """
    values: list[Any] = []
    durations: list[int] = []
    errors: dict[int, tuple[str, str, str]] = {}
    limit = float("inf") if deadline is None else deadline * 1e9
    n = len(points)
    t0 = time.perf_counter_ns()
    k = _timed(fn, points, 0, min(n, PROBE), start, beacon, limit, values, durations, errors)
    if k < n and time.perf_counter_ns() <= limit:
        if (time.perf_counter_ns() - t0) / k < FAST_NS:
            _stretch(fn, points, k, start, beacon, limit, values, durations, errors)
        else:
            _timed(fn, points, k, n, start, beacon, limit, values, durations, errors)
    beacon[0] = 0
    return values, durations, errors or None


def _timed(fn: Callable[[Any], Any], points: Sequence[Any], first: int, stop: int, start: int,
           beacon: Beacon, limit: float, values: list[Any], durations: list[int],
           errors: dict[int, tuple[str, str, str]]) -> int:
    """Points ``first..stop-1``, each timed; returns where it stopped."""
    add_value, add_duration = values.append, durations.append
    now = time.perf_counter_ns
    t0 = now()
    for k in range(first, stop):
        beacon[0] = start + k + 1
        try:
            value = fn(points[k])
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            errors[k] = error_of(exc)
            value = None
        t1 = now()
        add_value(value)
        add_duration(t1 - t0)
        t0 = t1
        if t1 > limit:
            return k + 1
    return stop


def _stretch(fn: Callable[[Any], Any], points: Sequence[Any], first: int, start: int, beacon: Beacon,
             limit: float, values: list[Any], durations: list[int],
             errors: dict[int, tuple[str, str, str]]) -> None:
    """Points ``first..`` of a fast function: no clock read per point (the deadline
    is checked every 1,024 points); each gets the stretch's mean duration."""
    add_value = values.append
    now = time.perf_counter_ns
    t0 = now()
    k = first
    for k in range(first, len(points)):
        beacon[0] = start + k + 1
        try:
            add_value(fn(points[k]))
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            errors[k] = error_of(exc)
            add_value(None)
        if not k & 1023 and now() > limit:
            break
    count = len(values) - first
    if count:
        durations.extend([(now() - t0) // count] * count)


def run_batch(fn: Callable[[Any], Any], batch: Any, n: int, start: int,
              beacon: Beacon) -> tuple[list[Any], list[int], dict[int, tuple[str, str, str]] | None]:
    """Call a vectorized ``fn`` once with all points; it must return ``n`` results
    (a sequence, an array, or a dict of equal-length columns)."""
    beacon[0] = start + 1
    t0 = time.perf_counter_ns()
    try:
        out = fn(batch)
        values = _as_rows(out, n)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        err = error_of(exc)
        beacon[0] = 0
        return [None] * n, [0] * n, dict.fromkeys(range(n), err)
    per = (time.perf_counter_ns() - t0) // n
    beacon[0] = 0
    return values, [per] * n, None


def _as_rows(out: Any, n: int) -> list[Any]:
    if isinstance(out, dict):
        cols = {k: _tolist(v) for k, v in out.items()}
        if any(len(v) != n for v in cols.values()):
            raise ValueError(f"a batched function must return {n} results per column")
        names = list(cols)
        return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
    values = _tolist(out)
    if len(values) != n:
        raise ValueError(f"a batched function returned {len(values)} results for {n} points; "
                         "return exactly one result per point")
    return values


def _tolist(v: Any) -> list[Any]:
    tolist = getattr(v, "tolist", None)
    return list(tolist() if callable(tolist) else v)


def make_storable(rec: ChunkRecords) -> None:
    """Encode the records once; a value msgpack cannot store becomes that point's error."""
    try:
        rec.encode()
        return
    except (TypeError, ValueError, OverflowError):
        pass
    for k, v in enumerate(rec.values):
        try:
            pack(v)
        except (TypeError, ValueError, OverflowError) as exc:
            message = f"the result cannot be stored: {exc}"
            if inspect.iscoroutine(v) or inspect.isasyncgen(v):
                message = (f"the function returned {type(v).__name__} {getattr(v, '__qualname__', '')} "
                           "instead of a value: define it with async def (TTG awaits those), and return "
                           "a value, not a generator")
                if inspect.iscoroutine(v):
                    v.close()  # never awaited: say so once, here, not in a warning at exit
            rec.values[k] = None
            if rec.statuses is None:
                rec.statuses = ["ok"] * len(rec)
            rec.statuses[k] = "error"
            rec.errors = rec.errors or {}
            rec.errors[k] = (type(exc).__name__, message, "")
    rec.encode()
