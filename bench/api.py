"""`ttg.run` from Python (issue 15): the local workers in a process of their own,
and a function given by value, against a function they import and Pool.

Each side is a `python -c` script, timed from the interpreter's start to its
exit (as W1 (b) and W2 (b)): `ttg.run(F, ttg.Range(N), workers=W,
chunk_size=C, home=TMP)` with F the module's function (imported by the
workers) or a lambda with the same body (given by value), and a Pool script of W
processes mapping the module's function. Every repetition runs the three
back to back, in a rotating order, on a quiet machine.

W1: 10,000 x 1 ms sleep, 3 workers, chunks of 100.
W2: 10,000,000 x `x*x+1`, 2 workers, chunks of 10,000; Pool keeps its results
    in a list (as W2 (b)).
Target: a lambda is not slower than the module's function (ratio >= 0.97,
the spread of these runs). With TTG_BENCH_NO_LAMBDA=1 only the module
function and Pool run (for a tree from before ttg.run took lambdas).

Run with the project's virtualenv: .venv/bin/python bench/api.py [--reps N]
"""

from __future__ import annotations

import os

from _common import (
    BENCH,
    PYTHON,
    Row,
    check_all_ok,
    fresh_home,
    log,
    machine_load,
    parse_args,
    pool_script_cmd,
    ratio_row,
    report,
    run_timed,
    wait_for_quiet,
)

WORKLOADS = {"W1": ("sleep_1ms", 10_000, 3, 100), "W2": ("square_plus_one", 10_000_000, 2, 10_000)}
#: the same bodies as lambdas (defined in the script's __main__: given by value)
LAMBDAS = {"sleep_1ms": "lambda x: (time.sleep(0.001), x)[1]", "square_plus_one": "lambda x: x * x + 1"}


def ttg_run_cmd(fn: str, total: int, workers: int, chunk: int, home: str, *, by_value: bool) -> list[str]:
    f = LAMBDAS[fn] if by_value else f"workloads.{fn}"
    code = (f"import sys, time\nsys.path.insert(0, {str(BENCH)!r})\nimport ttg, workloads\n"
            f"res = ttg.run({f}, ttg.Range({total}), workers={workers}, chunk_size={chunk}, home={home!r})\n"
            "assert res.outcome == 'complete', res.outcome\n")
    return [PYTHON, "-c", code]


def ttg_once(fn: str, total: int, workers: int, chunk: int, *, by_value: bool) -> float:
    with fresh_home() as home:
        r = run_timed(ttg_run_cmd(fn, total, workers, chunk, str(home), by_value=by_value))
        check_all_ok(home, total, r.stdout)
    return r.seconds


SIDES = ("module", "lambda", "pool")


def measure(side: str, name: str) -> float:
    fn, total, workers, chunk = WORKLOADS[name]
    if side == "pool":
        return run_timed(pool_script_cmd(fn, total, workers, chunk, ordered_list=name == "W2")).seconds
    return ttg_once(fn, total, workers, chunk, by_value=side == "lambda")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], reps=5)
    # (a tree from before ttg.run took lambdas runs only these two: bench/trees.py)
    sides = ("module", "pool") if os.environ.get("TTG_BENCH_NO_LAMBDA") else SIDES
    log(f"api: {args.reps} repetitions; {machine_load()}")
    rows: list[Row] = []
    for name in WORKLOADS:
        seconds: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(args.reps):
            busy = wait_for_quiet()
            for side in sides[i % len(sides):] + sides[:i % len(sides)]:
                seconds[side].append(measure(side, name))
            log(f"  {name} rep {i + 1} (busy before {busy:.0%}): "
                + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in seconds.items()))
        rows.append(ratio_row(name, "`ttg.run(module function)` vs Pool, end to end",
                              list(zip(seconds["module"], seconds["pool"], strict=True)), None))
        if "lambda" in seconds:
            rows += [
                ratio_row(name, "`ttg.run(lambda)` (given by value) vs Pool, end to end",
                          list(zip(seconds["lambda"], seconds["pool"], strict=True)), None),
                ratio_row(name, "`ttg.run(lambda)` vs `ttg.run(module function)`",
                          list(zip(seconds["lambda"], seconds["module"], strict=True)), 0.97,
                          note="TTG = the lambda, Pool column = the module function"),
            ]
    report(f"ttg.run from Python: module function, lambda, Pool (median of {args.reps})", rows, args)


if __name__ == "__main__":
    main()
