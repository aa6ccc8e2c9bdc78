"""chunk_size="auto": chunks that run past the target hand the rest back, and every
index still ends with exactly one record."""

from __future__ import annotations

from pathlib import Path

import ttg
from tests.conftest import assert_exactly_once, records_per_index
from ttg import settings as settings_mod
from ttg.core.chunking import AUTO_CHUNKS
from ttg.stores import open_store


def test_auto_chunks_shrink_to_the_target(home: Path) -> None:
    total = 4096  # 256 planned chunks of 16 points, 1 ms each: 16 ms per chunk
    res = ttg.run("tests.funcs:sleep_ms", ttg.Range(total), workers=2, home=home,
                  target_chunk_seconds=0.004)
    assert res.outcome == "complete"
    assert_exactly_once(home, res.name, total)
    store = open_store(settings_mod.load(environ={}, home=home))
    try:
        committed = [(rec.start, rec.stop) for rec in store.chunks(res.name)]
    finally:
        store.close()
    # each 16 ms chunk stopped after ~4 ms and handed the rest back as a new chunk
    assert len(committed) > AUTO_CHUNKS * 1.5
    assert max(b - a for a, b in committed) <= 16
    table = res.to_arrow()
    assert table.column("value").to_pylist() == list(range(total))
    assert len(records_per_index(home, res.name)) == total


def test_auto_without_handback_for_fast_functions(home: Path) -> None:
    res = ttg.run("tests.funcs:square", ttg.Range(100_000), workers=2, home=home)
    assert res.outcome == "complete"
    store = open_store(settings_mod.load(environ={}, home=home))
    try:
        sizes = [len(rec) for rec in store.chunks(res.name)]
    finally:
        store.close()
    assert len(sizes) == AUTO_CHUNKS  # fast chunks never hit the 1 s target
    assert_exactly_once(home, res.name, 100_000)
