"""Generated spaces: range, grid and random. O(1) memory and O(1) per point
whatever their size; a random point is a pure function of ``(seed, i, name)``."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SpecError
from .base import Space, number, plain_value

_M64 = (1 << 64) - 1
_DISTRIBUTIONS = ("uniform", "loguniform", "normal", "integers", "choice")
_AXIS_GENERATORS = ("linspace", "logspace", "range")


class RangeSpace(Space):
    kind = "range"

    def __init__(self, stop: int, start: int = 0, step: int = 1, name: str = "x") -> None:
        if step == 0:
            raise SpecError("space.step: must not be 0; use a positive or negative integer.")
        self._range = range(start, stop, step)
        self.name = name

    @property
    def size(self) -> int:
        return _length(self._range)

    def point(self, i: int) -> int:
        return int(self._range[i])

    def points(self, start: int, stop: int) -> Sequence[Any]:
        return self._range[start:stop]  # a range: nothing made before it is asked for

    def columns(self, start: int, stop: int) -> dict[str, list[Any]]:
        return {self.name: list(self._range[start:stop])}

    @property
    def fields(self) -> list[str]:
        return [self.name]

    def spec(self) -> dict[str, Any]:
        r = self._range
        return {"kind": "range", "start": r.start, "stop": r.stop, "step": r.step, "name": self.name}


def _length(r: range) -> int:
    """``len(r)``, which Python refuses beyond sys.maxsize: then as a plain int."""
    try:
        return len(r)
    except OverflowError:
        return max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)


class GridSpace(Space):
    kind = "grid"

    def __init__(self, axes: Mapping[str, Any]) -> None:
        if not axes:
            raise SpecError("space.axes: a grid needs at least one axis, e.g. {x: [1, 2, 3]}.")
        self._specs = {name: _canonical_axis(name, a) for name, a in axes.items()}
        self._values = [_axis_values(name, a) for name, a in self._specs.items()]
        self._names = list(self._specs)
        self._len = math.prod(len(v) for v in self._values)
        # stride of each axis: the last axis varies fastest
        self._strides: list[int] = []
        s = 1
        for v in reversed(self._values):
            self._strides.insert(0, s)
            s *= len(v)

    @property
    def size(self) -> int:
        return self._len

    def point(self, i: int) -> dict[str, Any]:
        return {
            name: vals[(i // stride) % len(vals)]
            for name, vals, stride in zip(self._names, self._values, self._strides, strict=True)
        }

    def columns(self, start: int, stop: int) -> dict[str, list[Any]]:
        return {
            name: [vals[(i // stride) % len(vals)] for i in range(start, stop)]
            for name, vals, stride in zip(self._names, self._values, self._strides, strict=True)
        }

    @property
    def fields(self) -> list[str]:
        return list(self._names)

    def spec(self) -> dict[str, Any]:
        return {"kind": "grid", "axes": dict(self._specs)}


class _Axis(Sequence[Any]):
    """An axis generated on demand: ``linspace``, ``logspace`` or ``range``."""

    def __init__(self, kind: str, start: float, stop: float, num: int) -> None:
        self.kind, self.start, self.stop, self.num = kind, start, stop, num
        self._step = (stop - start) / (num - 1) if num > 1 else 0.0

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(self.num))]
        if not 0 <= k < self.num:
            raise IndexError(k)
        x = self.stop if k == self.num - 1 and self.num > 1 else self.start + k * self._step
        return float(10.0**x) if self.kind == "logspace" else float(x)


def _canonical_axis(name: str, axis: Any) -> Any:
    where = f"space.axes.{name}"
    if isinstance(axis, list | tuple):
        if not axis:
            raise SpecError(f"{where}: the axis is empty; give it at least one value.")
        return [plain_value(f"{where}[{k}]", v) for k, v in enumerate(axis)]
    if isinstance(axis, Mapping) and len(axis) == 1:
        (gen, args), = axis.items()
        if gen in _AXIS_GENERATORS:
            keys = ("start", "stop", "step") if gen == "range" else ("start", "stop", "num")
            if isinstance(args, Mapping):
                args = [args.get(k) for k in keys]
            if not isinstance(args, list | tuple) or len(args) != 3:
                raise SpecError(f"{where}.{gen}: expected [{', '.join(keys)}], got {args!r}.")
            return {gen: [number(f"{where}.{gen}", a, integer=(gen == "range" or k == "num"))
                          for a, k in zip(args, keys, strict=True)]}
    raise SpecError(
        f"{where}: expected a list of values or one of {{linspace|logspace: [start, stop, num]}}"
        f" or {{range: [start, stop, step]}}, got {axis!r}."
    )


def _axis_values(name: str, axis: Any) -> Sequence[Any]:
    if isinstance(axis, list):
        return axis
    (gen, (a, b, c)), = axis.items()
    if gen == "range":
        if c == 0:
            raise SpecError(f"space.axes.{name}.range: step must not be 0.")
        values: Sequence[Any] = range(a, b, c)
    else:
        if c < 1:
            raise SpecError(f"space.axes.{name}.{gen}: num must be at least 1, got {c}.")
        if gen == "logspace" and max(a, b) > 308:
            raise SpecError(f"space.axes.{name}.logspace: 10**{max(a, b)} overflows a float; "
                            "keep start and stop at most 308.")
        values = _Axis(gen, float(a), float(b), c)
    if len(values) == 0:
        raise SpecError(f"space.axes.{name}: the axis is empty; check start, stop and step.")
    return values



class RandomSpace(Space):
    kind = "random"

    def __init__(self, n: int, seed: int, params: Mapping[str, Any]) -> None:
        self.n: int = number("space.n", n, integer=True)
        if n < 0:
            raise SpecError(f"space.n: must be zero or more, got {n}.")
        self.seed = number("space.seed", seed, integer=True)
        if not params:
            raise SpecError("space.params: a random space needs at least one parameter, "
                            "e.g. {x: {uniform: [0, 1]}}.")
        self._params = {name: _canonical_dist(name, d) for name, d in params.items()}
        self._keys = {name: _name_key(self.seed, name) for name in self._params}

    @property
    def size(self) -> int:
        return self.n

    def point(self, i: int) -> dict[str, Any]:
        return {name: _draw(dist, _uniform(self._keys[name], i)) for name, dist in self._params.items()}

    @property
    def fields(self) -> list[str]:
        return list(self._params)

    def spec(self) -> dict[str, Any]:
        return {"kind": "random", "n": self.n, "seed": self.seed, "params": dict(self._params)}


def _canonical_dist(name: str, dist: Any) -> dict[str, list[Any]]:
    where = f"space.params.{name}"
    if not (isinstance(dist, Mapping) and len(dist) == 1):
        raise SpecError(f"{where}: expected one of {{{'|'.join(_DISTRIBUTIONS)}: [...]}}, got {dist!r}.")
    (kind, args), = dist.items()
    if kind not in _DISTRIBUTIONS:
        raise SpecError(f"{where}: unknown distribution {kind!r}; use one of {', '.join(_DISTRIBUTIONS)}.")
    if not isinstance(args, list | tuple):
        raise SpecError(f"{where}.{kind}: expected a list of arguments, got {args!r}.")
    args = list(args)
    if kind == "choice":
        if not args:
            raise SpecError(f"{where}.choice: give at least one value to choose from.")
        return {kind: [plain_value(f"{where}.choice[{k}]", v) for k, v in enumerate(args)]}
    if len(args) != 2:
        raise SpecError(f"{where}.{kind}: expected two numbers, got {args!r}.")
    a, b = (number(f"{where}.{kind}", x, integer=(kind == "integers")) for x in args)
    if kind in ("uniform", "loguniform", "integers") and not a < b:
        raise SpecError(f"{where}.{kind}: low must be below high, got [{a}, {b}].")
    if kind == "loguniform" and a <= 0:
        raise SpecError(f"{where}.loguniform: low must be positive, got {a}.")
    if kind == "normal" and b < 0:
        raise SpecError(f"{where}.normal: std must be zero or more, got {b}.")
    return {kind: [a, b]}


def _mix(z: int) -> int:
    """splitmix64's finalizer: a bijection on 64-bit ints that scatters bits."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _name_key(seed: int, name: str) -> int:
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return _mix((seed & _M64) ^ h)


def _uniform(key: int, i: int) -> float:
    """A float in the open interval (0, 1), a pure function of ``(key, i)``."""
    u = ((_mix(key ^ _mix(i & _M64)) >> 11) + 0.5) * (1.0 / (1 << 53))
    # for the top 53-bit value, x + 0.5 rounds up to 2**53 and u to 1.0: keep it below 1
    return min(u, _BELOW_ONE)


_BELOW_ONE = 1.0 - 2.0**-53


_STD_NORMAL = statistics.NormalDist()


def _draw(dist: dict[str, list[Any]], u: float) -> Any:
    (kind, args), = dist.items()
    if kind == "uniform":
        return args[0] + (args[1] - args[0]) * u
    if kind == "loguniform":
        lo, hi = math.log(args[0]), math.log(args[1])
        return math.exp(lo + (hi - lo) * u)
    if kind == "normal":
        return args[0] + args[1] * _STD_NORMAL.inv_cdf(u)
    if kind == "integers":
        return args[0] + int(u * (args[1] - args[0]))
    return args[int(u * len(args))]  # choice

