"""Two trees of TTG measured in one run: did a change make anything slower?

Runs the same benchmark script once per repetition from each tree, one after
the other (alternating which goes first), each with that tree's source on
PYTHONPATH (so its `ttg` commands and workers are that tree's code) and this
virtualenv's packages. Every row that compares with Pool (W1, W2) is paired
inside each tree's run, so each tree's ratio is measured against a Pool run
of its own; the table gives both trees' median ratios and after/before.
Rows without a ratio (chunk_cost.py's µs per chunk) are compared by their
figures: the median of each tree's repetitions.

    git worktree add /tmp/before 628b37d
    .venv/bin/python bench/trees.py --before /tmp/before --reps 3 -- backends.py --backends embedded,redis
    .venv/bin/python bench/trees.py --before /tmp/before --reps 3 -- chunk_cost.py --chunks 500

The before tree's own bench/ scripts run for it (its code may differ in what
they import); both trees use this virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BENCH, machine_info

HERE = BENCH.parent
#: the figure of a chunk_cost row: "1234 µs wall"
_NUMBER = re.compile(r"^([0-9.]+)")


def run(tree: Path, script: str, args: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, str(tree / "bench" / script), *args, "--json", out.name]
        print(f"\n### {tree}: {' '.join(cmd[1:])}", flush=True)
        code = subprocess.run(cmd, env=env, cwd=tree).returncode
        if code != 0:
            raise SystemExit(f"{script} failed in {tree} (exit status {code})")
        rows: list[dict[str, Any]] = json.loads(Path(out.name).read_text())
        return rows


def figure(row: dict[str, Any]) -> float | None:
    if row.get("ratio") is not None:
        return float(row["ratio"])
    m = _NUMBER.match(str(row.get("ttg", "")))
    return float(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the tree to compare with (a worktree)")
    ap.add_argument("--after", type=Path, default=HERE,
                    help="the tree measured against it (default: this one)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per tree (default 3)")
    ap.add_argument("--json", metavar="PATH", help="also write every repetition's rows as JSON")
    ap.add_argument("script", help="the benchmark script (e.g. backends.py)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    a = ap.parse_args()
    extra = [x for x in a.args if x != "--"]
    if a.script != "chunk_cost.py":
        extra += ["--reps", "1"]
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    print("# Two trees in one run\n")
    for k, v in {**machine_info(), **{f"tree {n}": str(t) for n, t in trees.items()}}.items():
        print(f"- {k}: {v}")
    got: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    started = time.monotonic()
    for rep in range(a.reps):
        order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
        for name in order:
            got[name].append(run(trees[name], a.script, extra))
    print(f"\n## {a.script} {' '.join(extra)}: {a.reps} repetitions per tree "
          f"({time.monotonic() - started:.0f} s)\n")
    print("| benchmark | metric | before | after | after/before | before, each | after, each |")
    print("|---|---|---|---|---|---|---|")
    for k, row in enumerate(got["after"][0]):
        values = {n: [figure(reps[k]) for reps in got[n] if k < len(reps)] for n in got}
        b = [v for v in values["before"] if v is not None]
        f = [v for v in values["after"] if v is not None]
        if not b or not f:
            continue
        mb, mf = statistics.median(b), statistics.median(f)
        unit = "ratio to Pool" if row.get("ratio") is not None else "µs"
        print(f"| {row['bench']} | {row['metric']} ({unit}) | {mb:.3f} | {mf:.3f} | {mf / mb:.3f} | "
              f"{', '.join(f'{x:.3f}' for x in b)} | {', '.join(f'{x:.3f}' for x in f)} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine_info(), "trees": {k: str(v) for k, v in
                                                                                trees.items()},
                                            "runs": got}, indent=1))


if __name__ == "__main__":
    main()
