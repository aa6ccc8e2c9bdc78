"""``ttg.context()`` inside the function, through `ttg.run` and real worker
processes: the index and attempt of the point being computed, and a seed that
depends on (sweep, index) only, on every space kind, chunking and rerun."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import ttg
from tests import funcs
from ttg.core.context import seed_of


def expected_seed(sweep: str, index: int) -> int:
    """The documented derivation, written out again: BLAKE2b-64 of "sweep\\0index", top 63 bits."""
    digest = hashlib.blake2b(f"{sweep}\0{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def rows(res: ttg.Results) -> list[dict[str, Any]]:
    return sorted(res.to_arrow().to_pylist(), key=lambda r: r["index"])


@pytest.mark.parametrize("space", [ttg.Range(1060, start=1000), ttg.Grid(a=[1, 2, 3], b=["x", "y"]),
                                   ttg.Random(25, seed=3, u=ttg.uniform(0, 1))],
                         ids=["range", "grid", "random"])
def test_each_point_sees_its_own_index_and_seed(home: Path, space: ttg.Space) -> None:
    res = ttg.run("tests.funcs:with_context", space, workers=2, chunk_size=7, home=home)
    table = rows(res)
    assert [r["index"] for r in table] == list(range(space.size))
    for r in table:
        assert r["status"] == "ok"
        assert r["ctx_index"] == r["index"] and r["ctx_sweep"] == res.name
        assert r["ctx_attempt"] == r["attempt"] == 1 and r["ctx_worker"] == r["worker"]
        assert r["ctx_seed"] == expected_seed(res.name, r["index"])
    assert len({r["ctx_seed"] for r in table}) == space.size
    assert len({r["ctx_draw"] for r in table}) == space.size  # ctx.rng() is seeded per point


def test_seeds_do_not_depend_on_chunking_workers_or_the_machine(tmp_path: Path) -> None:
    one = rows(ttg.run("tests.funcs:with_context", ttg.Range(50), workers=1, chunk_size=50,
                       home=tmp_path / "a"))
    two = rows(ttg.run("tests.funcs:with_context", ttg.Range(50), workers=2, chunk_size=3,
                       home=tmp_path / "b"))
    assert {r["worker"] for r in one}.isdisjoint(r["worker"] for r in two)
    assert [(r["ctx_sweep"], r["ctx_seed"], r["ctx_draw"]) for r in one] == \
        [(r["ctx_sweep"], r["ctx_seed"], r["ctx_draw"]) for r in two]


def test_the_attempt_counts_the_chunks_deliveries(home: Path) -> None:
    res = ttg.run("tests.funcs:context_attempt_exit_on_13", ttg.Range(40), workers=1, chunk_size=10,
                  home=home)
    table = rows(res)
    assert [r["status"] for r in table] == ["ok"] * 40
    assert all(r["value"] == r["attempt"] for r in table)
    by_index = {r["index"]: r["value"] for r in table}
    assert by_index[13] == 2  # the chunk 10..20 died once, on 13
    assert {by_index[i] for i in range(40) if not 10 <= i < 20} == {1}


def test_a_batched_function_gets_the_first_index_of_its_batch(home: Path) -> None:
    res = ttg.run("tests.funcs:batched_seeds", ttg.Range(30), workers=2, chunk_size=8, batched=True,
                  home=home)
    table = rows(res)
    assert [r["value"] for r in table] == [expected_seed(res.name, i) for i in range(30)]


def test_outside_a_worker_there_is_no_context() -> None:
    assert ttg.context() is None
    with pytest.raises(AssertionError):
        funcs.with_context(1)


def test_seeds_are_pinned() -> None:
    """Users rely on reruns drawing the same numbers: the derivation never changes."""
    assert seed_of("sq-0123456789", 0) == expected_seed("sq-0123456789", 0)
    assert [seed_of("sq-0123456789", i) for i in range(3)] == PINNED
    assert all(0 <= seed_of("s", i) < 2**63 for i in range(1000))


PINNED = [4271270010389612748, 5689719375934952610, 1343763263984316150]
