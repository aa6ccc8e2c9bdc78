"""An example module for the derived image: `ttg submit mymodel:simulate --range 1000000`."""

import math


def simulate(x: int) -> dict[str, float]:
    return {"y": math.sin(x / 1000.0)}
