"""The functions the benchmarks run. Workers import them by file path
(``bench/workloads.py:NAME``); multiprocessing.Pool imports them as ``workloads``."""

from __future__ import annotations

import time


def sleep_1ms(x: int) -> int:
    """W1, the prototype's workload: 1 ms of waiting per point."""
    time.sleep(0.001)
    return x


def square_plus_one(x: int) -> int:
    """W2: trivial arithmetic, so the engine's per-point cost is all there is to see."""
    return x * x + 1


def noop(x: int) -> None:
    """W3 and the scale benchmark: nothing at all."""
    return None


def sleep_square(x: int) -> int:
    """The soak: 2 ms of waiting, so chunks are in flight when faults strike, and a
    value (x*x) that tells each index's record from any other's."""
    time.sleep(0.002)
    return x * x


async def nap_50ms(x: int) -> int:
    """W5: an I/O-bound point, 50 ms of awaiting (an HTTP call, a model endpoint)."""
    import asyncio

    await asyncio.sleep(0.05)
    return x
