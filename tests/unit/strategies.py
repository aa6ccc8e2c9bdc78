"""Hypothesis strategies for canonical space specs, shared by the unit tests."""

from __future__ import annotations

import json
import math
import string
from typing import Any

from hypothesis import strategies as st

NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=6)
INT64 = st.integers(-(2**63), 2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    FINITE,
    st.booleans(),
    st.text(alphabet=string.ascii_letters + string.digits + " -_.", max_size=8),
)
SIGNED_STEP = st.integers(-5, 5).filter(bool)

# -- range ------------------------------------------------------------------------------

RANGE_SPECS = st.builds(
    lambda start, stop, step, name: {"kind": "range", "start": start, "stop": stop, "step": step,
                                     "name": name},
    st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6),
    st.integers(-1000, 1000).filter(bool), NAMES,
)
SMALL_RANGE_SPECS = st.builds(
    lambda start, count, step, name: {"kind": "range", "start": start, "stop": start + count * step,
                                      "step": step, "name": name},
    st.integers(-1000, 1000), st.integers(0, 60), SIGNED_STEP, NAMES,
)

# -- grid -------------------------------------------------------------------------------


@st.composite
def linspace_axes(draw: st.DrawFn) -> dict[str, list[Any]]:
    start = draw(st.integers(-100, 100) | st.floats(-100, 100))
    delta = draw(st.sampled_from([-7.5, -1, 1, 2.5, 10, 100]))
    return {"linspace": [start, start + delta, draw(st.integers(1, 6))]}


@st.composite
def logspace_axes(draw: st.DrawFn) -> dict[str, list[Any]]:
    start = draw(st.integers(-5, 5) | st.floats(-5, 5))
    delta = draw(st.sampled_from([-3, -1, 0.5, 1, 2]))
    return {"logspace": [start, start + delta, draw(st.integers(1, 6))]}


@st.composite
def range_axes(draw: st.DrawFn) -> dict[str, list[int]]:
    start, step = draw(st.integers(-50, 50)), draw(SIGNED_STEP)
    count = draw(st.integers(1, 6))
    # a stop that is not aligned on the step still gives `count` values
    slack = draw(st.integers(0, abs(step) - 1)) * (1 if step > 0 else -1)
    return {"range": [start, start + (count - 1) * step + (1 if step > 0 else -1) + slack, step]}


#: axes whose values are pairwise distinct (so distinct grid indices give distinct points)
DISTINCT_AXES = st.one_of(
    st.lists(SCALARS, min_size=1, max_size=5, unique=True),
    linspace_axes(), logspace_axes(), range_axes(),
)
EXACT_AXES = st.one_of(st.lists(SCALARS, min_size=1, max_size=5, unique=True), range_axes())
GRID_SPECS = st.builds(lambda axes: {"kind": "grid", "axes": axes},
                       st.dictionaries(NAMES, DISTINCT_AXES, min_size=1, max_size=3))
EXACT_GRID_SPECS = st.builds(lambda axes: {"kind": "grid", "axes": axes},
                             st.dictionaries(NAMES, EXACT_AXES, min_size=1, max_size=3))

# -- random -----------------------------------------------------------------------------


@st.composite
def uniform_dists(draw: st.DrawFn) -> dict[str, list[Any]]:
    low = draw(st.floats(-1e6, 1e6) | st.integers(-1000, 1000))
    width = draw(st.floats(1e-3, 1e6) | st.integers(1, 1000))
    return {"uniform": [low, low + width]}


@st.composite
def loguniform_dists(draw: st.DrawFn) -> dict[str, list[Any]]:
    low = draw(st.floats(1e-10, 1e6))
    return {"loguniform": [low, low * draw(st.floats(1.01, 1e6))]}


@st.composite
def integers_dists(draw: st.DrawFn) -> dict[str, list[int]]:
    low = draw(st.integers(-(10**9), 10**9))
    return {"integers": [low, low + draw(st.integers(1, 10**9))]}


DISTS = st.one_of(
    uniform_dists(), loguniform_dists(), integers_dists(),
    st.builds(lambda m, s: {"normal": [m, s]}, st.floats(-1e6, 1e6), st.floats(0, 1e3)),
    st.builds(lambda vs: {"choice": vs}, st.lists(SCALARS, min_size=1, max_size=5)),
)
RANDOM_SPECS = st.builds(
    lambda n, seed, params: {"kind": "random", "n": n, "seed": seed, "params": params},
    st.integers(0, 40), INT64, st.dictionaries(NAMES, DISTS, min_size=1, max_size=3),
)

SPECS = st.one_of(RANGE_SPECS, GRID_SPECS, RANDOM_SPECS)


# -- TOML, by hand (no TOML writer is a dependency) --------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # always has a '.' or an exponent, so TOML reads a float
    if isinstance(v, str):
        return json.dumps(v)  # printable ASCII: JSON's escapes are TOML's
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v).__name__)


def to_toml(spec: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in spec.items())
