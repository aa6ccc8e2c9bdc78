"""Backends: W1 and W2 with workers running, through every backend, each run paired with Pool in the same run.

Backends (bench/_backends.py): embedded (local broker + SQLite store), Redis
broker + Redis store, RabbitMQ broker + PostgreSQL store, Redis broker +
PostgreSQL store. Every measurement gets a namespace of its own: a fresh
home, a key prefix of its own in Redis database 14, a RabbitMQ virtual host, a PostgreSQL schema
in a database this run creates and drops.

W1 (10,000 x 1 ms sleep, 3 workers, chunks of 100) and W2 (10,000,000 x
x*x+1, 2 workers, chunks of 10,000, every result stored), measured as "(a)
workers running" in w1_prototype.py and w2_overhead.py: `ttg worker` started
on the backend and warmed up on a small sweep, then the time from ttg.submit()
to the last commit (store polled every 10 ms), against Pool.imap(_unordered)
on a pool already started and warmed up. Every backend's TTG run has a Pool
run of its own right before or after it (alternating); the ratio is taken
inside each pair and the median of the ratios reported.
                                    targets: W1 >= 0.97 x Pool, W2 >= 0.8 x Pool
Also reported: CPU seconds each side used meanwhile (all its processes; for
TTG the supervisor, its children and this process, not the servers).
The per-chunk cost of each backend is bench/chunk_cost.py; a worker killed
mid-sweep is bench/w4_kill.py.

Run with the project's virtualenv: .venv/bin/python bench/backends.py [--reps N] [--only w1|w2]
    [--backends embedded,redis,rabbit+pg,redis+pg] [--pg-compression lz4]
(--pg-compression: a what-if, not TTG as it ships: the PostgreSQL backends'
ttg_chunks.data column set to that compression before the workers start.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from _backends import Backend, Services, pick, server_versions
from _common import (
    Measured,
    Row,
    log,
    machine_info,
    machine_load,
    pool_throughput,
    ratio_row,
    report,
    ttg_throughput,
    wait_for_quiet,
)
from workloads import sleep_1ms, square_plus_one

W1: dict[str, Any] = dict(fn="sleep_1ms", total=10_000, chunk=100, workers=3)
W2: dict[str, Any] = dict(fn="square_plus_one", total=10_000_000, chunk=10_000, workers=2)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3); medians reported")
    ap.add_argument("--only", choices=["w1", "w2"], help="run only this workload")
    ap.add_argument("--backends", default="all", help="embedded,redis,rabbit+pg,redis+pg (default all)")
    ap.add_argument("--pg-compression", default="", metavar="METHOD",
                    help="what-if: set this compression (e.g. lz4) on ttg_chunks.data before the workers "
                         "start (default: none set, PostgreSQL's default pglz)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON (used by run_all.py)")
    return ap.parse_args()


# -- W1 and W2 ---------------------------------------------------------------------------------


def throughput_pairs(svc: Services, backends: list[Backend], name: str, spec: dict[str, Any],
                     pool_fn: Callable[[int], Any], ordered: bool, reps: int) -> dict[str, list[Any]]:
    """{backend key: [(ttg Measured, pool Measured, busy before)]}; every backend's
    TTG run next to a Pool run of its own, alternating which goes first."""
    out: dict[str, list[Any]] = {b.key: [] for b in backends}
    for i in range(reps):
        for j, b in enumerate(backends):
            busy = wait_for_quiet()

            def ns(b: Backend = b) -> Any:
                return svc.namespace(b)

            def ttg_side(b: Backend = b) -> Measured:
                return ttg_throughput(spec["fn"], spec["total"], spec["chunk"], spec["workers"], namespace=ns)

            def pool_side() -> Measured:
                return pool_throughput(pool_fn, spec["total"], spec["chunk"], spec["workers"],
                                       ordered_list=ordered)

            if (i + j) % 2:  # each backend alternates between reps
                p = pool_side()
                t = ttg_side()
            else:
                t = ttg_side()
                p = pool_side()
            out[b.key].append((t, p, busy))
            log(f"  {name} rep {i + 1} {b.key:<9} (busy before {busy:.0%}, {machine_load()}): "
                f"TTG {t.seconds:.3f} s ({t.cpu:.2f} s CPU), Pool {p.seconds:.3f} s ({p.cpu:.2f} s CPU), "
                f"ratio {p.seconds / t.seconds:.3f} | TTG CPU: {t.split}")
    return out


def throughput_rows(name: str, pairs: dict[str, list[Any]], target: float,
                    unit: Callable[[float], str]) -> list[Row]:
    rows: list[Row] = []
    for key, samples in pairs.items():
        wall = [(t.seconds, p.seconds) for t, p, _ in samples]
        cpu = [(t.cpu, p.cpu) for t, p, _ in samples]
        busy = ", ".join(f"{b:.0%}" for _, _, b in samples)
        rows.append(ratio_row(name, f"(a) {key}: submit → last commit", wall, target, unit=unit,
                              note=f"busy before each pair: {busy}"))
        rows.append(ratio_row(name, f"(a) {key}: CPU used meanwhile", cpu, None,
                              unit=lambda s: f"{s:.2f} s CPU", note="TTG/Pool here = Pool CPU / TTG CPU"))
    return rows


# -- main ------------------------------------------------------------------------------------------


def summary(backends: list[Backend], w1: dict[str, list[Any]] | None,
            w2: dict[str, list[Any]] | None) -> str:
    """One line per backend, for docs/benchmarks.md."""
    head = ["backend", "W1 (a) TTG/Pool", "W1 TTG / Pool", "W2 (a) TTG/Pool", "W2 TTG / Pool (M points/s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in backends:
        cells = [b.label]
        for w, total in ((w1, None), (w2, W2["total"])):
            if w is None:
                cells += ["", ""]
                continue
            s = w[b.key]
            ratio = statistics.median(p.seconds / t.seconds for t, p, _ in s)
            tm = statistics.median(t.seconds for t, _, _ in s)
            pm = statistics.median(p.seconds for _, p, _ in s)
            cells.append(f"{ratio:.3f}")
            cells.append(f"{tm:.3f} s / {pm:.3f} s" if total is None else
                         f"{total / tm / 1e6:.2f} / {total / pm / 1e6:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    backends = pick(args.backends)
    info = machine_info()
    what_if = f"; PostgreSQL ttg_chunks.data compression {args.pg_compression}" if args.pg_compression else ""
    log(f"backends: {', '.join(b.key for b in backends)}; {args.reps} repetitions; {machine_load()}; "
        f"{info['ttg']}; {server_versions(backends)}{what_if}")
    rows: list[Row] = []
    w1 = w2 = None
    started = time.monotonic()
    with Services(backends, pg_compression=args.pg_compression) as svc:
        if args.only in (None, "w1"):
            w1 = throughput_pairs(svc, backends, "W1", W1, sleep_1ms, False, args.reps)
            rows += throughput_rows("W1", w1, 0.97, lambda s: f"{s:.3f} s")
            log(f"(W1 done after {time.monotonic() - started:.0f} s)")
        if args.only in (None, "w2"):
            w2 = throughput_pairs(svc, backends, "W2", W2, square_plus_one, True, args.reps)
            rows += throughput_rows("W2", w2, 0.8,
                                    lambda s: f"{W2['total'] / s / 1e6:.2f} M points/s ({s:.3f} s)")
            log(f"(W2 done after {time.monotonic() - started:.0f} s)")
    report(f"Backends — W1 and W2 with workers running (median of {args.reps}){what_if}", rows, args)
    print("\n### One line per backend\n")
    print(summary(backends, w1, w2))
    print(f"\n({time.monotonic() - started:.0f} s; {machine_load()})")


if __name__ == "__main__":
    main()
