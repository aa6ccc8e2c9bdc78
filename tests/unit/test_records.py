"""The records of one committed chunk: one blob, sliceable, countable."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.core.chunking import Chunk
from ttg.core.records import FAILED, ChunkRecords, failed_record

STATUS = st.sampled_from(["ok", "ok", "ok", "error", "crashed", "timeout"])


@st.composite
def chunk_records(draw: st.DrawFn) -> ChunkRecords:
    start = draw(st.integers(0, 10**6))
    n = draw(st.integers(1, 40))
    statuses = draw(st.none() | st.lists(STATUS, min_size=n, max_size=n))
    value = st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=5)
    values: list[Any] = draw(st.lists(value, min_size=n, max_size=n))
    errors = None
    if statuses is not None:
        errors = {k: (s, f"message {k}", f"traceback {k}") for k, s in enumerate(statuses) if s != "ok"}
        errors = errors or None
    params = draw(st.none() | st.just([{"row": start + k} for k in range(n)]))
    # timed points differ; a fast function's stretch shares one value (stored as runs)
    durations = draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n)
                     | st.lists(st.sampled_from([0, 7, 10**9]), min_size=n, max_size=n))
    # points tried more than once in place (core/failures.py): sparse, offset -> tries
    tries = draw(st.none() | st.dictionaries(st.integers(0, n - 1), st.integers(2, 101), min_size=1))
    return ChunkRecords(start, start + n, values, durations, draw(st.text(max_size=8)),
                        draw(st.integers(1, 5)), statuses, errors, params, None, tries)


@settings(max_examples=50, deadline=None)
@given(chunk_records())
def test_encode_decode_round_trip(rec: ChunkRecords) -> None:
    blob = rec.encode()
    assert rec.encode() is blob  # memoized
    back = ChunkRecords.decode(rec.start, rec.stop, blob)
    assert back == rec
    assert back.chunk == Chunk(rec.start, rec.stop)


@settings(max_examples=50, deadline=None)
@given(chunk_records(), st.data())
def test_slices_put_back_together_give_the_chunk(rec: ChunkRecords, data: st.DataObject) -> None:
    cut = data.draw(st.integers(rec.start, rec.stop))
    parts = [rec.slice(a, b) for a, b in [(rec.start, cut), (cut, rec.stop)] if a < b]
    assert sum(len(p) for p in parts) == len(rec)
    rows = [row for p in parts for row in p.rows()]
    assert rows == list(rec.rows())
    assert [p.tries_of(k) for p in parts for k in range(len(p))] == [rec.tries_of(k) for k in range(len(rec))]
    for p in parts:
        assert ChunkRecords.decode(p.start, p.stop, p.encode()) == p
        if p.statuses is not None:
            assert any(s != "ok" for s in p.statuses)  # all-ok slices drop their statuses
        assert set(p.errors or {}) == set(p.failed_offsets())
    merged: dict[str, int] = {}
    for p in parts:
        for k, v in p.counts().items():
            merged[k] = merged.get(k, 0) + v
    assert merged == {k: v for k, v in rec.counts().items() if v}


def test_counts_and_failed_offsets() -> None:
    ok = ChunkRecords(10, 13, [1, 2, 3], [5, 5, 5], "w1", 1)
    assert ok.counts() == {"ok": 3}
    assert ok.failed_offsets() == []
    assert [ok.status(k) for k in range(3)] == ["ok"] * 3

    mixed = ChunkRecords(10, 15, [1, None, None, 4, None], [1] * 5, "w1", 2,
                         ["ok", "error", "crashed", "ok", "timeout"],
                         {1: ("ValueError", "bad", "tb"), 2: ("crashed", "SIGSEGV", ""),
                          4: ("timeout", "after 5 s", "")})
    assert mixed.counts() == {"ok": 2, "error": 1, "crashed": 1, "timeout": 1}
    assert mixed.failed_offsets() == [1, 2, 4]
    assert mixed.failed_offsets(("error",)) == [1]
    assert mixed.failed_offsets(("crashed", "timeout")) == [2, 4]
    assert list(mixed.rows())[1] == (11, "error", None, "ValueError: bad", 1e-9)


def test_slice_reindexes_errors() -> None:
    rec = ChunkRecords(100, 104, [None, 1, None, 3], [0, 1, 2, 3], "w", 1,
                       ["error", "ok", "error", "ok"], {0: ("E", "a", ""), 2: ("E", "c", "")},
                       params=["p0", "p1", "p2", "p3"])
    tail = rec.slice(102, 104)
    assert (tail.start, tail.stop, tail.values, tail.durations) == (102, 104, [None, 3], [2, 3])
    assert tail.statuses == ["error", "ok"]
    assert tail.errors == {0: ("E", "c", "")}
    assert tail.params == ["p2", "p3"]
    clean = rec.slice(101, 102)
    assert clean.statuses is None
    assert clean.errors is None
    assert clean.counts() == {"ok": 1}


def test_failed_record() -> None:
    rec = failed_record(Chunk(13, 15), "crashed", "SIGSEGV (after 3 attempts)", "w9", 3)
    assert rec.counts() == {"crashed": 2}
    assert rec.values == [None, None]
    assert rec.failed_offsets(FAILED) == [0, 1]
    assert rec.errors == {0: ("crashed", "SIGSEGV (after 3 attempts)", ""),
                          1: ("crashed", "SIGSEGV (after 3 attempts)", "")}
    assert ChunkRecords.decode(13, 15, rec.encode()) == rec


def test_unstorable_value_raises_type_error() -> None:
    rec = ChunkRecords(0, 1, [object()], [0], "w", 1)
    with pytest.raises(TypeError):
        rec.encode()


def test_durations_of_a_stretch_are_stored_as_runs() -> None:
    """A fast function's 10,000 points: 32 timed ones, then one stretch value. The
    blob holds runs instead of 10,000 durations, and decodes to the same list."""
    durations = list(range(100, 132)) + [57] * 9968
    rec = ChunkRecords(0, 10_000, [None] * 10_000, durations, "w", 1)
    plain = ChunkRecords(0, 10_000, [None] * 10_000, list(range(10_000)), "w", 1)
    assert len(rec.encode()) < len(plain.encode()) - 20_000
    assert ChunkRecords.decode(0, 10_000, rec.encode()).durations == durations
    assert ChunkRecords.decode(0, 10_000, plain.encode()).durations == list(range(10_000))
