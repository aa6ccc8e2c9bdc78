"""Chunks: plan, gaps, split, remainder pieces, auto size."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.core.chunking import (
    AUTO_CHUNKS,
    AUTO_MIN_CHUNK,
    Chunk,
    auto_size,
    gaps,
    plan,
    remainder_pieces,
    split,
)

FAST = settings(max_examples=50, deadline=None)


def assert_partition(pieces: list[Chunk], start: int, stop: int) -> None:
    """The pieces are sorted, contiguous, and cover [start, stop) exactly once."""
    assert pieces, "no pieces"
    assert pieces[0].start == start
    assert pieces[-1].stop == stop
    for a, b in itertools.pairwise(pieces):
        assert a.stop == b.start


def test_chunk_basics() -> None:
    c = Chunk(3, 10)
    assert len(c) == 7
    assert str(c) == "[3, 10)"
    assert sorted([Chunk(5, 6), Chunk(0, 9), Chunk(0, 2)]) == [Chunk(0, 2), Chunk(0, 9), Chunk(5, 6)]
    assert Chunk(1, 2) == Chunk(1, 2)
    assert hash(Chunk(1, 2)) == hash(Chunk(1, 2))
    for start, stop in [(0, 0), (5, 3), (-1, 2)]:
        with pytest.raises(ValueError, match="start < stop"):
            Chunk(start, stop)


@FAST
@given(st.integers(0, 10**6), st.integers(0, 5000), st.integers(1, 600))
def test_plan_covers_the_range_exactly_once(start: int, n: int, size: int) -> None:
    chunks = list(plan(start, start + n, size))
    if n == 0:
        assert chunks == []
        return
    assert_partition(chunks, start, start + n)
    assert all(len(c) == size for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= size
    assert len(chunks) == -(-n // size)


def test_plan_is_lazy_and_rejects_bad_sizes() -> None:
    chunks = plan(0, 10**12, 1000)
    assert next(chunks) == Chunk(0, 1000)
    assert next(chunks) == Chunk(1000, 2000)
    with pytest.raises(ValueError, match="at least 1"):
        list(plan(0, 10, 0))


@st.composite
def covered_sets(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    """A range and sorted, disjoint covered ranges that may stick out of it on either side."""
    start = draw(st.integers(0, 100))
    stop = start + draw(st.integers(1, 200))
    cuts = sorted(set(draw(st.lists(st.integers(0, 320), max_size=20))))
    covered = [(a, b) for a, b in itertools.pairwise(cuts) if draw(st.booleans())]
    return start, stop, covered


@FAST
@given(covered_sets())
def test_gaps_and_covered_partition_the_range(case: tuple[int, int, list[tuple[int, int]]]) -> None:
    start, stop, covered = case
    found = gaps(start, stop, covered)
    is_covered = {i for a, b in covered for i in range(a, b)}
    in_gaps = [i for c in found for i in range(c.start, c.stop)]
    assert len(in_gaps) == len(set(in_gaps))  # gaps do not overlap
    assert set(in_gaps) == set(range(start, stop)) - is_covered
    assert found == sorted(found)
    for a, b in itertools.pairwise(found):
        assert a.stop < b.start  # maximal: two gaps never touch
    assert all(start <= c.start and c.stop <= stop for c in found)


def test_gaps_examples() -> None:
    assert gaps(0, 10, []) == [Chunk(0, 10)]
    assert gaps(0, 10, [(0, 10)]) == []
    assert gaps(0, 10, [(2, 4), (6, 8)]) == [Chunk(0, 2), Chunk(4, 6), Chunk(8, 10)]
    assert gaps(5, 10, [(0, 6), (9, 20)]) == [Chunk(6, 9)]
    assert gaps(5, 10, [(0, 5), (10, 20)]) == [Chunk(5, 10)]


@FAST
@given(st.integers(0, 1000), st.integers(1, 500), st.data())
def test_split_partitions_the_chunk(start: int, n: int, data: st.DataObject) -> None:
    chunk = Chunk(start, start + n)
    halves = split(chunk)
    assert_partition(halves, chunk.start, chunk.stop)
    if n == 1:
        assert halves == [chunk]
    else:
        assert len(halves) == 2
        assert abs(len(halves[0]) - len(halves[1])) <= 1

    culprit = data.draw(st.integers(start, start + n - 1))
    pieces = split(chunk, culprit)
    assert_partition(pieces, chunk.start, chunk.stop)
    assert Chunk(culprit, culprit + 1) in pieces
    assert len(pieces) == (1 if n == 1 else 2 if culprit in (chunk.start, chunk.stop - 1) else 3)


def test_split_with_a_culprit_outside_the_chunk_halves_it() -> None:
    assert split(Chunk(10, 20), culprit=25) == [Chunk(10, 15), Chunk(15, 20)]
    assert split(Chunk(10, 20), culprit=9) == [Chunk(10, 15), Chunk(15, 20)]
    assert split(Chunk(10, 20), culprit=10) == [Chunk(10, 11), Chunk(11, 20)]
    assert split(Chunk(10, 20), culprit=19) == [Chunk(10, 19), Chunk(19, 20)]


def test_repeated_halving_isolates_any_index() -> None:
    chunk, poison = Chunk(0, 1000), 613
    steps = 0
    while len(chunk) > 1:
        chunk = next(c for c in split(chunk) if c.start <= poison < c.stop)
        steps += 1
    assert chunk == Chunk(poison, poison + 1)
    assert steps <= 10


@FAST
@given(st.integers(0, 10**6), st.integers(1, 10**5), st.floats(1e-6, 10), st.floats(0.01, 10))
def test_remainder_pieces_partition_and_stay_bounded(start: int, n: int, per_point: float,
                                                     target: float) -> None:
    pieces = remainder_pieces(start, start + n, per_point, target)
    assert_partition(pieces, start, start + n)
    assert 1 <= len(pieces) <= 8
    if len(pieces) < 8:
        # it stopped splitting because every piece is short enough (or a single point)
        assert all(len(p) < 2 or len(p) * per_point <= 4 * target for p in pieces)


@FAST
@given(st.integers(1, 10**5), st.floats(1e-6, 10), st.integers(2, 200))
def test_remainder_pieces_keep_points_at_once_busy(n: int, per_point: float, least: int) -> None:
    """A child running ``least / 2`` points at once never gets a piece split under ``least``."""
    pieces = remainder_pieces(0, n, per_point, 0.1, least=least)
    assert_partition(pieces, 0, n)
    assert len(pieces) == 1 or all(len(p) >= least for p in pieces)


def test_remainder_pieces_examples() -> None:
    assert remainder_pieces(0, 100, 0.01, 1.0) == [Chunk(0, 100)]  # 1 s: one piece
    assert remainder_pieces(0, 500, 0.01, 1.0) == [Chunk(0, 250), Chunk(250, 500)]
    assert len(remainder_pieces(0, 10**6, 1.0, 1.0)) == 8
    assert remainder_pieces(7, 8, 100.0, 1.0) == [Chunk(7, 8)]


@pytest.mark.parametrize(("total", "size"), [
    (0, 1), (1, 1), (10, 10), (AUTO_MIN_CHUNK, AUTO_MIN_CHUNK), (AUTO_CHUNKS, AUTO_MIN_CHUNK),
    (AUTO_CHUNKS * AUTO_MIN_CHUNK, AUTO_MIN_CHUNK), (AUTO_CHUNKS * AUTO_MIN_CHUNK + 1, AUTO_MIN_CHUNK + 1),
    (10**8, 390_625),
])
def test_auto_size(total: int, size: int) -> None:
    assert auto_size(total) == size
    assert len(list(plan(0, total, size))) <= AUTO_CHUNKS


@FAST
@given(st.integers(1, 10**9))
def test_auto_size_gives_at_most_auto_chunks_of_a_useful_size(total: int) -> None:
    size = auto_size(total)
    assert size >= min(total, AUTO_MIN_CHUNK)
    assert -(-total // size) <= AUTO_CHUNKS
    if size > min(total, AUTO_MIN_CHUNK):  # the smallest size that gives at most AUTO_CHUNKS
        assert -(-total // (size - 1)) > AUTO_CHUNKS
