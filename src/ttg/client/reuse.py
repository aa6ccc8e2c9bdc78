"""The point cache (``--reuse``): points that the same function, with the same code,
already computed ok in any sweep of this store are copied into a new sweep as
committed records instead of being computed again.

A point is found again by its canonical encoding (msgpack, dict keys sorted),
whatever its index: growing a range, refining a grid axis or adding rows to a
file computes only the new points. Errors, crashes and timeouts are never
reused. A copied record says where it came from (its worker is ``reused from
SWEEP``, its attempt 0) and keeps the duration measured then.

Only a sweep that asks pays: the cache is built at submit, in the client, from
the earlier sweeps' committed records (one pass over them), then dropped; no
store keeps anything per point for it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..core.chunking import gaps
from ..core.codec import pack
from ..core.records import ChunkRecords
from ..core.sweep import Sweep
from ..spaces import Space
from ..stores.base import ResultStore

log = logging.getLogger(__name__)

#: points read (or copied) per step
BATCH = 10_000


@dataclass(frozen=True)
class Reused:
    points: int
    #: the sweeps they came from
    sources: tuple[str, ...]


def reuse(sweep: Sweep, space: Space, store: ResultStore) -> Reused:
    """Commit to ``sweep`` what earlier sweeps of the same function and code computed
    ok for any of its points not committed yet; returns how many were copied."""
    donors = [i.sweep for i in store.sweeps() if i.sweep.id != sweep.id and _same_code(i.sweep, sweep)]
    if not donors:
        return Reused(0, ())
    cache: dict[bytes, tuple[Any, int, str]] = {}
    for donor in donors:
        for rec, points in _committed_points(store, donor):
            for k, point in enumerate(points):
                if rec.status(k) == "ok":
                    cache.setdefault(_key(point), (rec.values[k], rec.durations[k], donor.id))
    copied, sources = 0, set()
    todo = gaps(0, sweep.total, store.committed_ranges(sweep.id, 0, sweep.total))
    for start, points in _points(space, todo):
        run: list[tuple[int, Any, int, Any]] = []  # (index, value, duration, point): one source, in a row
        source = ""
        for k, point in enumerate(points):
            hit = cache.get(_key(point))
            i = start + k
            if hit is None or (run and (hit[2] != source or run[-1][0] != i - 1)):
                copied += _commit(store, sweep, run, source)
                run = []
            if hit is not None:
                source = hit[2]
                run.append((i, hit[0], hit[1], point))
                sources.add(source)
        copied += _commit(store, sweep, run, source)
    if copied:
        log.info("sweep %s: %d points reused from %s", sweep.id, copied, ", ".join(sorted(sources)))
    return Reused(copied, tuple(sorted(sources)))


def _same_code(a: Sweep, b: Sweep) -> bool:
    return (a.function, a.options.batched) == (b.function, b.options.batched) and \
        a.code is not None and b.code is not None and a.code.digest == b.code.digest


def _key(point: Any) -> bytes:
    """A point's identity: its canonical encoding, hashed (16 bytes)."""
    return hashlib.blake2b(pack(_canonical(point)), digest_size=16).digest()


def _canonical(v: Any) -> Any:
    if isinstance(v, dict):
        return [[_canonical(k), _canonical(x)] for k, x in sorted(v.items(), key=lambda kv: pack(kv[0]))]
    if isinstance(v, list | tuple):
        return [_canonical(x) for x in v]
    return v


def _committed_points(store: ResultStore, sweep: Sweep) -> Iterator[tuple[ChunkRecords, Any]]:
    """Each committed chunk of ``sweep`` with its points (file spaces keep theirs)."""
    space = None if sweep.is_file else sweep.make_space()
    for rec in store.chunks(sweep.id):
        if rec.params is not None:
            yield rec, rec.params
        elif space is not None:
            yield rec, space.points(rec.start, rec.stop)


def _points(space: Space, ranges: list[Any]) -> Iterator[tuple[int, Any]]:
    """(start, points) over ``ranges`` of ``space``, BATCH points at a time; a file's
    rows are read once, in order."""
    if not ranges:
        return
    if getattr(space, "kind", "") == "file":
        rows = iter(space.iter_rows())  # type: ignore[attr-defined]
        at = 0
        for r in ranges:
            batch: list[Any] = []
            for row in rows:
                if at >= r.start:
                    batch.append(row)
                at += 1
                if at >= r.stop:
                    break
            yield r.start, batch
        return
    for r in ranges:
        for a in range(r.start, r.stop, BATCH):
            yield a, space.points(a, min(a + BATCH, r.stop))


def _commit(store: ResultStore, sweep: Sweep, run: list[tuple[int, Any, int, Any]], source: str) -> int:
    if not run:
        return 0
    rec = ChunkRecords(run[0][0], run[-1][0] + 1, [r[1] for r in run], [r[2] for r in run],
                       f"reused from {source}", 0, params=[r[3] for r in run] if sweep.is_file else None,
                       code=sweep.code.digest if sweep.code else None)
    return len(rec) if store.commit(sweep.id, rec) else 0
