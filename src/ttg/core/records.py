"""The results of one committed chunk, stored as one blob (one write per chunk,
never one per point).

Blob layout (msgpack map): ``v`` values; ``s`` statuses, or nil when all are
ok; ``e`` {offset: [type, message, traceback]} for failed points; ``d``
durations in integer nanoseconds (small ints pack into 1 to 5 bytes), or, when
that is shorter, ``r`` the same as runs ``[value, count, value, count...]``
(a fast function's points are timed per stretch, so they share a value); ``w``
worker id; ``a`` attempt; ``c`` the fingerprint of the code that computed them
(core/fingerprint.py); ``t`` {offset: tries} for points tried more than once in
place (core/failures.py), absent when none was; ``p`` the points themselves, for
file spaces only (generated points are recomputed from the spec on export).
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .chunking import Chunk
from .codec import pack, unpack

STATUSES = ("ok", "error", "crashed", "timeout")
FAILED = ("error", "crashed", "timeout")


@dataclass
class ChunkRecords:
    start: int
    stop: int
    values: list[Any]
    #: nanoseconds per point
    durations: list[int]
    worker: str
    attempt: int
    #: None means every point is "ok".
    statuses: list[str] | None = None
    #: offset -> (type, message, traceback)
    errors: dict[int, tuple[str, str, str]] | None = None
    params: list[Any] | None = None
    #: the digest of the code that computed them (None: recorded by an older TTG)
    code: str | None = None
    #: offset -> tries, for points tried more than once in place (None: every point once)
    tries: dict[int, int] | None = None
    #: the encoded blob, memoized by encode()
    _blob: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def chunk(self) -> Chunk:
        return Chunk(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def status(self, offset: int) -> str:
        return "ok" if self.statuses is None else self.statuses[offset]

    def tries_of(self, offset: int) -> int:
        return 1 if self.tries is None else self.tries.get(offset, 1)

    def counts(self) -> dict[str, int]:
        if self.statuses is None:
            return {"ok": len(self)}
        return dict(Counter(self.statuses))

    def failed_offsets(self, statuses: tuple[str, ...] = FAILED) -> list[int]:
        if self.statuses is None:
            return list(range(len(self))) if "ok" in statuses else []
        return [k for k, s in enumerate(self.statuses) if s in statuses]

    def slice(self, a: int, b: int) -> ChunkRecords:
        """The records of indices ``a..b-1`` (absolute indices within this chunk)."""
        i, j = a - self.start, b - self.start
        errors = None
        if self.errors:
            errors = {k - i: e for k, e in self.errors.items() if i <= k < j} or None
        statuses = self.statuses[i:j] if self.statuses is not None else None
        if statuses is not None and all(s == "ok" for s in statuses):
            statuses = None
        params = self.params[i:j] if self.params is not None else None
        tries = None
        if self.tries:
            tries = {k - i: n for k, n in self.tries.items() if i <= k < j} or None
        return ChunkRecords(a, b, self.values[i:j], self.durations[i:j], self.worker, self.attempt,
                            statuses, errors, params, self.code, tries)

    def encode(self) -> bytes:
        """The blob (computed once; raises TypeError for values msgpack cannot store)."""
        if self._blob is None:
            self._blob = self._pack()
        return self._blob

    def _pack(self) -> bytes:
        runs = _runs_of(self.durations)
        return pack({
            "v": self.values, "s": self.statuses, "w": self.worker, "a": self.attempt, "p": self.params,
            "c": self.code,
            **({"r": runs} if runs is not None else {"d": self.durations}),
            "e": {k: list(v) for k, v in self.errors.items()} if self.errors else None,
            **({"t": self.tries} if self.tries else {}),
        })

    @classmethod
    def decode(cls, start: int, stop: int, blob: bytes) -> ChunkRecords:
        d = unpack(blob)
        errors = {int(k): (v[0], v[1], v[2]) for k, v in d["e"].items()} if d.get("e") else None
        durations = d["d"] if "d" in d else _expand(d["r"])
        tries = {int(k): int(n) for k, n in d["t"].items()} if d.get("t") else None
        return cls(start, stop, d["v"], durations, d["w"], d["a"], d.get("s"), errors, d.get("p"), d.get("c"),
                   tries)

    def rows(self) -> Iterator[tuple[int, str, Any, str | None, float]]:
        """(index, status, value, error text, duration) for each point."""
        errs = self.errors or {}
        for k in range(len(self)):
            e = errs.get(k)
            text = f"{e[0]}: {e[1]}" if e else None
            yield self.start + k, self.status(k), self.values[k], text, self.durations[k] / 1e9


def error_of(exc: BaseException) -> tuple[str, str, str]:
    """(type, message, traceback) of an exception raised by the user's function: a
    failed point's error."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__name__, str(exc), tb


def failed_record(chunk: Chunk, status: str, reason: str, worker: str, attempt: int,
                  params: list[Any] | None = None, code: str | None = None) -> ChunkRecords:
    """Records for indices that never produced a value (crashed, timeout)."""
    n = len(chunk)
    return ChunkRecords(chunk.start, chunk.stop, [None] * n, [0] * n, worker, attempt,
                        [status] * n, {k: (status, reason, "") for k in range(n)}, params, code)


def _runs_of(values: list[int]) -> list[int] | None:
    """``values`` as ``[value, count, ...]`` runs, or None when there are too many
    runs to be worth it (given up on early: timed points are all different). A run
    grows by comparing doubling slices, so a long one costs a few C-level compares."""
    out: list[int] = []
    i, n = 0, len(values)
    while i < n:
        v, j, step = values[i], i + 1, 1
        while j < n:
            e = min(n, j + step)
            if values[j:e] == [v] * (e - j):
                j, step = e, step * 2
            elif step == 1:
                break
            else:
                step = 1
        out += (v, j - i)
        i = j
        if len(out) > 64 + i // 8:
            return None
    return out


def _expand(runs: list[int]) -> list[int]:
    out: list[int] = []
    for k in range(0, len(runs), 2):
        out += [runs[k]] * runs[k + 1]
    return out
