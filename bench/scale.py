"""Scale: `ttg submit` of a 100,000,000-point range sweep: wall time and the client's peak RSS.

Submitted twice on fresh homes: with --chunk-size auto (a few hundred messages)
and with --chunk-size 10000 (10,000 messages). No worker runs; the time is the
whole command (interpreter start, imports, planning, queueing), the memory is
the peak resident set of the `ttg submit` process (GNU time's %M).
Targets: < 5 s, < 200 MB. For scale, `ttg --version` (interpreter + imports
only) is measured the same way. No Pool comparison: a Pool has no queue to fill.

Run with the project's virtualenv: .venv/bin/python bench/scale.py [--reps N]
"""

from __future__ import annotations

import re
import statistics

from _common import (
    TTG,
    Row,
    fresh_home,
    log,
    machine_load,
    parse_args,
    ref,
    report,
    run_timed,
    wait_for_quiet,
)

TOTAL = 100_000_000
TIME_TARGET, RSS_TARGET = 5.0, 200.0


def submit(chunk: str) -> tuple[float, float, int]:
    with fresh_home() as home:
        r = run_timed([TTG, "submit", ref("noop"), "--range", str(TOTAL), "--chunk-size", chunk,
                       "--home", str(home)])
    m = re.search(r"(\d+) chunks queued", r.stdout)
    if m is None:
        raise RuntimeError(f"unexpected output of ttg submit:\n{r.stdout}")
    return r.seconds, r.peak_rss_mb, int(m.group(1))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=3)
    log(f"scale: {args.reps} repetitions; {machine_load()}")
    runs: dict[str, list[tuple[float, float, int]]] = {"auto": [], "10000": []}
    baseline: list[tuple[float, float]] = []
    for i in range(args.reps):
        busy = wait_for_quiet()
        for chunk in runs:
            runs[chunk].append(submit(chunk))
        b = run_timed([TTG, "--version"])
        baseline.append((b.seconds, b.peak_rss_mb))
        log(f"  rep {i + 1} (machine busy before: {busy:.0%}): "
            + " | ".join(f"chunk {c}: {v[-1][0]:.3f} s, {v[-1][1]:.1f} MB, {v[-1][2]} chunks"
                         for c, v in runs.items())
            + f" | ttg --version: {b.seconds:.3f} s, {b.peak_rss_mb:.1f} MB")
    rows = []
    for chunk, samples in runs.items():
        secs = statistics.median(s for s, _, _ in samples)
        rss = statistics.median(m for _, m, _ in samples)
        n = samples[0][2]
        label = f"`ttg submit --range 100000000 --chunk-size {chunk}` ({n:,} chunks)"
        late = "" if secs < TIME_TARGET else f"missed by {secs - TIME_TARGET:.3f} s"
        rows.append(Row("scale", f"{label}: wall time", f"{secs:.3f} s", "", None, f"< {TIME_TARGET:g} s",
                        secs < TIME_TARGET, late, {"seconds": [s for s, _, _ in samples]}))
        rows.append(Row("scale", f"{label}: peak RSS", f"{rss:.1f} MB", "", None, f"< {RSS_TARGET:g} MB",
                        rss < RSS_TARGET, "" if rss < RSS_TARGET else f"missed by {rss - RSS_TARGET:.1f} MB",
                        {"mb": [m for _, m, _ in samples]}))
    rows.append(Row("scale", "`ttg --version` (interpreter + imports): wall time, peak RSS",
                    f"{statistics.median(s for s, _ in baseline):.3f} s, "
                    f"{statistics.median(m for _, m in baseline):.1f} MB", "", None, "", None, "baseline",
                    {"seconds": [s for s, _ in baseline], "mb": [m for _, m in baseline]}))
    report(f"scale — `ttg submit` of 100,000,000 points (median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
