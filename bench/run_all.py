"""Run every benchmark and print one table (Markdown, as in docs/benchmarks.md).

    .venv/bin/python bench/run_all.py            # each script's default repetitions
    .venv/bin/python bench/run_all.py --reps 1   # a quick look (not for the record)
    .venv/bin/python bench/run_all.py backends.py chunk_cost.py w4_kill.py   # backends (needs servers)

Each benchmark runs as its own process; its log (per-repetition figures) goes
to stderr as it runs, its table to stdout, and the rows are collected here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH, Row, machine_info, table

SCRIPTS = ["w1_prototype.py", "w2_overhead.py", "w3_tiny.py", "scale.py"]
#: scripts that measure once, so take no --reps
ONCE = {"chunk_cost.py"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int,
                    help="repetitions for every benchmark that repeats (default: each one's own)")
    ap.add_argument("--json", metavar="PATH", help="also write all rows and the machine as JSON")
    ap.add_argument("only", nargs="*", help="run only these scripts (e.g. w1_prototype.py)")
    args = ap.parse_args()
    info = machine_info()
    print("# TTG benchmarks\n")
    for k, v in info.items():
        print(f"- {k}: {v}")
    sys.stdout.flush()
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    for script in args.only or SCRIPTS:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, str(BENCH / script), "--json", out.name]
            if args.reps and script not in ONCE:
                cmd += ["--reps", str(args.reps)]
            t0 = time.monotonic()
            code = subprocess.run(cmd).returncode
            print(f"({script}: {time.monotonic() - t0:.0f} s)", flush=True)
            if code != 0:
                failed.append(script)
                rows.append(Row(script.removesuffix(".py"), f"FAILED (exit status {code}; see its output)",
                                "", "", None, "", False))
                continue
            rows += [Row(**r) for r in json.loads(Path(out.name).read_text())]
    print(f"\n## All benchmarks ({time.monotonic() - started:.0f} s)\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": [r.__dict__ for r in rows]},
                                              indent=1))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
