"""Chunks: contiguous index ranges ``[start, stop)``, and the pure functions that plan,
split and resize them.

``chunk_size="auto"`` works in two steps. At submit time nothing is known
about the function's cost, so the space is cut into ``AUTO_CHUNKS`` equal
chunks (a few hundred messages even for 100 million points). A worker then
measures as it computes: once a chunk has run for the target duration, it
commits what it has and hands the rest back to the queue (in halves when the
rest is much longer than the target, so idle workers get work at once).
After a few chunks every chunk is about the target duration, whatever the
function costs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: Number of chunks an "auto" sweep is first cut into...
AUTO_CHUNKS = 256
#: ...unless that would make chunks smaller than this (per-chunk overhead would
#: dominate; a slow function's chunks get cut down by the hand-back anyway).
AUTO_MIN_CHUNK = 16
#: Default target duration of one chunk with chunk_size="auto", in seconds.
TARGET_CHUNK_SECONDS = 1.0
#: The most points a sweep may have: indices are exact in every store and broker up to
#: 2**53 (Redis keeps them as scores, doubles).
MAX_POINTS = 2**53
#: The most points of a fixed chunk size: a worker holds a chunk's results in memory.
MAX_CHUNK_POINTS = 10_000_000
#: The most points of a batched chunk with chunk_size="auto": one call gets them all.
MAX_BATCH_POINTS = 1_000_000
#: The most points a child computes of a chunk with chunk_size="auto" before it
#: commits them and hands the rest back, even before the target duration: a fast
#: function makes millions of results a second, and a child holds them in memory
#: until they commit (~60 bytes each, ~400 for a failed point and its message).
MAX_AUTO_PIECE = 250_000
#: The most chunks a sweep is queued as (every chunk is a message and a row).
MAX_CHUNKS = 10_000_000


@dataclass(frozen=True, order=True)
class Chunk:
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"a chunk needs 0 <= start < stop, got [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        return f"[{self.start}, {self.stop})"


def auto_size(total: int, *, batched: bool = False, concurrency: int = 1) -> int:
    """The first chunk size of an ``auto`` sweep of ``total`` points (points are
    made as they are computed, so a chunk may be large; a batched chunk is one
    call with all its points, so it is at most MAX_BATCH_POINTS). A child runs
    ``concurrency`` points of a chunk at once: a chunk has at least two rounds of
    them, so that they are all busy."""
    least = max(AUTO_MIN_CHUNK, 2 * concurrency)
    size = max(1, min(total, least), math.ceil(total / AUTO_CHUNKS))
    return min(size, MAX_BATCH_POINTS) if batched else size


def plan(start: int, stop: int, size: int) -> Iterator[Chunk]:
    """Cut ``[start, stop)`` into chunks of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    for a in range(start, stop, size):
        yield Chunk(a, min(a + size, stop))


def gaps(start: int, stop: int, covered: Iterable[tuple[int, int]]) -> list[Chunk]:
    """The parts of ``[start, stop)`` not covered by the (sorted, disjoint) ``covered`` ranges."""
    out: list[Chunk] = []
    at = start
    for a, b in covered:
        if b <= at:
            continue
        if a >= stop:
            break
        if a > at:
            out.append(Chunk(at, a))
        at = max(at, b)
    if at < stop:
        out.append(Chunk(at, stop))
    return out


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping or touching ones merged (the dead letters of a
    split chunk can overlap)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def split(chunk: Chunk, culprit: int | None = None) -> list[Chunk]:
    """Split a failing chunk to isolate its poison index.

    With the failing index known (the supervisor saw where the child was), cut
    around it, isolating it at once; otherwise cut in halves.
    """
    if len(chunk) < 2:
        return [chunk]
    if culprit is not None and chunk.start <= culprit < chunk.stop:
        bounds = [chunk.start, culprit, culprit + 1, chunk.stop]
        return [Chunk(a, b) for a, b in itertools.pairwise(bounds) if a < b]
    mid = chunk.start + len(chunk) // 2
    return [Chunk(chunk.start, mid), Chunk(mid, chunk.stop)]


def remainder_pieces(start: int, stop: int, seconds_per_point: float, target: float,
                     least: int = 1) -> list[Chunk]:
    """How to hand back ``[start, stop)`` after a chunk hit its target duration.

    One piece when the rest takes about the target; halves (recursively, up to
    eight pieces) while a piece would take more than four targets, so that
    idle workers get a share at once; never into pieces under ``least`` points (a
    child running points at once needs that many to keep them all busy).
    """
    pieces = [Chunk(start, stop)]
    while len(pieces) < 8:
        longest = max(pieces, key=len)
        if len(longest) < max(2, 2 * least) or len(longest) * seconds_per_point <= 4 * target:
            break
        pieces.remove(longest)
        pieces.extend(split(longest))
    return sorted(pieces)
