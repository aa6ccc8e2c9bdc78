"""Shard mode (``ttg worker --shard I/N``) with local processes standing in for the
pods of a Kubernetes Indexed Job: one is SIGKILLed mid-slice and run again, as
Kubernetes would with backoffLimitPerIndex."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    assert_exactly_once_in,
    empty_postgres,
    postgres_url,
    redis_url,
    store_records_per_index,
    ttg,
)
from tests.processes import Procs, executions, wait_until
from ttg.client.shard import Shard, parse
from ttg.errors import ConfigError
from ttg.settings import load

N = 3
TOTAL = 180
SWEEP = "sharded"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    yield p
    p.cleanup()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return redis_url(tmp_path)
    if request.param == "postgres":  # what overlays/shard-job uses
        empty_postgres()
        return postgres_url()
    return f"sqlite://{tmp_path / 'shared' / 'results.db'}"


def test_slices_cover_every_index_once() -> None:
    for total in (1, 2, 7, 180, 10_000_019):
        for n in (1, 3, 8):
            slices = [Shard(i, n).bounds(total) for i in range(n)]
            assert slices[0][0] == 0 and slices[-1][1] == total
            assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))


def test_parse_and_auto_index() -> None:
    assert parse("2/5") == Shard(2, 5)
    for bad in ("5/5", "-1/3", "1", "a/3", "0/0", "auto/3"):
        with pytest.raises(ConfigError):
            parse(bad)
    s = load(environ={"TTG_SHARD": "auto/4", "JOB_COMPLETION_INDEX": "3"})
    assert parse(s.shard) == Shard(3, 4)
    assert load(environ={"JOB_COMPLETION_INDEX": "1"}, shard="auto/2").shard == "1/2"


def test_killed_shard_is_rerun_without_recomputing(tmp_path: Path, procs: Procs, shared_store: str) -> None:
    home, counter = tmp_path / "home", tmp_path / "counter"
    (tmp_path / "shared").mkdir()
    env = {"TTG_STORE": shared_store, "TTG_TEST_COUNTER": str(counter)}
    # every pod registers the sweep first: idempotent, so running it N times is fine
    for _ in range(2):
        ttg(home, "submit", "tests.funcs:counted_slow", "--range", str(TOTAL), "--chunk-size", "4",
            "--name", SWEEP, "--no-queue", check=True, **env)
    shard = ["worker", "--sweep", SWEEP, "--allow", "tests.funcs", "--workers", "2"]
    pods = [procs.start(home, *shard, "--shard", "auto/3", JOB_COMPLETION_INDEX=str(i), **env)
            for i in range(N)]
    lo, hi = Shard(1, N).bounds(TOTAL)

    def committed_in_slice() -> int:
        return sum(1 for i in store_records_per_index(shared_store, SWEEP) if lo <= i < hi)

    wait_until(lambda: committed_in_slice() >= 12, 30, "shard 1 to commit some chunks")
    pods[1].signal_group(signal.SIGKILL)
    assert pods[1].wait(10) == -signal.SIGKILL
    before = {i for i in store_records_per_index(shared_store, SWEEP) if lo <= i < hi}
    assert 12 <= len(before) < hi - lo

    for i in (0, 2):
        assert pods[i].wait(60) == 0, pods[i].stderr
    again = procs.start(home, *shard, "--shard", f"1/{N}", **env)
    assert again.wait(60) == 0, again.stderr
    assert f"indices [{lo}, {hi}), {len(before)} already done, complete" in again.stdout

    assert_exactly_once_in(shared_store, SWEEP, TOTAL)
    runs = executions(counter)
    assert set(runs) == set(range(TOTAL))
    assert all(runs[i] == 1 for i in before), "a chunk committed before the kill was computed again"
    outside = [i for i in range(TOTAL) if not lo <= i < hi and runs[i] != 1]
    assert not outside, f"indices of the other shards ran more than once: {outside[:10]}"
    # a shard whose slice is complete does nothing and succeeds
    done = ttg(home, *shard, "--shard", f"1/{N}", check=True, **env)
    assert f"{hi - lo} already done, complete" in done.stdout


def test_shard_needs_a_registered_sweep_and_a_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    no_store = ttg(home, "worker", "--shard", "0/2", "--sweep", "x", "--allow", "tests.funcs")
    assert no_store.returncode == 2 and "--store" in no_store.stderr
    no_sweep = ttg(home, "worker", "--shard", "0/2", "--allow", "tests.funcs",
                   TTG_STORE=f"sqlite://{tmp_path / 'r.db'}")
    assert no_sweep.returncode == 2 and "--sweep" in no_sweep.stderr


def test_sigterm_finishes_running_chunks_and_fails_the_index(tmp_path: Path, procs: Procs) -> None:
    """An evicted shard pod: its running chunks are committed within the grace, and it
    exits 1 so that Kubernetes runs its index again; the rerun computes only the rest."""
    home, counter = tmp_path / "home", tmp_path / "counter"
    env = {"TTG_STORE": f"sqlite://{tmp_path / 'results.db'}", "TTG_TEST_COUNTER": str(counter)}
    ttg(home, "submit", "tests.funcs:counted_slow", "--range", "200", "--chunk-size", "10",
        "--name", SWEEP, "--no-queue", check=True, **env)
    shard = ["worker", "--sweep", SWEEP, "--allow", "tests.funcs", "--workers", "2", "--shard", "0/1"]
    pod = procs.start(home, *shard, "--grace", "10", **env)
    wait_until(lambda: len(store_records_per_index(env["TTG_STORE"], SWEEP)) >= 20, 30, "some chunks")
    pod.signal_group(signal.SIGTERM)
    assert pod.wait(20) == 1
    assert "NOT complete" in pod.stdout
    done = store_records_per_index(env["TTG_STORE"], SWEEP)
    assert set(executions(counter)) == set(done), "a chunk was started and not finished in the grace"
    again = ttg(home, *shard, check=True, **env)
    assert f"{len(done)} already done, complete" in again.stdout
    assert_exactly_once_in(env["TTG_STORE"], SWEEP, 200)
    assert set(executions(counter).values()) == {1}
