"""The space contract: ``len(space)``, ``space[i]`` and a spec that round-trips."""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any

from ..errors import SpecError


class Space(ABC):
    """An indexable parameter set."""

    kind: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def point(self, i: int) -> Any:
        """The point at index ``i`` (``0 <= i < len``), in O(1) for generated kinds."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The canonical JSON-able spec this space was built from."""

    @property
    @abstractmethod
    def fields(self) -> list[str]:
        """Column names of a point in the results table."""

    def __getitem__(self, i: int) -> Any:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} is outside the space of {n} points")
        return self.point(i)

    def points(self, start: int, stop: int) -> list[Any]:
        """The points ``start..stop-1``, as a list."""
        return [self.point(i) for i in range(start, stop)]

    def columns(self, start: int, stop: int) -> dict[str, list[Any]]:
        """The points ``start..stop-1`` as named columns (for tables and batched calls)."""
        pts = self.points(start, stop)
        return {name: [p[name] for p in pts] for name in self.fields}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.spec())})"


def number(where: str, v: Any, *, integer: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        want = "an integer" if integer else "a finite number"
        raise SpecError(f"{where}: expected {want}, got {v!r}.")
    return v

