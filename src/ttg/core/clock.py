"""Clocks, injected wherever TTG measures or waits, so a test can step them.

Two readings, never mixed: ``monotonic()`` for timers and deadlines (it never
jumps, whatever happens to the wall clock), and ``time()`` (Unix time) only
for what people read or what other machines compare (presence beats, record
timestamps, dead-letter times).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward (``time.monotonic``)."""

    def time(self) -> float:
        """Unix time (``time.time``): for display and for what other hosts compare."""


class SystemClock:
    """The process's own clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM = SystemClock()
