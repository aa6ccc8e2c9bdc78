"""Async functions: ``async def f(point)`` computed on an event loop of the child's,
up to ``concurrency`` points of a chunk at once (``--concurrency``, for functions
that mostly wait: HTTP APIs, model endpoints), each with the whole timeout.

One loop per child process, made on its first async chunk and kept for the
child's life, so a client the function keeps between points (an HTTP session)
stays on one loop. Points start in index order, ``concurrency`` lanes taking the
next one as each finishes; each point records its own value, duration, error
and tries, so there is one result per index whatever order they finish in. With
``chunk_size="auto"`` no point starts after the deadline and those started
finish: what is computed is always a prefix of the part.

Timeouts: the child times each try itself (``asyncio.timeout``); a point past it
is cancelled and recorded as ``timeout``, and never tried again in place (as a
sync timeout, which the supervisor enforces by killing the child). A timeout
counts wall time: with several points at once, it includes the time the others
spend computing without awaiting (CPU-bound functions want concurrency 1). The
supervisor's watchdog still guards the loop: a task on it bumps the beacon's
second word every ``PULSE`` seconds, so the watchdog fires only when the loop
stopped turning for ``watchdog_seconds`` (a function that blocks it with a sync
call), never during a long await or a retry's back-off. That kill, or a crash, is
charged to the point last started (the beacon's index); the split of the chunk
(core/retry.py) then finds the real culprit, since a healthy point alone commits
ok.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core import context
from ..core.failures import Retries
from ..core.records import error_of

_loop: asyncio.AbstractEventLoop | None = None

#: errors by offset: (type, message, traceback)
Errors = dict[int, tuple[str, str, str]]
#: how often the loop tells the supervisor's watchdog it still turns, in seconds
PULSE = 0.1


def is_async(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine: an ``async def`` function, a method, a
    ``functools.partial`` or a ``functools.wraps`` decorator of one, or an object
    whose ``__call__`` is one (or a partial of such an object)."""
    while True:
        if inspect.iscoroutinefunction(fn):
            return True
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "__wrapped__"):
            fn = inspect.unwrap(fn)
        else:
            call = type(fn).__call__ if callable(fn) and not inspect.isroutine(fn) else None
            return call is not None and inspect.iscoroutinefunction(call)


def watchdog_seconds(timeout: float) -> float:
    """How long the supervisor lets an async chunk's loop stand still: the timeout
    and a margin, so that a point's own timeout always acts first."""
    return timeout + max(1.0, timeout / 4)


def loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for async functions."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)  # for clients made with get_event_loop() as a module loads
    return _loop


def run_points(fn: Callable[[Any], Any], points: Sequence[Any], start: int, beacon: Any, *,
               deadline: float | None, concurrency: int, timeout: float | None, retries: Retries | None,
               tries: dict[int, int]) -> tuple[list[Any], list[int], Errors | None, set[int]]:
    """Await ``fn`` on the points, up to ``concurrency`` at once. Returns values,
    durations (ns), errors by offset (None: none), and the offsets that timed out.
    ``deadline``: a ``time.perf_counter()`` after which no point starts; ``tries``:
    filled with index -> tries for points tried more than once."""
    return loop().run_until_complete(
        _points(fn, points, start, beacon, deadline, concurrency, timeout, retries, tries))


async def _points(fn: Callable[[Any], Any], points: Sequence[Any], start: int, beacon: Any,
                  deadline: float | None, concurrency: int, timeout: float | None, retries: Retries | None,
                  tries: dict[int, int]) -> tuple[list[Any], list[int], Errors | None, set[int]]:
    n = len(points)
    values: list[Any] = [None] * n
    durations = [0] * n
    errors: Errors = {}
    timed_out: set[int] = set()
    limit = math.inf if deadline is None else deadline
    started = 0

    async def lane() -> None:
        nonlocal started
        while started < n and (started == 0 or time.perf_counter() <= limit):
            k = started
            started += 1
            beacon[0] = start + k + 1
            context.at(start + k)  # this lane's task: ttg.context() of the point it awaits
            t0 = time.perf_counter_ns()
            values[k], error, n_tries = await _one(fn, points[k], timeout, retries)
            durations[k] = time.perf_counter_ns() - t0
            if error is not None:
                errors[k] = error
                if error[0] == "timeout":
                    timed_out.add(k)
            if n_tries > 1:
                tries[start + k] = n_tries

    async def pulse() -> None:
        while True:
            beacon[1] += 1
            await asyncio.sleep(PULSE)

    alive = asyncio.ensure_future(pulse())
    try:
        await asyncio.gather(*(lane() for _ in range(min(concurrency, n))))
    finally:
        alive.cancel()
    beacon[0] = 0
    return values[:started], durations[:started], errors or None, timed_out


async def _one(fn: Callable[[Any], Any], point: Any, timeout: float | None,
               retries: Retries | None) -> tuple[Any, tuple[str, str, str] | None, int]:
    """One point: (value, error or None, tries). Each try has the whole timeout; a
    timeout ends the point (error type "timeout"), an exception the policy lists is
    tried again after its back-off."""
    n = 1
    while True:
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await fn(point), None, n
        except (Exception, SystemExit, KeyboardInterrupt, asyncio.CancelledError) as exc:
            if deadline.expired():
                return None, ("timeout", f"it ran longer than the {timeout:g} s timeout", ""), n
            if retries is None or n > retries.retries or not retries.matches(exc):
                return None, error_of(exc), n
        await asyncio.sleep(retries.delay(n))
        n += 1


def run_batch(fn: Callable[[Any], Any], batch: Any) -> Any:
    """A batched async function's one call (its timeout is the supervisor's, as for a
    sync batch)."""
    return loop().run_until_complete(fn(batch))
