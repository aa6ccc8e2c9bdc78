"""A big space spec (a grid with a long explicit axis) is not repeated in every
chunk message (issue 14, item 12): messages carry its digest, each worker reads
the spec from the store and checks it, and a worker whose store does not hold
it leaves the chunks to others instead of failing them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import assert_exactly_once, ttg
from tests.processes import executions, submit
from ttg.core.chunking import Chunk
from ttg.core.sweep import INLINE_SPEC_BYTES, Options, Sweep, spec_digest
from ttg.spaces import GridSpace

N = 2000  # an explicit axis of 2,000 ints: about 9 KB of JSON


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"kind": "grid", "axes": {"i": list(range(N)), "b": [0]}}))
    return path


def test_a_big_spec_travels_as_its_digest() -> None:
    sweep = Sweep.create("tests.funcs:counted_i", GridSpace({"i": list(range(N)), "b": [0]}), Options())
    body = sweep.task(Chunk(0, 10))
    assert "space" not in body and body["space_ref"] == spec_digest(sweep.space)
    small = Sweep.create("tests.funcs:counted_i", GridSpace({"i": list(range(10))}), Options())
    assert small.task(Chunk(0, 10))["space"] == small.space
    assert len(json.dumps(small.space)) <= INLINE_SPEC_BYTES < len(json.dumps(sweep.space))


def test_a_big_grid_runs_exactly_once_with_small_messages(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted_i", "--space", str(spec_file(tmp_path)), "--chunk-size", "100")
    with sqlite3.connect(home / "broker.db") as db:
        sizes = [n for (n,) in db.execute("SELECT length(body) FROM chunks WHERE sweep = ?", (sweep,))]
    assert len(sizes) == N // 100 and max(sizes) < 1024, max(sizes)
    run = ttg(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "2",
              TTG_TEST_COUNTER=str(counter))
    assert run.returncode == 0, run.stderr
    assert executions(counter) == dict.fromkeys(range(N), 1)
    assert_exactly_once(home, sweep, N)


def test_a_worker_on_another_store_leaves_the_chunks_to_others(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted_i", "--space", str(spec_file(tmp_path)), "--chunk-size", "500")
    other = ttg(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "1",
                "--store", f"sqlite://{tmp_path / 'other.db'}", TTG_TEST_COUNTER=str(counter), timeout=60)
    assert other.returncode == 0, other.stderr
    assert "the store does not hold sweep" in other.stderr and "--store" in other.stderr
    assert not counter.exists()
    status = ttg(home, "status", sweep, check=True).stdout
    assert "dead" not in status.lower() or "dead 0" in status.lower(), status
    run = ttg(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "1",
              TTG_TEST_COUNTER=str(counter))
    assert run.returncode == 0, run.stderr
    assert executions(counter) == dict.fromkeys(range(N), 1)
    assert_exactly_once(home, sweep, N)
