"""File spaces: the rows of a CSV, JSONL or Parquet file, one point per row.

The client streams the file (memory proportional to a chunk) and ships each
chunk's rows inside the chunk message, so workers never need the file. The
spec carries the file's SHA-256, so a sweep over a file that changed since it
was submitted is refused instead of silently mixing two versions.

CSV column types are inferred by pyarrow from the first block (1 MiB) of the
file; JSONL rows must be JSON objects; Parquet keeps its own types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .base import Space

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_BATCH = 8192


class FileSpace(Space):
    kind = "file"

    def __init__(self, path: str | Path, format: str | None = None, sha256: str | None = None) -> None:
        self.path = Path(path)
        fmt = format or FORMATS.get(self.path.suffix.lower())
        if fmt not in ("csv", "jsonl", "parquet"):
            raise SpecError(f"space.format: cannot tell the format of {self.path.name!r}; "
                            "use a .csv, .jsonl or .parquet file or set format to one of those.")
        self.format: str = fmt
        if not self.path.is_file():
            raise SpecError(f"space.path: rows file {str(self.path)!r} does not exist; check the path.")
        self._expected_sha = sha256
        self._sha: str | None = None
        self._len: int | None = None
        self._fields: list[str] | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FileSpace:
        if not isinstance(spec.get("path"), str):
            raise SpecError("space.path: a file space needs 'path', the CSV, JSONL or Parquet file.")
        return cls(spec["path"], spec.get("format"), spec.get("sha256"))

    @property
    def sha256(self) -> str:
        if self._sha is None:
            h = hashlib.sha256()
            with self.path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._sha = h.hexdigest()
            if self._expected_sha and self._sha != self._expected_sha:
                raise SpecError(f"rows file {self.path.name!r} changed since the sweep was submitted "
                                "(its SHA-256 differs); restore it or submit a new sweep.")
        return self._sha

    def spec(self) -> dict[str, Any]:
        return {"kind": "file", "path": str(self.path), "format": self.format, "sha256": self.sha256}

    @property
    def size(self) -> int:
        if self._len is None:
            if self.format == "parquet":
                self._len = int(self._parquet().metadata.num_rows)
            else:
                self._len = sum(len(b) for b in self.batches(_BATCH))
        return self._len

    @property
    def fields(self) -> list[str]:
        if self._fields is None:
            first = next(self.batches(1), [])
            self._fields = list(first[0]) if first else []
        return self._fields

    def point(self, i: int) -> dict[str, Any]:
        """O(i): files are read as streams. Workers get rows in chunk messages instead."""
        for k, row in enumerate(self.iter_rows()):
            if k == i:
                return row
        raise IndexError(i)

    def points(self, start: int, stop: int) -> list[Any]:
        out: list[Any] = []
        for k, row in enumerate(self.iter_rows()):
            if k >= stop:
                break
            if k >= start:
                out.append(row)
        return out

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches(_BATCH):
            yield from batch

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The rows in order, ``size`` at a time (the last batch may be shorter)."""
        pending: list[dict[str, Any]] = []
        for block in self._blocks():
            pending.extend(block)
            at = 0  # slice by offset: cutting the list's head per batch is quadratic for small sizes
            while len(pending) - at >= size:
                yield pending[at:at + size]
                at += size
            del pending[:at]
        if pending:
            yield pending

    def _blocks(self) -> Iterator[list[dict[str, Any]]]:
        if self.format == "jsonl":
            yield from self._jsonl_blocks()
            return
        import pyarrow as pa

        try:
            if self.format == "parquet":
                for rb in self._parquet().iter_batches(batch_size=_BATCH):
                    yield rb.to_pylist()
            else:
                import pyarrow.csv as pacsv

                with pacsv.open_csv(self.path) as reader:
                    for rb in reader:
                        yield rb.to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise SpecError(f"rows file {self.path.name!r} is not valid {self.format.upper()}: "
                            f"{str(exc).splitlines()[0]}; fix the file and try again.") from exc

    def _parquet(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SpecError(f"rows file {self.path.name!r} is not valid Parquet: "
                            f"{str(exc).splitlines()[0]}; fix the file and try again.") from exc

    def _jsonl_blocks(self) -> Iterator[list[dict[str, Any]]]:
        block: list[dict[str, Any]] = []
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise SpecError(f"rows file {self.path.name!r} line {lineno} is not valid UTF-8 "
                                    f"({exc.reason} at byte {exc.start}); save the file as UTF-8 and try "
                                    "again.") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SpecError(f"rows file {self.path.name!r} line {lineno} is not valid JSON "
                                    f"({exc.msg}); fix that line and try again.") from None
                if not isinstance(row, dict):
                    raise SpecError(f"rows file {self.path.name!r} line {lineno} is not a JSON "
                                    "object; write one object per line.")
                block.append(row)
                if len(block) >= _BATCH:
                    yield block
                    block = []
        if block:
            yield block
