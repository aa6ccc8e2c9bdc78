"""Functions the observability tests sweep (workers import them as tests.observability.funcs)."""

from __future__ import annotations

import math
import time
from typing import Any


def fail_on_7_slowly(x: int) -> int:
    """2 ms per point; multiples of 7 raise ValueError."""
    time.sleep(0.002)
    if x % 7 == 0:
        raise ValueError(f"{x} is a multiple of 7")
    return x * x


def surface(p: dict[str, Any]) -> float:
    """A smooth surface over a grid of (a, b), 20 ms per point; a == 0.5 and b == 0.5 fails."""
    time.sleep(0.02)
    a, b = p["a"], p["b"]
    if abs(a - 0.5) < 1e-9 and abs(b - 0.5) < 1e-9:
        raise ArithmeticError("the surface is undefined at a = b = 0.5")
    return math.sin(6 * a) * math.cos(4 * b) + a * b
