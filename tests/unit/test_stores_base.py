"""stores.base: the keep/redo split that `ttg retry` (ResultStore.reopen) relies on."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.core.records import ChunkRecords
from ttg.stores.base import Progress, _runs


def _rec(start: int, n: int) -> ChunkRecords:
    return ChunkRecords(start, start + n, [None] * n, [0] * n, "w", 1, ["ok"] * n)


def test_runs_examples() -> None:
    assert _runs(_rec(10, 5), {1, 2}) == ([(10, 11), (13, 15)], [(11, 13)])
    assert _runs(_rec(10, 5), {0, 4}) == ([(11, 14)], [(10, 11), (14, 15)])
    assert _runs(_rec(0, 3), {0, 1, 2}) == ([], [(0, 3)])
    assert _runs(_rec(0, 3), set()) == ([(0, 3)], [])
    assert _runs(_rec(7, 1), {0}) == ([], [(7, 8)])
    assert _runs(_rec(0, 4), {0, 2}) == ([(1, 2), (3, 4)], [(0, 1), (2, 3)])


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 60), st.data())
def test_runs_partition_the_chunk(start: int, n: int, data: st.DataObject) -> None:
    bad = set(data.draw(st.lists(st.integers(0, n - 1), max_size=n)))
    keep, redo = _runs(_rec(start, n), bad)
    runs = sorted(keep + redo)
    assert runs[0][0] == start
    assert runs[-1][1] == start + n
    for (_, b), (c, _) in itertools.pairwise(runs):
        assert b == c
    assert all(a < b for a, b in runs)
    assert {i - start for a, b in redo for i in range(a, b)} == bad
    # maximal runs: kept and reopened runs alternate
    kinds = ["redo" if r in redo else "keep" for r in runs]
    assert all(x != y for x, y in itertools.pairwise(kinds))


def test_progress() -> None:
    p = Progress(total=10, ok=5, error=1, crashed=1, timeout=1)
    assert (p.done, p.failed, p.complete) == (8, 3, False)
    assert p.by_status() == {"ok": 5, "error": 1, "crashed": 1, "timeout": 1}
    assert Progress(total=2, ok=2).complete
