"""Parameter spaces: ``len(space)`` and ``space[i]``, described by a JSON-able spec.

Kinds and their canonical specs (``space_from_spec(s.spec()).spec() == s.spec()``):

* range:  ``{"kind": "range", "start": 0, "stop": N, "step": 1, "name": "x"}``;
  point ``i`` is the int ``start + i * step``.
* grid:   ``{"kind": "grid", "axes": {"a": [1, 2], "b": {"linspace": [0, 1, 5]}}}``;
  the cartesian product of the axes, the *last* axis varying fastest (the
  order of ``itertools.product``). An axis is a list of values, or one of
  ``{"linspace": [start, stop, num]}``, ``{"logspace": [start, stop, num]}``
  (``10 ** linspace``), ``{"range": [start, stop, step]}``. Point: a dict.
* random: ``{"kind": "random", "n": N, "seed": S, "params": {"x": {"uniform": [0, 1]}}}``;
  distributions ``uniform [low, high]``, ``loguniform [low, high]``,
  ``normal [mean, std]``, ``integers [low, high)``, ``choice [v, ...]``.
  Point ``i`` is computed from ``(seed, i, param name)`` alone by a
  counter-based generator (splitmix64), so it never depends on who computes it.
* file:   ``{"kind": "file", "path": "rows.csv", "format": "csv"}`` (CSV, JSONL,
  Parquet; see ttg.spaces.files). Point: the row as a dict.

Generated kinds cost O(1) memory and O(1) per point whatever their size.
"""

from __future__ import annotations

from .base import Space
from .files import FileSpace
from .generated import GridSpace, RandomSpace, RangeSpace
from .spec import load_spec_file, space_from_spec

__all__ = ["FileSpace", "GridSpace", "RandomSpace", "RangeSpace", "Space", "load_spec_file",
           "space_from_spec"]
