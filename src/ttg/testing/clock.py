"""A clock a test steps by hand (core/clock.py's Clock)."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """Starts at the given readings and moves only when told: ``advance`` moves
    both clocks (time passes), ``jump`` only the wall clock (an NTP step, a laptop
    resuming)."""

    def __init__(self, wall: float = 1_800_000_000.0, monotonic: float = 1_000.0) -> None:
        self._wall, self._mono = wall, monotonic
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds
            self._mono += seconds

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds


class SteppedClock:
    """The real clocks, with the wall clock stepped when told (``step``): what a live
    worker sees when its host's time is stepped (NTP, a laptop resuming), while
    time goes on passing. Its monotonic clock is the host's, which never steps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds
