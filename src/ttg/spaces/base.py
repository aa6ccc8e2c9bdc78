"""The space contract: ``len(space)``, ``space[i]`` and a spec that round-trips."""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, overload

from ..errors import SpecError


class Space(ABC):
    """An indexable parameter set."""

    kind: str

    def __len__(self) -> int:
        return self.size

    @property
    @abstractmethod
    def size(self) -> int:
        """How many points: ``len(space)``, which Python refuses beyond sys.maxsize
        (a 10**20-point range), so that such a space can be refused with a reason."""

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

    def points(self, start: int, stop: int) -> Sequence[Any]:
        """The points ``start..stop-1``, each made only when asked for (a chunk of a
        huge sweep may be long: its points never all exist at once)."""
        return Points(self, start, stop)

    def columns(self, start: int, stop: int) -> dict[str, list[Any]]:
        """The points ``start..stop-1`` as named columns (for tables and batched calls)."""
        pts = self.points(start, stop)
        return {name: [p[name] for p in pts] for name in self.fields}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.spec())})"


class Points(Sequence[Any]):
    """``space[start:stop]`` as a sequence whose points are made on access."""

    def __init__(self, space: Space, start: int, stop: int) -> None:
        self.space, self.start, self.stop = space, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    @overload
    def __getitem__(self, k: int) -> Any: ...
    @overload
    def __getitem__(self, k: slice) -> list[Any]: ...

    def __getitem__(self, k: int | slice) -> Any:
        if isinstance(k, slice):
            return [self.space.point(self.start + j) for j in range(*k.indices(len(self)))]
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self.space.point(self.start + k)


def plain_value(where: str, v: Any) -> Any:
    """A value of a space's spec as it is stored and sent: None, a bool, a number, a
    string, or a list or mapping (string keys) of those; SpecError otherwise (a date
    from YAML or TOML, say)."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [plain_value(f"{where}[{k}]", x) for k, x in enumerate(v)]
    if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
        return {k: plain_value(f"{where}.{k}", x) for k, x in v.items()}
    raise SpecError(f"{where}: {v!r} is a {type(v).__name__}, which a space cannot hold; write it as a "
                    "string (in quotes), a number or a list.")


def number(where: str, v: Any, *, integer: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        want = "an integer" if integer else "a finite number"
        raise SpecError(f"{where}: expected {want}, got {v!r}.")
    return v

