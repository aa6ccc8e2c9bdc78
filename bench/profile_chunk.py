"""Where one W2 chunk's time goes: the worker's steps, one process, no contention.

Not a benchmark (no Pool run beside it, no target): a diagnostic for the W2
figures. It drives the same library calls a worker child makes for each chunk
(lease, decode, uncommitted, points, run_points, make_storable, commit, ack) on
a fresh embedded broker and store, 1,000 chunks of 10,000 points of x*x+1, and
prints the mean milliseconds per chunk of each step next to what a Pool worker
does for the same chunk: list(map(f, chunk)) plus pickling the result list.
A second table splits the per-point loop: the same 10,000 calls with map(), with
a plain loop, then adding what run_points adds (enumerate, the beacon write,
try/except, then the per-point perf_counter_ns() and durations list); best of 5.
It uses internal modules (ttg.worker.compute, the SQLite backends), so it may
need updating when those change.

Run with the project's virtualenv: .venv/bin/python bench/profile_chunk.py [--chunks N]
"""

from __future__ import annotations

import argparse
import mmap
import pickle
import statistics
import tempfile
import time
import timeit
from collections import defaultdict
from pathlib import Path

from _common import ref
from workloads import square_plus_one

from ttg.brokers.local import LocalBroker
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec, pack
from ttg.core.records import ChunkRecords
from ttg.core.sweep import Options, Sweep
from ttg.spaces import RangeSpace
from ttg.stores.sqlite import SqliteStore
from ttg.worker.compute import make_storable, run_points

CHUNK = 10_000


def _loop_variants(beacon: memoryview) -> dict[str, object]:
    f = square_plus_one

    def plain(points: list[int]) -> list[int]:
        values: list[int] = []
        add = values.append
        for p in points:
            add(f(p))
        return values

    def beacon_try(points: list[int], start: int = 0) -> list[int | None]:
        values: list[int | None] = []
        add = values.append
        for k, p in enumerate(points):
            beacon[0] = start + k + 1
            try:
                v: int | None = f(p)
            except Exception:
                v = None
            add(v)
        return values

    def beacon_try_timing(points: list[int], start: int = 0) -> list[int | None]:
        values: list[int | None] = []
        durations: list[int] = []
        add, add_d, now = values.append, durations.append, time.perf_counter_ns
        limit = float("inf")
        t0 = now()
        for k, p in enumerate(points):
            beacon[0] = start + k + 1
            try:
                v: int | None = f(p)
            except Exception:
                v = None
            t1 = now()
            add(v)
            add_d(t1 - t0)
            t0 = t1
            if t1 > limit:
                break
        return values

    return {
        "list(map(f, points))": lambda pts: list(map(f, pts)),
        "for loop + append": plain,
        "+ enumerate, beacon write, try/except": beacon_try,
        "+ perf_counter_ns() and durations per point": beacon_try_timing,
        "ttg run_points()": lambda pts: run_points(f, pts, 0, beacon),
    }


