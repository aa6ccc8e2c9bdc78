"""A noisy 2-D objective searched on a grid: the Rosenbrock function plus measurement noise.

Think of each point as an expensive, noisy experiment (a simulation with a
random component, a model trained with a random seed): the true function has
its minimum 0 at (x, y) = (1, 1) at the end of a long curved valley, and every
evaluation adds Gaussian noise seeded by the point, so re-running a point
gives the same measurement.

From the command line (the repository root), a 161 x 161 grid::

    ttg run examples/noisy_objective.py:objective \\
        --grid x=linspace:-2:2:161 --grid y=linspace:-1:3:161 --name rosenbrock
    ttg results rosenbrock -o rosenbrock.parquet

or with the Python API, which runs the same sweep, loads the results into
pandas and prints the best point::

    python examples/noisy_objective.py [POINTS_PER_AXIS]
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

#: standard deviation of the measurement noise
NOISE = 0.01


def rosenbrock(x: float, y: float) -> float:
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def objective(p: Mapping[str, Any]) -> dict[str, float]:
    """One noisy measurement of the Rosenbrock function at ``(p["x"], p["y"])``."""
    x, y = float(p["x"]), float(p["y"])
    digest = hashlib.blake2b(np.array([x, y]).tobytes(), digest_size=8).digest()
    noise = np.random.default_rng(int.from_bytes(digest, "little")).normal(0.0, NOISE)
    return {"loss": rosenbrock(x, y) + float(noise)}


def main(points_per_axis: int = 81) -> None:
    import ttg

    grid = ttg.Grid(x=ttg.linspace(-2, 2, points_per_axis), y=ttg.linspace(-1, 3, points_per_axis))
    results = ttg.run(objective, grid)  # resumes if it was interrupted; see `ttg list`
    df = results.to_pandas()
    ok = df[df["status"] == "ok"]
    best = ok.loc[ok["loss"].idxmin()]
    print(f"sweep {results.name}: {len(ok)} of {len(df)} points ok")
    print(f"best point: x={best['x']:.4f} y={best['y']:.4f} measured loss={best['loss']:.5f} "
          f"true loss={rosenbrock(best['x'], best['y']):.5f} (true minimum: 0 at x=1 y=1)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 81)
