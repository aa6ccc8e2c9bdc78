"""Spaces from specs: a spec dict (validated field by field) or a spec file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .base import Space, number
from .files import FileSpace
from .generated import GridSpace, RandomSpace, RangeSpace


def space_from_spec(spec: Mapping[str, Any]) -> Space:
    """Build a space from its spec; raises SpecError naming the bad field."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"space: expected a mapping with a 'kind' field, got {type(spec).__name__}.")
    kind = spec.get("kind")
    allowed = {
        "range": {"kind", "start", "stop", "step", "name"},
        "grid": {"kind", "axes"},
        "random": {"kind", "n", "seed", "params"},
        "file": {"kind", "path", "format", "sha256", "rows"},
    }
    if kind not in allowed:
        raise SpecError(f"space.kind: expected one of range, grid, random, file, got {kind!r}.")
    unknown = set(spec) - allowed[kind]
    if unknown:
        raise SpecError(f"space: unknown field(s) {', '.join(sorted(unknown))} for a {kind} space; "
                        f"allowed: {', '.join(sorted(allowed[kind]))}.")
    if kind == "range":
        if "stop" not in spec:
            raise SpecError("space.stop: a range space needs 'stop' (its number of points).")
        return RangeSpace(
            start=number("space.start", spec.get("start", 0), integer=True),
            stop=number("space.stop", spec["stop"], integer=True),
            step=number("space.step", spec.get("step", 1), integer=True),
            name=str(spec.get("name", "x")),
        )
    if kind == "grid":
        axes = spec.get("axes")
        if not isinstance(axes, Mapping):
            raise SpecError("space.axes: expected a mapping of axis name to values, e.g. {x: [1, 2]}.")
        return GridSpace(axes)
    if kind == "random":
        for key in ("n", "params"):
            if key not in spec:
                raise SpecError(f"space.{key}: a random space needs 'n', 'seed' and 'params'.")
        params = spec["params"]
        if not isinstance(params, Mapping):
            raise SpecError("space.params: expected a mapping of name to distribution.")
        return RandomSpace(spec["n"], spec.get("seed", 0), params)
    return FileSpace.from_spec(spec)


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a space spec from a YAML, TOML or JSON file, or describe a CSV/JSONL/Parquet file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".jsonl", ".ndjson", ".parquet"):
        return {"kind": "file", "path": str(p)}
    if not p.is_file():
        raise SpecError(f"space file {str(p)!r} does not exist; check the path.")
    try:
        text = p.read_text(encoding="utf-8")
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"space file {p.name!r}: unknown extension {suffix!r}; "
                            "use .yaml, .toml, .json, .csv, .jsonl or .parquet.")
    except SpecError:
        raise
    except Exception as exc:  # each parser has its own error type; all mean "malformed"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"space file {p.name!r} is not valid {suffix[1:].upper()}: {first}; "
                        "fix the syntax and try again.") from exc
    if isinstance(data, Mapping) and "space" in data and "kind" not in data:
        data = data["space"]
    if not isinstance(data, Mapping):
        raise SpecError(f"space file {p.name!r}: expected a mapping with a 'kind' field at the top.")
    return dict(data)
