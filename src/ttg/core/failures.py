"""What a sweep does when its function raises: try a point again in place, and
stop the sweep once too many points have failed.

Both are the user's policy for the user's exceptions. They never apply to a
crash, a timeout or an infrastructure fault: those are handled per chunk
(core/retry.py) and never counted against the points.

- ``Retries``: an exception of a listed type (``retry_on``: class names, plain or
  qualified, matched against the exception's classes and their bases; any
  Exception when none is listed) is retried in the same process up to
  ``retries`` more times, after ``backoff``, ``2 × backoff``, ``4 × backoff``, ...
  seconds. The point's record says how many tries it took.
- ``max_failures``: ``"N"`` points, or ``"P%"`` of the sweep's points. Once that
  many of its points are recorded as failed, the sweep is cancelled (its queued
  chunks dropped), and its status says why.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: at most this many tries in place per point, and this long a first back-off
MAX_RETRIES = 100
MAX_BACKOFF = 3600.0
#: a class name as written in --retry-on: ConnectionError, requests.exceptions.Timeout
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Retries:
    """Tries of one point in place (see the module's docstring)."""

    retries: int
    retry_on: tuple[str, ...] = ()
    backoff: float = 0.0

    def __post_init__(self) -> None:
        check(self.retries, self.retry_on, self.backoff)

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one to try again (an Exception, never SystemExit or
        KeyboardInterrupt, of a listed class or a subclass of one)."""
        if not isinstance(exc, Exception):
            return False
        if not self.retry_on:
            return True
        names = set(self.retry_on)
        return any(c.__name__ in names or f"{c.__module__}.{c.__qualname__}" in names
                   for c in type(exc).__mro__)

    def delay(self, tries: int) -> float:
        """Seconds to wait after the ``tries``-th failed try."""
        return float(self.backoff * 2 ** (tries - 1))

    def to_message(self) -> list[Any]:
        return [self.retries, list(self.retry_on), self.backoff]

    @classmethod
    def from_message(cls, value: Any) -> Retries:
        """From a chunk message (ValueError or TypeError when malformed)."""
        n, on, backoff = value
        if not isinstance(on, list) or not all(isinstance(x, str) for x in on):
            raise ValueError("retry_on must be a list of names")
        try:
            return cls(int(n), tuple(on), float(backoff))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def wrap(self, fn: Callable[[Any], Any], beacon: Any, tries: dict[int, int]) -> Callable[[Any], Any]:
        """``fn``, trying each call again as this policy says. A point that took more
        than one try is noted in ``tries`` (its index: ``beacon[0] - 1``). Each try
        bumps ``beacon[1]``, so the supervisor times every try on its own, and the
        wait between tries sets ``beacon[0]`` to 0 (not computing: no timeout runs)."""

        def call(point: Any) -> Any:
            n = 1
            while True:
                try:
                    value = fn(point)
                except BaseException as exc:
                    if n > self.retries or not self.matches(exc):
                        if n > 1:
                            tries[beacon[0] - 1] = n
                        raise
                    computing = beacon[0]
                    beacon[0] = 0
                    time.sleep(self.delay(n))
                    beacon[1] += 1
                    beacon[0] = computing
                    n += 1
                    continue
                if n > 1:
                    tries[beacon[0] - 1] = n
                return value

        return call


def check(retries: int, retry_on: Sequence[str], backoff: float) -> None:
    """ConfigError, one sentence, for a policy that cannot be meant."""
    if not 0 <= retries <= MAX_RETRIES:
        raise ConfigError(f"retries must be an integer from 0 to {MAX_RETRIES}, not {retries}.")
    if not 0 <= backoff <= MAX_BACKOFF:
        raise ConfigError(f"retry back-off must be from 0 to {MAX_BACKOFF:g} seconds (the first wait; "
                          f"each next one doubles), not {backoff}.")
    for name in retry_on:
        if not _NAME.match(name):
            raise ConfigError(f"retry-on: {name!r} is not an exception class name; give names such as "
                              "ConnectionError or requests.exceptions.Timeout, separated by commas.")
    if retry_on and not retries:
        raise ConfigError("retry-on names exceptions to try again, but retries is 0; give --retries N "
                          "(retries=N) as well.")


def parse_max_failures(value: int | str | None) -> str | None:
    """``--max-failures`` as given (``10``, ``"10"``, ``"5%"``) in its canonical form
    (``"10"``, ``"5%"``), or None for no limit; ConfigError otherwise."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if 0 < pct <= 100 and math.isfinite(pct):
                return f"{pct:g}%"
        elif int(text) >= 1:
            return str(int(text))
    except ValueError:
        pass
    raise ConfigError(f"max failures must be a number of points (at least 1) or a percentage of the "
                      f"sweep's points such as 5%, not {value!r}.")


def failure_limit(max_failures: str, total: int) -> int:
    """The number of failed points that stops a sweep of ``total`` points."""
    if max_failures.endswith("%"):
        return max(1, math.ceil(total * float(max_failures[:-1]) / 100))
    return int(max_failures)


def stopped_reason(max_failures: str | None, failed: int, total: int) -> str | None:
    """Why a cancelled sweep stopped, when its failures reached its limit; else None."""
    if max_failures is None or failed < failure_limit(max_failures, total):
        return None
    return (f"stopped after {failed} failed points: the limit is {failure_limit(max_failures, total)} "
            f"(max failures {max_failures})")


def shown_state(state: str, max_failures: str | None, failed: int, total: int) -> str:
    """A sweep's state as commands show it: "stopped" for one that its failure limit
    cancelled, else its state as stored ("active", "cancelled")."""
    if state == "cancelled" and stopped_reason(max_failures, failed, total):
        return "stopped"
    return state