def loop_table(beacon: memoryview, rounds: int = 15) -> None:
    """CPU time (process_time) of each variant; rounds interleave the variants and
    the best round counts, so drift and other people's load hit all alike."""
    pts = list(range(CHUNK))
    variants = _loop_variants(beacon)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, fn in variants.items():
            t = min(timeit.repeat(lambda fn=fn: fn(pts), number=5, repeat=2,  # type: ignore[operator]
                                  timer=time.process_time)) / 5
            best[name] = min(best[name], t)
    print(f"\n## The per-point loop ({CHUNK:,} calls of x*x+1; CPU time, "
          f"best of {rounds} interleaved rounds)\n")
    print("| variant | ms per 10,000 points | ns per point |")
    print("|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t * 1000:.3f} | {t / CHUNK * 1e9:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1000)
    args = ap.parse_args()
    n = args.chunks
    beacon = memoryview(mmap.mmap(-1, 16)).cast("q")
    space = RangeSpace(n * CHUNK)
    codec = Codec()
    steps: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    commits: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ttg-bench-") as d:
        store, broker = SqliteStore(Path(d) / "results.db"), LocalBroker(Path(d) / "broker.db")
        sweep = Sweep.create(ref("square_plus_one"), space, Options(CHUNK), "profile")
        store.register(sweep)
        broker.submit(sweep.id, [(c, codec.encode(sweep.task(c))) for c in
                                 (Chunk(a, a + CHUNK) for a in range(0, n * CHUNK, CHUNK))])

        def timed(name: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn(*a, **kw)
            steps[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            return out

        for _ in range(n):
            lease = timed("broker.lease", broker.lease, "w", timeout=1.0, sweep_id=sweep.id)
            timed("codec.decode", codec.decode, lease.body)
            parts = timed("store.uncommitted",
                          lambda lease=lease: list(store.uncommitted(sweep.id, lease.chunk)))
            a, b = parts[0].start, parts[0].stop
            points = timed("space.points", space.points, a, b)
            values, durations, errors = timed("run_points (the per-point loop)", run_points, square_plus_one,
                                              points, a, beacon)
            rec = ChunkRecords(a, b, values, durations, "w", 1, None, errors)
            timed("make_storable (msgpack)", make_storable, rec)
            timed("store.commit (SQLite)", store.commit, sweep.id, rec)
            commits.append(steps["store.commit (SQLite)"][-1])
            timed("broker.ack", broker.ack, lease)
            # what a Pool worker does for the same chunk, for comparison
            out = timed("[Pool worker] list(map(f, chunk))", lambda a=a, b=b: list(map(square_plus_one,
                                                                                          range(a, b))))
            timed("[Pool worker] pickle the results", pickle.dumps, out, pickle.HIGHEST_PROTOCOL)
        size_v, size_d = len(pack(values)), len(pack(durations))
        store.close()
        broker.close()
    def total(d: dict[str, list[float]], pool: bool) -> float:
        return sum(statistics.fmean(v) for k, v in d.items() if k.startswith("[Pool") == pool)

    ttg_cpu = total(cpu, False)
    print(f"\n## Per-chunk cost of W2 ({n:,} chunks of {CHUNK:,} points of x*x+1; one process)\n")
    print("CPU = this process's CPU time (time.process_time), which other load on the machine "
          "disturbs much less than wall time; a commit's fsync wait shows in wall time only.\n")
    print("| step | wall ms per chunk, mean | wall median | CPU ms per chunk, mean | share of TTG CPU |")
    print("|---|---|---|---|---|")
    for name, v in steps.items():
        c = statistics.fmean(cpu[name])
        share = "" if name.startswith("[Pool") else f"{c / ttg_cpu:.0%}"
        print(f"| {name} | {statistics.fmean(v) * 1000:.3f} | {statistics.median(v) * 1000:.3f} | "
              f"{c * 1000:.3f} | {share} |")
    print(f"| **TTG worker, all steps** | **{total(steps, False) * 1000:.3f}** | | "
          f"**{ttg_cpu * 1000:.3f}** | |")
    print(f"| **Pool worker (map + pickle)** | **{total(steps, True) * 1000:.3f}** | | "
          f"**{total(cpu, True) * 1000:.3f}** | |")
    commits.sort()
    slow = [c for c in commits if c > 5 * statistics.median(commits)]
    print(f"\nstore.commit: median {statistics.median(commits) * 1000:.3f} ms; {len(slow)} of {n} commits "
          f"took > 5× the median (WAL checkpoints, or the machine busy), {sum(slow) * 1000:.0f} ms of "
          f"{sum(commits) * 1000:.0f} ms in all")
    print(f"one chunk's blob: values {size_v:,} bytes + durations {size_d:,} bytes (msgpack)")
    loop_table(beacon)


if __name__ == "__main__":
    main()
