"""W5, async functions: 1,000 points that each await 50 ms, 2 workers, --concurrency 50.

(a) the sweep, from its submit to its last commit, with `ttg worker --workers 2`
    already running (children warmed up), against the ideal: 1,000 x 50 ms with
    100 points in flight = 0.5 s.           target: within 1.5x of it (ideal/TTG >= 0.667)
(b) the same sweep against one asyncio process awaiting the same 1,000 points with
    100 in flight (asyncio.gather under a Semaphore): the floor of those waits on
    this machine, measured in the same repetition.
(c) end to end: `ttg run bench/workloads.py:nap_50ms --range 1000 --workers 2
    --concurrency 50` from the command's start (the workers' start included).

Run with the project's virtualenv: .venv/bin/python bench/w5_async.py [--reps N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from _common import (
    BENCH,
    Row,
    check_all_ok,
    fresh_home,
    log,
    machine_load,
    paired,
    parse_args,
    ratio_row,
    ref,
    report,
    run_timed,
    ttg_run_cmd,
    ttg_worker,
    wait_complete,
    wait_for_quiet,
)

TOTAL, WORKERS, CONCURRENCY, SECONDS = 1000, 2, 50, 0.05
IDEAL = TOTAL * SECONDS / (WORKERS * CONCURRENCY)


def ttg_sweep() -> float:
    """From submit to the last commit, on running, warmed-up workers."""
    import ttg

    with fresh_home() as home, ttg_worker(home, WORKERS) as proc:
        ttg.submit(ref("nap_50ms"), WORKERS * 4, chunk_size=1, name="warmup", home=home, progress=False)
        wait_complete(home, "warmup", WORKERS * 4, every=0.02, timeout=60, worker=proc)
        time.sleep(0.2)
        t0 = time.time()
        ttg.submit(ref("nap_50ms"), TOTAL, concurrency=CONCURRENCY, name="measured", home=home,
                   progress=False)
        return wait_complete(home, "measured", TOTAL, every=0.05, worker=proc) - t0


def asyncio_floor() -> float:
    """The same waits in one process, ``WORKERS * CONCURRENCY`` in flight."""
    sys.path.insert(0, str(BENCH))
    from workloads import nap_50ms

    async def main() -> int:
        gate = asyncio.Semaphore(WORKERS * CONCURRENCY)

        async def one(x: int) -> int:
            async with gate:
                return await nap_50ms(x)

        return len(await asyncio.gather(*(one(x) for x in range(TOTAL))))

    t0 = time.perf_counter()
    assert asyncio.run(main()) == TOTAL
    return time.perf_counter() - t0


def ttg_end_to_end() -> float:
    with fresh_home() as home:
        r = run_timed([*ttg_run_cmd("nap_50ms", TOTAL, WORKERS, "auto", home), "--concurrency",
                       str(CONCURRENCY)])
        check_all_ok(home, TOTAL, r.stdout)
    return r.seconds


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=5)
    log(f"W5: {args.reps} repetitions; ideal {IDEAL:.3f} s; {machine_load()}")
    pairs: list[tuple[float, float]] = []
    e2e: list[float] = []
    for i in range(args.reps):
        busy = wait_for_quiet()
        pairs.append(paired(i, ttg_sweep, asyncio_floor))
        e2e.append(ttg_end_to_end())
        log(f"  rep {i + 1} (machine busy before: {busy:.0%}): sweep {pairs[-1][0]:.3f} s, asyncio "
            f"{pairs[-1][1]:.3f} s, ttg run end to end {e2e[-1]:.3f} s")
    sweep = statistics.median(t for t, _ in pairs)
    rows = [
        Row("W5 (a)", "the sweep, submit to last commit, vs the ideal 1,000 x 50 ms / 100", f"{sweep:.3f} s",
            f"{IDEAL:.3f} s (ideal)", IDEAL / sweep, "≥ 0.667", IDEAL / sweep >= 1 / 1.5,
            f"each: {', '.join(f'{t:.3f}' for t, _ in pairs)} s"),
        ratio_row("W5 (b)", "the sweep vs one asyncio process, 100 in flight (Pool column)", pairs, None),
        Row("W5 (c)", "end to end: `ttg run --concurrency 50`", f"{statistics.median(e2e):.3f} s", "", None,
            "—", None, f"each: {', '.join(f'{t:.3f}' for t in e2e)} s"),
    ]
    report(f"W5 — {TOTAL:,} points awaiting 50 ms, {WORKERS} workers, concurrency {CONCURRENCY} "
           f"(median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
