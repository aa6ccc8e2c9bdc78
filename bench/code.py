"""Code fingerprints and the point cache (issue 13): what they cost.

1. Fingerprint of a 10,000-line module, as `ttg run` and `ttg submit` take it
   once per sweep (read and hash the file; median of 20, each on a new file
   so that no digest is reused).                             target: < 50 ms
   And the worker's check per chunk once the module's fingerprint is known
   (Gate.function on a chunk of a sweep it has seen): nothing per point.
2. `--reuse` lookup: the store holds a computed 1,000,000-point sweep of
   `square_plus_one`; submitting a 1,000,000-point range of the same function
   that overlaps it by half (ttg.submit(..., reuse=True): read the earlier
   sweep's records, find the new sweep's points, copy 500,000, queue the
   rest), embedded store.                                    target: < 10 s
3. W2 end to end with `--reuse` on an empty cache: `ttg run` of 10,000,000 x
   `x*x+1`, 2 workers, chunks of 10,000, against a Pool script in the same
   run. Stricter than W2 (b) of w2_overhead.py: this Pool script discards
   its results (imap_unordered) while TTG stores every one.  target: >= 0.5
   Each repetition also runs the same pair without `--reuse`, so what the
   cache costs when it holds nothing reads off the two rows.

Run with the project's virtualenv: .venv/bin/python bench/code.py [--reps N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    Row,
    e2e_pair,
    fresh_home,
    log,
    machine_load,
    parse_args,
    ratio_row,
    ref,
    report,
    wait_for_quiet,
)

LINES = 10_000
REUSE_TOTAL = 1_000_000
W2_TOTAL, W2_WORKERS, W2_CHUNK = 10_000_000, 2, 10_000


def fingerprint_ms() -> tuple[float, float]:
    """(median ms to fingerprint a 10,000-line module, µs per chunk to check one)."""
    import importlib.util

    from ttg.brokers.base import Lease
    from ttg.core import fingerprint
    from ttg.core.chunking import Chunk
    from ttg.core.codec import Codec
    from ttg.core.funcref import AllowList
    from ttg.core.sweep import Options, Sweep
    from ttg.spaces import RangeSpace
    from ttg.worker.gate import Gate
    from ttg.worker.task import Task

    times = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(20):
            path = Path(d) / f"big{k}.py"
            body = "".join(f"def f{i}(x):\n    return x + {i}  # line {i}\n" for i in range(LINES // 2))
            path.write_text(f"# version {k}\n" + body)
            spec = importlib.util.spec_from_file_location(f"big{k}", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"big{k}"] = mod
            spec.loader.exec_module(mod)
            t0 = time.perf_counter()
            fingerprint.of_function(mod.f1)
            times.append((time.perf_counter() - t0) * 1000)
        ref_ = f"{path}:f1"
        sweep = Sweep.create(ref_, RangeSpace(10), Options(), code=fingerprint.of_function(mod.f1))
        gate = Gate(Codec(), AllowList([str(path)]), store=None, before_store=lambda: None)  # type: ignore[arg-type]
        task = Task.parse(sweep.task(Chunk(0, 10)), Lease(sweep.id, Chunk(0, 10), b"", "t", 0.0, 0, None))
        gate.function(task)
        n = 10_000
        t0 = time.perf_counter()
        for _ in range(n):
            gate.function(task)
        per_chunk = (time.perf_counter() - t0) / n * 1e6
    return statistics.median(times), per_chunk


def reuse_seconds() -> tuple[float, int]:
    """(seconds to submit with reuse, points reused) against a computed earlier sweep."""
    import ttg
    from ttg.spaces import RangeSpace

    with fresh_home() as home:
        ttg.run(ref("square_plus_one"), ttg.Range(REUSE_TOTAL), workers=2, chunk_size=10_000, home=home)
        t0 = time.perf_counter()
        half = REUSE_TOTAL // 2
        later = ttg.submit(ref("square_plus_one"), RangeSpace(REUSE_TOTAL + half, half), chunk_size=10_000,
                           reuse=True, home=home)
        seconds = time.perf_counter() - t0
        done = later.progress().done
    return seconds, done


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=3)
    log(f"code: {args.reps} repetitions; {machine_load()}")
    ms, per_chunk = fingerprint_ms()
    log(f"  fingerprint of a {LINES:,}-line module: {ms:.2f} ms (median of 20); check per chunk "
        f"{per_chunk:.2f} µs")
    reuse = []
    for i in range(args.reps):
        wait_for_quiet()
        seconds, done = reuse_seconds()
        reuse.append(seconds)
        log(f"  rep {i + 1}: reuse lookup of {REUSE_TOTAL:,} points against {REUSE_TOTAL:,}: "
            f"{seconds:.2f} s, {done:,} points reused")
    pairs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(args.reps):
        for reuse_on in (True, False):
            busy = wait_for_quiet()
            pair = e2e_pair("square_plus_one", W2_TOTAL, W2_WORKERS, W2_CHUNK, W2_CHUNK, ordered_list=False,
                            pool_first=bool(i % 2), extra=("--reuse",) if reuse_on else ())
            pairs[reuse_on].append(pair)
            what = "--reuse, empty cache" if reuse_on else "no --reuse"
            log(f"  rep {i + 1} (busy before {busy:.0%}): W2 {what}: TTG {pair[0]:.3f} s, "
                f"Pool {pair[1]:.3f} s")
    rows = [
        Row("code", f"fingerprint, {LINES:,}-line module (per sweep)", f"{ms:.2f} ms", "", None, "< 50 ms",
            ms < 50, f"the worker's check per chunk: {per_chunk:.2f} µs; nothing per point"),
        Row("code", f"--reuse lookup, {REUSE_TOTAL:,} against {REUSE_TOTAL:,} (embedded)",
            f"{statistics.median(reuse):.2f} s", "", None, "< 10 s", max(reuse) < 10,
            f"each: {', '.join(f'{s:.2f}' for s in reuse)} s; {REUSE_TOTAL // 2:,} points reused"),
        ratio_row("code", "W2 end to end, `ttg run --reuse` on an empty cache vs Pool", pairs[True], 0.5),
        ratio_row("code", "W2 end to end, `ttg run` without --reuse vs Pool (same run)",
                  pairs[False], None),
    ]
    report(f"Code fingerprints and --reuse (median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
