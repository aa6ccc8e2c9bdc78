"""The prototype's workload: one millisecond of work per seed.

It stands for any cheap per-seed job (a short simulation, a randomized test
case) and is what the benchmarks compare with ``multiprocessing.Pool``: at 1 ms
per point, the engine's per-chunk overhead is what decides throughput.

Run it from the repository root::

    ttg run examples/seed_workload.py:work --range 10000 --chunk-size 100
"""

from __future__ import annotations

import random
import time


def work(seed: int) -> int:
    """Sleep 1 ms, then return a 32-bit number drawn from ``random.Random(seed)``."""
    time.sleep(0.001)
    return random.Random(seed).getrandbits(32)
