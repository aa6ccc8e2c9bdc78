"""The results table: one row per index, streamed from the store chunk by chunk.

Columns, in order: ``index``; the point's fields (a range space's ``x``, a
grid's axes, a random space's parameters, a file's columns); the result (a
dict result is flattened to one column per key; anything else goes to
``value``; a key that clashes with another column gets a ``result_`` prefix);
``status`` (ok, error, crashed, timeout); ``error`` ("Type: message");
``duration`` (seconds); ``worker``; ``attempt``; and, for a sweep that tries
points again in place (``retries``), ``tries``.

Writing a file takes two passes over the store: one to settle the schema
(column types can only be known once every chunk was seen), one to write.
Memory stays proportional to a chunk either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..core.records import FAILED, ChunkRecords
from ..core.sweep import Sweep
from ..errors import ConfigError
from ..spaces import Space
from ..stores.base import ResultStore

FORMATS = (".parquet", ".csv", ".jsonl")
_TAIL = ("status", "error", "duration", "worker", "attempt")


@dataclass(frozen=True)
class ErrorRow:
    index: int
    status: str
    type: str
    message: str
    traceback: str
    point: Any


class Table:
    """Reads a sweep's results out of a store."""

    def __init__(self, store: ResultStore, sweep: Sweep) -> None:
        self.store = store
        self.sweep = sweep
        self._space: Space | None = None if sweep.is_file else sweep.make_space()
        self._point_fields = list(sweep.fields)
        self._tail = (*_TAIL, "tries") if sweep.options.retries else _TAIL

    # -- rows as Python data ------------------------------------------------------

    def _columns(self, rec: ChunkRecords) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {"index": list(range(rec.start, rec.stop))}
        if rec.params is not None:
            for name in self._point_fields:
                cols[name] = [p.get(name) if isinstance(p, dict) else p for p in rec.params]
        else:
            assert self._space is not None
            cols.update(self._space.columns(rec.start, rec.stop))
        cols.update(self._result_columns(rec.values, set(cols) | set(self._tail)))
        statuses = [rec.status(k) for k in range(len(rec))]
        errs = rec.errors or {}
        cols["status"] = statuses
        cols["error"] = [f"{errs[k][0]}: {errs[k][1]}" if k in errs else None for k in range(len(rec))]
        cols["duration"] = [d / 1e9 for d in rec.durations]
        cols["worker"] = [rec.worker] * len(rec)
        cols["attempt"] = [rec.attempt] * len(rec)
        if self.sweep.options.retries:
            cols["tries"] = [rec.tries_of(k) for k in range(len(rec))]
        return cols

    @staticmethod
    def _result_columns(values: list[Any], taken: set[str]) -> dict[str, list[Any]]:
        keys: dict[str, None] = {}
        plain = False
        for v in values:
            if isinstance(v, dict):
                keys.update(dict.fromkeys(v))
            elif v is not None:
                plain = True
        out: dict[str, list[Any]] = {}
        if plain or not keys:
            out["value"] = [None if isinstance(v, dict) else v for v in values]
        for k in keys:
            name = str(k)
            if name in taken or name == "value":
                name = f"result_{name}"
            out[name] = [v.get(k) if isinstance(v, dict) else None for v in values]
        return out

    def column_chunks(self) -> Iterator[dict[str, list[Any]]]:
        """Each committed chunk's columns as Python lists, in index order (one
        pass, no schema: for plots and the dashboard)."""
        for rec in self.store.chunks(self.sweep.id):
            yield self._columns(rec)

    # -- arrow ------------------------------------------------------------------------

    def schema(self) -> pa.Schema:
        """The unified schema over every committed chunk (one pass over the store)."""
        fields: dict[str, pa.DataType] = {}
        for rec in self.store.chunks(self.sweep.id):
            for name, values in self._columns(rec).items():
                fields[name] = _unify(fields.get(name), _array(values).type)
        order = ["index", *self._point_fields]
        tail = [n for n in self._tail if n in fields]
        middle = [n for n in fields if n not in order and n not in tail]
        return pa.schema([(n, _storable(fields.get(n, pa.null()))) for n in [*order, *middle, *tail]])

    def batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        for rec in self.store.chunks(self.sweep.id):
            cols = self._columns(rec)
            arrays = [_column(cols.get(f.name, [None] * len(rec)), f) for f in schema]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def to_arrow(self) -> pa.Table:
        schema = self.schema()
        return pa.Table.from_batches(list(self.batches(schema)), schema=schema)

    def to_pandas(self) -> Any:
        """The table as a pandas DataFrame. Arrow holds one type per column, so a
        column that mixes kinds (``m=sqrt,log2,0.5``) is text in ``to_arrow``;
        here it keeps each value as the function saw it (an object column)."""
        frame = self.to_arrow().to_pandas()
        text = [f.name for f in self.schema() if pa.types.is_string(f.type)]
        mixed: dict[str, list[Any]] = {n: [] for n in text}
        for cols in self.column_chunks():
            for n in text:
                mixed[n].extend(cols.get(n, [None] * len(cols["index"])))
        for n, values in mixed.items():
            if any(v is not None and not isinstance(v, str) for v in values):
                frame[n] = values
        return frame

    def write(self, path: str | Path) -> int:
        """Write the table to .parquet, .csv or .jsonl (by extension); returns the row count."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in FORMATS:
            raise ConfigError(f"cannot tell the output format of {p.name!r}; end the file name in "
                              ".parquet, .csv or .jsonl.")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".partial")
        try:
            rows = self._write_jsonl(tmp) if suffix == ".jsonl" else self._write_arrow(tmp, suffix)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no half file left behind, whatever stopped the export
            raise
        tmp.replace(p)  # a reader never sees half a file
        return rows

    def _write_arrow(self, path: Path, suffix: str) -> int:
        schema = self.schema()
        rows = 0
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(path, schema) as writer:
                for batch in self.batches(schema):
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:
            import pyarrow.csv as pacsv

            csv_schema = pa.schema([(f.name, _csv_type(f.type)) for f in schema])
            with pacsv.CSVWriter(path, csv_schema) as writer:
                for rec in self.store.chunks(self.sweep.id):
                    cols = self._columns(rec)
                    arrays = [_csv_array(cols.get(f.name, [None] * len(rec)), f.type) for f in csv_schema]
                    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=csv_schema))
                    rows += len(rec)
        return rows

    def _write_jsonl(self, path: Path) -> int:
        rows = 0
        with path.open("w", encoding="utf-8") as fh:
            for rec in self.store.chunks(self.sweep.id):
                cols = self._columns(rec)
                names = list(cols)
                for row in zip(*cols.values(), strict=True):
                    # (ASCII: no character in a line that some readers take for a line break)
                    fh.write(json_text(dict(zip(names, row, strict=True)), ascii=True) + "\n")
                    rows += 1
        return rows

    # -- failures -----------------------------------------------------------------------

    def errors(self, statuses: tuple[str, ...] = FAILED) -> Iterator[ErrorRow]:
        for rec in self.store.chunks(self.sweep.id, failed_only=True):
            errs = rec.errors or {}
            for k in rec.failed_offsets(statuses):
                kind, message, tb = errs.get(k, (rec.status(k), "", ""))
                point = rec.params[k] if rec.params is not None else self._point(rec.start + k)
                yield ErrorRow(rec.start + k, rec.status(k), kind, message, tb, point)

    def _point(self, i: int) -> Any:
        return self._space.point(i) if self._space is not None else None


def _array(values: list[Any], type: pa.DataType | None = None) -> pa.Array:
    try:
        arr = pa.array(values, type=type, from_pandas=False)
        if type is None:
            arr.validate(full=True)  # inference can take bytes that are not UTF-8 for a string
        return arr
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        # mixed kinds in one column (e.g. numbers and strings), or what Arrow cannot hold
        # (a dict with keys that are not strings, an int beyond 64 bits): JSON text
        return pa.array([_text(v) for v in values], type=pa.string())


def _column(values: list[Any], f: pa.Field) -> pa.Array:
    """``values`` as an array of the schema's type for their column."""
    arr = _array(values, f.type)
    if arr.type == f.type:
        return arr
    if pa.types.is_string(f.type):
        return pa.array([_text(v) for v in values], pa.string())
    try:
        return arr.cast(f.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(f"the results of column {f.name!r} cannot all be written as {f.type} ({exc}); "
                          "export to .jsonl, which holds any value.") from exc


def _unify(a: pa.DataType | None, b: pa.DataType) -> pa.DataType:
    if a is None or pa.types.is_null(a):
        return b
    if pa.types.is_null(b) or a == b:
        return a
    if _numeric(a) and _numeric(b):
        return pa.float64()
    try:
        return pa.unify_schemas([pa.schema([("c", a)]), pa.schema([("c", b)])],
                                promote_options="permissive").field("c").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.string()


def _storable(t: pa.DataType) -> pa.DataType:
    """A column type every format can write: one holding a struct without fields
    (an empty dict) anywhere, which Parquet cannot write, becomes JSON text."""
    return pa.string() if _empty_struct(t) else t


def _empty_struct(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(_empty_struct(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _empty_struct(t.value_type)
    if pa.types.is_map(t):
        return _empty_struct(t.key_type) or _empty_struct(t.item_type)
    return False


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _csv_type(t: pa.DataType) -> pa.DataType:
    """CSV has no nested or binary types: lists and dicts are written as JSON text,
    bytes as ``\\x`` and their hex digits."""
    if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.string()
    return t


def _csv_array(values: list[Any], t: pa.DataType) -> pa.Array:
    if pa.types.is_string(t) and any(v is not None and not isinstance(v, str) for v in values):
        return pa.array([_text(v) for v in values], type=pa.string())
    return _array(values, t)


def _text(v: Any) -> str | None:
    """A value in a text column: a string as it is, bytes as ``\\x`` hex, anything
    else as JSON."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes | bytearray):
        return "\\x" + bytes(v).hex()
    return json_text(v)


def json_text(value: Any, *, ascii: bool = False) -> str:
    """``value`` as JSON, whatever it holds: bytes as ``"\\x..."`` hex, NaN and the
    infinities as null (JSON has none), keys that are not strings as their text,
    numpy values as plain numbers and lists, tuples and sets as lists."""
    return json.dumps(_plain(value), allow_nan=False, separators=(",", ":"), ensure_ascii=ascii)


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k if isinstance(k, str) else _key(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_plain(x) for x in v]
    if isinstance(v, bytes | bytearray):
        return "\\x" + bytes(v).hex()
    tolist = getattr(v, "tolist", None)
    if callable(tolist):
        return _plain(tolist())
    return str(v)


def _key(k: Any) -> str:
    plain = _plain(k)
    return plain if isinstance(plain, str) else json.dumps(plain, separators=(",", ":"))
