"""A clock a test steps by hand (core/clock.py's Clock)."""

from __future__ import annotations

import threading


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
