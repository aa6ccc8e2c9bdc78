"""The SQL-readable copy of a chunk's records (opt-in: ``?sql_view=1``): jsonb
columns beside the blob, so the results can be queried in SQL (view ``ttg_results``)."""

from __future__ import annotations

import json
import math
from typing import Any

from ...core.records import ChunkRecords


def sql_copy(rec: ChunkRecords) -> dict[str, str | None]:
    """The jsonb columns of one chunk (JSON text). Values JSON cannot hold become
    JSON that it can: NaN and infinities the strings "NaN", "Infinity",
    "-Infinity" (which float8 reads back), bytes a "\\x..." hex string, NUL
    characters U+FFFD, anything else null. The blob keeps the exact values."""
    errors = None
    if rec.errors:
        errors = _json({str(k): f"{e[0]}: {e[1]}" for k, e in rec.errors.items()})
    return {"vals": _json(rec.values), "statuses": None if rec.statuses is None else _json(rec.statuses),
            "durations": json.dumps(rec.durations), "errors": errors}


def _json(obj: Any) -> str:
    try:
        text = json.dumps(obj, allow_nan=False, default=_plain, separators=(",", ":"))
        if "\\u0000" not in text:  # jsonb refuses NUL characters
            return text
    except (TypeError, ValueError):
        pass
    return json.dumps(_jsonable(obj), separators=(",", ":"))


def _plain(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)  # numpy, as the records codec stores it
    if callable(tolist):
        return tolist()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, bytes):
        return "\\x" + obj.hex()
    raise TypeError(type(obj).__name__)


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return obj if abs(obj) < 10**1000 else None
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, str):
        return obj.replace("\x00", "\ufffd")
    if isinstance(obj, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    try:
        return _jsonable(_plain(obj))
    except TypeError:
        return None
