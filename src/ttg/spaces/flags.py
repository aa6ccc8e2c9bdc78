"""Space specs from command-line flags (``--range``, ``--grid``, ``--param``)."""

from __future__ import annotations

from typing import Any

from ..errors import SpecError


def parse_range(text: str) -> dict[str, Any]:
    """``N`` or ``START:STOP[:STEP]`` -> a range spec."""
    parts = text.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise SpecError(f"--range {text!r}: expected N or START:STOP[:STEP] with integers.") from None
    if len(nums) == 1:
        return {"kind": "range", "start": 0, "stop": nums[0], "step": 1, "name": "x"}
    if len(nums) in (2, 3):
        step = nums[2] if len(nums) == 3 else 1
        return {"kind": "range", "start": nums[0], "stop": nums[1], "step": step, "name": "x"}
    raise SpecError(f"--range {text!r}: expected N or START:STOP[:STEP].")


def scalar(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def grid_axis(item: str) -> tuple[str, Any]:
    """``NAME=a,b,c`` or ``NAME=linspace:START:STOP:NUM`` (also logspace, range)."""
    name, sep, values = item.partition("=")
    if not sep or not name.strip() or not values:
        raise SpecError(f"--grid {item!r}: expected NAME=VALUES, e.g. x=1,2,3 or x=linspace:0:1:11.")
    name = name.strip()
    gen, _, args = values.partition(":")
    if gen in ("linspace", "logspace", "range") and args:
        nums = [scalar(a) for a in args.split(":")]
        if gen == "range" and len(nums) == 2:
            nums.append(1)
        if len(nums) != 3 or not all(isinstance(n, int | float) for n in nums):
            want = "START:STOP[:STEP]" if gen == "range" else "START:STOP:NUM"
            raise SpecError(f"--grid {item!r}: expected {name}={gen}:{want} with numbers.")
        return name, {gen: nums}
    return name, [scalar(v) for v in values.split(",")]


def random_param(item: str) -> tuple[str, Any]:
    """``NAME=uniform:LOW:HIGH`` (also loguniform, normal, integers) or ``NAME=choice:A,B,C``."""
    name, sep, rest = item.partition("=")
    dist, _, args = rest.partition(":")
    if not sep or not name.strip() or not dist or not args:
        raise SpecError(f"--param {item!r}: expected NAME=DIST:ARGS, e.g. x=uniform:0:1.")
    if dist == "choice":
        return name.strip(), {"choice": [scalar(v) for v in args.split(",")]}
    return name.strip(), {dist: [scalar(a) for a in args.split(":")]}
