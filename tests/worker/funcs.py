"""Functions for the in-process worker tests (their children are threads of the
test's process, so these functions and the test share this module's state)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ttg.testing import Killed

#: executions per index (every call, also the ones a death cut short)
CALLS: Counter[int] = Counter()
#: the indices at which ``gated_once`` waits for ``GATE``, and ``dies_once`` dies
AT: set[int] = set()
GATE = threading.Event()
_lock = threading.Lock()


def reset(*at: int) -> None:
    with _lock:
        CALLS.clear()
    AT.clear()
    AT.update(at)
    GATE.clear()


def _count(x: int) -> int:
    with _lock:
        CALLS[x] += 1
        return CALLS[x]


def square(x: int) -> int:
    _count(x)
    return x * x


def dies_once(x: int) -> int:
    """Its child dies at an index of ``AT`` the first time (as by SIGKILL)."""
    if _count(x) == 1 and x in AT:
        raise Killed()
    return x * x


def gated_once(x: int) -> Any:
    """Waits at an index of ``AT`` for GATE the first time (a call that hangs)."""
    if _count(x) == 1 and x in AT:
        GATE.wait(30)
    return x * x
