"""W2, engine overhead: 10,000,000 points of x*x+1, 2 workers, chunks of 10,000, every result stored.

(a) throughput with workers already running: `ttg worker --workers 2` on a
    fresh home, warmed up; time from ttg.submit() to the last commit, vs
    Pool(2).imap(f, range(10_000_000), chunksize=10000) collected into a list
    on a pool already started.             target: TTG >= 0.8 x Pool
    Also reported: CPU seconds each side used meanwhile (all its processes),
    which other people's processes on the machine disturb far less than wall time.
(b) end to end: `ttg run ... --workers 2 --chunk-size 10000` vs a `python -c`
    Pool script doing the same collect (no target; reported).

Run with the project's virtualenv: .venv/bin/python bench/w2_overhead.py [--reps N]
"""

from __future__ import annotations

import statistics

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
from workloads import square_plus_one

TOTAL, WORKERS, CHUNK = 10_000_000, 2, 10_000


def rate(seconds: float) -> str:
    return f"{TOTAL / seconds / 1e6:.2f} M points/s ({seconds:.3f} s)"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=5)
    log(f"W2: {args.reps} repetitions; {machine_load()}")
    thr: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    e2e: list[tuple[float, float]] = []
    for i in range(args.reps):
        busy = wait_for_quiet()
        t, p = paired(i, lambda: ttg_throughput("square_plus_one", TOTAL, CHUNK, WORKERS),
                      lambda: pool_throughput(square_plus_one, TOTAL, CHUNK, WORKERS, ordered_list=True))
        thr.append((t.seconds, p.seconds))
        cpu.append((t.cpu, p.cpu))
        busy2 = wait_for_quiet()
        e2e.append(e2e_pair("square_plus_one", TOTAL, WORKERS, CHUNK, CHUNK, ordered_list=True,
                            pool_first=bool(i % 2)))
        log(f"  rep {i + 1} (machine busy before: {busy:.0%}, {busy2:.0%}): "
            f"workers running: TTG {t.seconds:.3f} s ({t.cpu:.2f} s CPU), "
            f"Pool {p.seconds:.3f} s ({p.cpu:.2f} s CPU) "
            f"| end to end: TTG {e2e[-1][0]:.3f} s, Pool {e2e[-1][1]:.3f} s")
        log(f"  rep {i + 1}: (a) TTG CPU by process: {t.split}")
    per_chunk_ms = [(t - p) / (TOTAL / CHUNK) * WORKERS * 1000 for t, p in thr]
    cpu_chunk_ms = [(t - p) / (TOTAL / CHUNK) * 1000 for t, p in cpu]
    rows: list[Row] = [
        ratio_row("W2", "(a) workers running: throughput", thr, 0.8, unit=rate),
        ratio_row("W2", "(a) CPU seconds used meanwhile (all processes)", cpu, None,
                  unit=lambda s: f"{s:.2f} s CPU", note="TTG/Pool here = Pool CPU / TTG CPU"),
        ratio_row("W2", "(b) end to end: `ttg run` vs Pool script", e2e, None),
        Row("W2", "(a) extra wall time per chunk per worker vs Pool",
            f"{statistics.median(per_chunk_ms):.2f} ms", "", None, "", None,
            "(TTG − Pool seconds) × 2 workers / 1,000 chunks", {"ms": per_chunk_ms}),
        Row("W2", "(a) extra CPU per chunk vs Pool", f"{statistics.median(cpu_chunk_ms):.2f} ms", "", None,
            "", None, "(TTG − Pool CPU seconds) / 1,000 chunks", {"ms": cpu_chunk_ms}),
    ]
    report(f"W2 — 10,000,000 × (x*x+1), {WORKERS} workers, chunk {CHUNK:,}, all results kept "
           f"(median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
