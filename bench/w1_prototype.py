"""W1, the prototype's workload: 10,000 points x 1 ms sleep, 3 workers, chunks of 100.

(a) throughput with workers already running: `ttg worker --workers 3` is started
    on a fresh home and warmed up on a small sweep; then the time from
    ttg.submit() of the real sweep to its last commit (store polled every 10 ms)
    is compared with Pool(3).imap_unordered(f, range(10000), chunksize=100)
    on a pool already started.             target: TTG >= 0.97 x Pool
    Also reported: CPU seconds each side used meanwhile (all its processes).
(b) end to end from the command's start: `ttg run ... --workers 3 --chunk-size 100`
    vs `python -c` that imports, starts Pool(3) and maps.
                                            target: TTG >= 0.90 x Pool
(c) fixed cost (no target): the same two commands over 3 no-op points.
Also printed: the ideal, 10,000 x (measured time of sleep(0.001)) / 3.

Run with the project's virtualenv: .venv/bin/python bench/w1_prototype.py [--reps N]
"""

from __future__ import annotations

import statistics
import time

from _common import (
    Row,
    e2e_pair,
    log,
    machine_load,
    paired,
    parse_args,
    pool_throughput,
    ratio_row,
    report,
    ttg_throughput,
    wait_for_quiet,
)
from workloads import sleep_1ms

TOTAL, WORKERS, CHUNK = 10_000, 3, 100


def sleep_cost(n: int = 1000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        time.sleep(0.001)
    return (time.perf_counter() - t0) / n


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=5)
    log(f"W1: {args.reps} repetitions; {machine_load()}")
    ideal: list[float] = []
    thr: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    e2e: list[tuple[float, float]] = []
    fixed: list[tuple[float, float]] = []
    for i in range(args.reps):
        busy = wait_for_quiet()
        ideal.append(TOTAL * sleep_cost() / WORKERS)
        t, p = paired(i, lambda: ttg_throughput("sleep_1ms", TOTAL, CHUNK, WORKERS),
                      lambda: pool_throughput(sleep_1ms, TOTAL, CHUNK, WORKERS, ordered_list=False))
        thr.append((t.seconds, p.seconds))
        cpu.append((t.cpu, p.cpu))
        busy2 = wait_for_quiet()
        e2e.append(e2e_pair("sleep_1ms", TOTAL, WORKERS, CHUNK, CHUNK, ordered_list=False,
                            pool_first=bool(i % 2)))
        fixed.append(e2e_pair("noop", 3, WORKERS, 1, 1, ordered_list=False, pool_first=bool(i % 2)))
        log(f"  rep {i + 1} (machine busy before: {busy:.0%}, {busy2:.0%}): ideal {ideal[-1]:.3f} s "
            f"| workers running: TTG {t.seconds:.3f} s ({t.cpu:.2f} s CPU), "
            f"Pool {p.seconds:.3f} s ({p.cpu:.2f} s CPU) "
            f"| end to end: TTG {e2e[-1][0]:.3f} s, Pool {e2e[-1][1]:.3f} s "
            f"| 3 points: TTG {fixed[-1][0]:.3f} s, Pool {fixed[-1][1]:.3f} s")
        log(f"  rep {i + 1}: (a) TTG CPU by process: {t.split}")
    ideal_s = statistics.median(ideal)
    rows = [
        ratio_row("W1", "(a) workers running: submit → last commit", thr, 0.97),
        ratio_row("W1", "(a) CPU seconds used meanwhile (all processes)", cpu, None,
                  unit=lambda s: f"{s:.2f} s CPU", note="TTG/Pool here = Pool CPU / TTG CPU"),
        ratio_row("W1", "(b) end to end: `ttg run` vs Pool script", e2e, 0.90),
        ratio_row("W1", "(c) fixed cost: the same commands over 3 no-op points", fixed, None),
        Row("W1", "ideal: 10,000 × sleep(0.001) / 3", f"{ideal_s:.3f} s", "", None, "", None,
            f"TTG (a) at {ideal_s / statistics.median(t for t, _ in thr):.1%} of ideal, "
            f"Pool at {ideal_s / statistics.median(p for _, p in thr):.1%}",
            {"ideal_seconds": ideal}),
    ]
    report(f"W1 — 10,000 × 1 ms sleep, {WORKERS} workers, chunk {CHUNK} (median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
