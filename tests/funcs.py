"""Importable functions for the tests (workers import them as tests.funcs:NAME).

Functions that misbehave on purpose take the index from the point (``x`` for
range spaces). Functions that count executions append one line per call to
the file named by the TTG_TEST_COUNTER environment variable.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any


def square(x: int) -> int:
    return x * x


def noop(x: Any) -> None:
    return None


def add(p: dict[str, Any]) -> float:
    return sum(v for v in p.values() if isinstance(v, int | float))


def as_dict(p: Any) -> dict[str, Any]:
    return {"double": p * 2 if isinstance(p, int | float) else None, "text": str(p)}


def sleep_ms(x: int) -> int:
    time.sleep(0.001)
    return x


def slow(x: int) -> int:
    time.sleep(0.02)
    return x


def fail_on_multiples_of_7(x: int) -> int:
    if x % 7 == 0:
        raise ValueError(f"{x} is a multiple of 7")
    return x


def exit_on_13(x: int) -> int:
    if x == 13:
        os._exit(1)
    return x


def segfault_on_13(x: int) -> int:
    if x == 13:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return x


def hang_on_13(x: int) -> int:
    if x == 13:
        time.sleep(3600)
    return x


def counted(x: int) -> int:
    """Sleeps 2 ms and records each execution (for resume tests)."""
    path = os.environ["TTG_TEST_COUNTER"]
    with open(path, "a") as fh:
        fh.write(f"{x}\n")
    time.sleep(0.002)
    return x


def counted_slow(x: int) -> int:
    path = os.environ["TTG_TEST_COUNTER"]
    with open(path, "a") as fh:
        fh.write(f"{x}\n")
    time.sleep(0.05)
    return x


def batched_square(xs: Any) -> Any:
    return xs * xs


def batched_sum(cols: dict[str, Any]) -> Any:
    return cols["a"] + cols["b"]


def _count(x: Any) -> None:
    path = os.environ.get("TTG_TEST_COUNTER")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{x}\n")


def fail_on_7_unless_fixed(x: int) -> int:
    """Counts executions; raises on multiples of 7 unless TTG_TEST_FIXED=1 (for `ttg retry`)."""
    _count(x)
    if x % 7 == 0 and os.environ.get("TTG_TEST_FIXED") != "1":
        raise ValueError(f"{x} is a multiple of 7")
    return x


def sys_exit_on_13(x: int) -> int:
    if x == 13:
        raise SystemExit(3)
    return x


def unstorable_on_13(x: int) -> Any:
    """Index 13 returns a value msgpack cannot store."""
    return object() if x == 13 else x


def clashing(x: int) -> dict[str, Any]:
    """A dict result whose keys clash with the table's own columns."""
    return {"x": -x, "status": "mine", "value": x * 10}


def exit_on_row_13(row: dict[str, Any]) -> Any:
    """For file spaces: the row whose ``x`` is 13 kills its process."""
    if row["x"] == 13:
        os._exit(1)
    return row["x"] * 2


def exit_on_13_unless_fixed(x: int) -> int:
    if x == 13 and os.environ.get("TTG_TEST_FIXED") != "1":
        os._exit(1)
    return x


def counted_20ms(x: int) -> int:
    """Sleeps 20 ms; records each execution when TTG_TEST_COUNTER is set (multi-host tests:
    one counter file per host)."""
    _count(x)
    time.sleep(0.02)
    return x


def exit0_on_13(x: int) -> int:
    """Exits with status 0 at index 13: an unannounced exit is a crash whatever its status."""
    if x == 13:
        os._exit(0)
    return x


def prints(x: int) -> int:
    print(f"point {x} computed, and here is a line of output about it")
    return x


def big_result(x: int) -> str:
    """About 2 kB per point: fills a small disk quickly."""
    return f"{x:08d}" * 256


def counted_i(p: dict[str, Any]) -> int:
    """``counted`` for a grid point: records its ``i``."""
    return counted(int(p["i"]))


def with_context(p: Any) -> dict[str, Any]:
    """What ``ttg.context()`` says about the point (any space kind)."""
    import ttg

    ctx = ttg.context()
    assert ctx is not None
    return {"ctx_index": ctx.index, "ctx_attempt": ctx.attempt, "ctx_sweep": ctx.sweep, "ctx_seed": ctx.seed,
            "ctx_worker": ctx.worker, "ctx_draw": float(ctx.rng().random())}


def context_attempt_exit_on_13(x: int) -> int:
    """Index 13 kills its process on its chunk's first attempt; returns the attempt."""
    import ttg

    ctx = ttg.context()
    assert ctx is not None and ctx.index == x
    if x == 13 and ctx.attempt == 1:
        os._exit(1)
    return ctx.attempt


def batched_seeds(xs: Any) -> Any:
    """A batched function: each point's seed, from the batch's first index."""
    import ttg

    ctx = ttg.context()
    assert ctx is not None
    return [ctx.seed_of(ctx.index + k) for k in range(len(xs))]


