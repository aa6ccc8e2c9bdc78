"""The examples, run through the CLI (and the Python API) in subprocesses on small spaces."""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT, assert_exactly_once, cli_env, read_table, sweep_id_from, ttg

EXAMPLES = ROOT / "examples"
STRIKES = [80, 90, 100, 110, 120]
VOLS = [0.1, 0.25, 0.5]
GRID = ["--grid", "strike=" + ",".join(map(str, STRIKES)), "--grid", "vol=" + ",".join(map(str, VOLS))]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(home: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    proc = ttg(home, "run", *args, "--workers", "2", check=True)
    sweep_id = sweep_id_from(proc.stdout)
    assert "complete" in proc.stdout, proc.stdout
    return sweep_id, read_table(home, sweep_id).to_pylist()


def _black_scholes(spot: float, strike: float, vol: float, rate: float, t: float) -> float:
    n = NormalDist()
    d1 = (math.log(spot / strike) + (rate + vol**2 / 2) * t) / (vol * math.sqrt(t))
    return spot * n.cdf(d1) - strike * math.exp(-rate * t) * n.cdf(d1 - vol * math.sqrt(t))


def test_option_pricer(home: Path) -> None:
    sweep_id, rows = _run(home, "examples/option_pricer.py:price", *GRID)
    assert_exactly_once(home, sweep_id, len(STRIKES) * len(VOLS))
    assert [(r["strike"], r["vol"]) for r in rows] == list(itertools.product(STRIKES, VOLS))
    for r in rows:
        assert r["status"] == "ok", r
        assert r["bs_price"] == pytest.approx(_black_scholes(100, r["strike"], r["vol"], 0.03, 1), rel=1e-9)
        assert 0 < r["stderr"] < 0.5
        assert abs(r["price"] - r["bs_price"]) < 4 * r["stderr"], r
    # a higher volatility makes a call dearer; a higher strike makes it cheaper
    price = {(r["strike"], r["vol"]): r["bs_price"] for r in rows}
    assert price[(100, 0.1)] < price[(100, 0.25)] < price[(100, 0.5)]
    assert price[(80, 0.25)] > price[(100, 0.25)] > price[(120, 0.25)]


def test_option_pricer_batched_gives_the_same_prices(home: Path) -> None:
    _, plain = _run(home, "examples/option_pricer.py:price", *GRID, "--chunk-size", "5")
    batched_id, batched = _run(home, "examples/option_pricer.py:price_batch", *GRID, "--batched",
                               "--chunk-size", "4")
    assert_exactly_once(home, batched_id, len(STRIKES) * len(VOLS))
    assert len(batched) == len(plain)
    for a, b in zip(plain, batched, strict=True):
        assert b["status"] == "ok", b
        assert (a["strike"], a["vol"]) == (b["strike"], b["vol"])
        for column in ("price", "stderr", "bs_price"):
            assert b[column] == pytest.approx(a[column], rel=1e-12, abs=1e-12)


def test_noisy_objective(home: Path) -> None:
    example = _load("noisy_objective")
    n = 41
    sweep_id, rows = _run(home, "examples/noisy_objective.py:objective",
                          "--grid", f"x=linspace:-2:2:{n}", "--grid", f"y=linspace:-1:3:{n}")
    assert_exactly_once(home, sweep_id, n * n)
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:  # the noise is what the example says it is
        assert abs(r["loss"] - example.rosenbrock(r["x"], r["y"])) < 6 * example.NOISE
    best = min(rows, key=lambda r: r["loss"])
    assert math.dist((best["x"], best["y"]), (1, 1)) <= 0.3
    assert example.rosenbrock(best["x"], best["y"]) < 0.05


def test_noisy_objective_script_uses_the_python_api(home: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "noisy_objective.py"), "21"], cwd=tmp_path,
                          env=cli_env(home, TTG_WORKERS="2"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"best point: x=(\S+) y=(\S+)", proc.stdout)
    assert match, proc.stdout
    assert math.dist((float(match[1]), float(match[2])), (1, 1)) <= 0.3
    assert "441 of 441 points ok" in proc.stdout
    sweep_id = re.search(r"sweep (\S+):", proc.stdout)
    assert sweep_id
    assert_exactly_once(home, sweep_id[1], 21 * 21)


def test_seed_workload(home: Path) -> None:
    n = 300
    sweep_id, rows = _run(home, "examples/seed_workload.py:work", "--range", str(n), "--chunk-size", "25")
    assert_exactly_once(home, sweep_id, n)
    assert [r["x"] for r in rows] == list(range(n))
    assert [r["value"] for r in rows] == [random.Random(seed).getrandbits(32) for seed in range(n)]
    assert all(r["status"] == "ok" and r["duration"] >= 0.001 for r in rows)


@pytest.mark.parametrize("name", ["option_pricer", "noisy_objective", "seed_workload"])
def test_docstrings_say_how_to_run_them(name: str) -> None:
    doc = _load(name).__doc__
    assert doc and f"ttg run examples/{name}.py:" in doc
