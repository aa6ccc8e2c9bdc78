"""W3, tiny tasks: 20,000 no-op points, --chunk-size auto, 2 workers, end to end.

`ttg run bench/workloads.py:noop --range 20000 --workers 2` (chunk size auto)
vs a `python -c` script that imports, starts Pool(2) and runs
imap(noop, range(20000), chunksize=1) to the end (what the prototype did:
one task per point).                      target: TTG no slower than Pool (>= 1.0)

Run with the project's virtualenv: .venv/bin/python bench/w3_tiny.py [--reps N]
"""

from __future__ import annotations

from _common import e2e_pair, log, machine_load, parse_args, ratio_row, report, wait_for_quiet

TOTAL, WORKERS = 20_000, 2


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=7)
    log(f"W3: {args.reps} repetitions; {machine_load()}")
    e2e: list[tuple[float, float]] = []
    for i in range(args.reps):
        busy = wait_for_quiet()
        e2e.append(e2e_pair("noop", TOTAL, WORKERS, "auto", 1, ordered_list=True, pool_first=bool(i % 2)))
        log(f"  rep {i + 1} (machine busy before: {busy:.0%}): end to end: TTG {e2e[-1][0]:.3f} s, "
            f"Pool {e2e[-1][1]:.3f} s")
    rows = [ratio_row("W3", "end to end: `ttg run` (auto) vs Pool script (chunksize=1)", e2e, 1.0)]
    report(f"W3 — 20,000 no-op points, {WORKERS} workers, chunk size auto vs Pool chunksize=1 "
           f"(median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