_tries: dict[Any, int] = {}


def flaky_twice(x: int) -> int:
    """Raises ConnectionResetError (a ConnectionError) on its first two tries of each
    point in this process, then returns; counts every try."""
    _count(x)
    _tries[x] = _tries.get(x, 0) + 1
    if _tries[x] <= 2:
        raise ConnectionResetError(f"try {_tries[x]} of {x}")
    return x * 10


def slow_flaky_twice(x: int) -> int:
    """Each try takes 0.4 s; the first two of each point raise TimeoutError."""
    _count(x)
    time.sleep(0.4)
    _tries[x] = _tries.get(x, 0) + 1
    if _tries[x] <= 2:
        raise TimeoutError(f"try {_tries[x]} of {x}")
    return x


def value_error(x: int) -> int:
    _count(x)
    raise ValueError(f"{x} is wrong")


def fails_from_100(x: int) -> int:
    """Fails on every index from 100 on (the first chunks of a sweep succeed)."""
    _count(x)
    if x >= 100:
        raise RuntimeError(f"{x} fails")
    return x


_in_flight = 0
_most_in_flight = 0


async def async_wait(x: int) -> int:
    """Awaits 50 ms; counts its executions, and notes in TTG_TEST_FLIGHT (a line per
    point: pid, index, ttg.context()'s index, the most points this process had in
    flight at once so far) how many of its calls ran at the same time."""
    import asyncio

    import ttg

    global _in_flight, _most_in_flight
    _count(x)
    _in_flight += 1
    _most_in_flight = max(_most_in_flight, _in_flight)
    try:
        await asyncio.sleep(0.05)
    finally:
        _in_flight -= 1
    ctx = ttg.context()
    with open(os.environ["TTG_TEST_FLIGHT"], "a") as fh:
        fh.write(f"{os.getpid()} {x} {ctx.index if ctx else -1} {_most_in_flight}\n")
    return x * 3


async def async_misbehaves(x: int) -> int:
    """Index 3 awaits past any timeout, 5 raises SystemExit, 7 blocks the event loop
    for 3 s (a sync call), 9 fails twice with ConnectionError then returns; others
    return x * 3. Counts every try."""
    import asyncio

    _count(x)
    if x == 3:
        await asyncio.sleep(30)
    if x == 5:
        raise SystemExit(4)
    if x == 7:
        time.sleep(3)
    if x == 9:
        _tries[x] = _tries.get(x, 0) + 1
        if _tries[x] <= 2:
            raise ConnectionResetError(f"try {_tries[x]} of {x}")
    await asyncio.sleep(0.01)
    return x * 3


async def async_batched(xs: Any) -> Any:
    import asyncio

    await asyncio.sleep(0.01)
    return xs * 3


def which_gpu(x: int) -> dict[str, Any]:
    """The devices this process sees (worker/devices.py), and its pid; 20 ms a point."""
    time.sleep(0.02)
    return {"pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "hip": os.environ.get("HIP_VISIBLE_DEVICES")}


async def async_slow_flaky(x: int) -> int:
    """Each try awaits 0.6 s; the first try of each point in this process raises
    ConnectionResetError. Counts every try."""
    import asyncio

    _count(x)
    await asyncio.sleep(0.6)
    _tries[("slow", x)] = _tries.get(("slow", x), 0) + 1
    if _tries[("slow", x)] == 1:
        raise ConnectionResetError(f"try 1 of {x}")
    return x


async def async_context_in_threads(x: int) -> dict[str, Any]:
    """ttg.context() from a thread of asyncio.to_thread (which carries the context) and
    of loop.run_in_executor (which does not: an error that says so)."""
    import asyncio

    import ttg

    carried = await asyncio.to_thread(ttg.context)
    try:
        await asyncio.get_running_loop().run_in_executor(None, ttg.context)
        executor = "no error"
    except RuntimeError as exc:
        executor = str(exc)
    await asyncio.sleep(0.01)
    return {"to_thread": carried.index if carried else None, "executor": executor}


async def async_batched_flaky(xs: Any) -> Any:
    """Batched: the first call in this process raises ConnectionResetError."""
    import asyncio

    await asyncio.sleep(0.01)
    _tries["batch"] = _tries.get("batch", 0) + 1
    if _tries["batch"] == 1:
        raise ConnectionResetError("first batch")
    return xs * 3


def _sync_wrapper(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


@_sync_wrapper
async def decorated_async(x: int) -> int:
    """An async def behind a plain decorator (functools.wraps): still awaited."""
    import asyncio

    await asyncio.sleep(0.01)
    return x * 3


def returns_coroutine(x: int) -> Any:
    """Not async def, but returns a coroutine (a lambda calling an async function)."""
    return decorated_async.__wrapped__(x)
