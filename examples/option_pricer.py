"""Monte Carlo prices of European calls over a strike x volatility grid.

Each point is priced by simulating terminal prices of a geometric Brownian
motion and discounting the mean payoff; the result carries the Monte Carlo
standard error and the Black–Scholes closed-form price, so every row of the
results table checks itself. The random numbers of a point come from a
generator seeded by the point itself, so a point gets the same price whichever
worker computes it, in whichever chunk, and after any number of retries.

Run it from the repository root, one point per call::

    ttg run examples/option_pricer.py:price \\
        --grid strike=linspace:60:140:81 --grid vol=linspace:0.05:0.8:76 --name calls
    ttg results calls -o calls.parquet

or vectorized, one call per chunk with the chunk's points as numpy columns::

    ttg run examples/option_pricer.py:price_batch --batched \\
        --grid strike=linspace:60:140:81 --grid vol=linspace:0.05:0.8:76

A point may also set ``spot``, ``rate`` and ``maturity`` (add them as grid axes);
otherwise they default to 100, 3% and one year.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

SPOT = 100.0
RATE = 0.03
MATURITY = 1.0
PATHS = 20_000
#: points simulated at once by price_batch: a few, so that BLOCK x PATHS floats stay in cache
BLOCK = 4


def price(p: Mapping[str, Any]) -> dict[str, float]:
    """Monte Carlo price, its standard error, and the Black–Scholes price of one call."""
    strike, vol = float(p["strike"]), float(p["vol"])
    spot, rate, maturity = _market(p)
    z = _rng(strike, vol, spot, rate, maturity).standard_normal(PATHS)
    mc, se = _monte_carlo(z[None, :], strike, vol, spot, rate, maturity)
    return {"price": float(mc[0]), "stderr": float(se[0]),
            "bs_price": black_scholes_call(spot, strike, vol, rate, maturity)}


def price_batch(cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The same as ``price`` for every point of a chunk at once (``--batched``).

    ``cols`` maps each axis to a numpy array; the result maps each output column
    to an array with one entry per point. Each point still draws its own random
    numbers, so the prices equal those of ``price`` exactly. With 20,000 paths a
    single point is already a large vectorized computation, so batching saves
    little here; it pays off when the work per point is small (few paths, a
    closed form), where one call per chunk removes the per-call overhead.
    """
    strike = np.asarray(cols["strike"], dtype=float)
    vol = np.asarray(cols["vol"], dtype=float)
    n = len(strike)
    spot, rate, maturity = (np.broadcast_to(np.asarray(cols.get(name, default), dtype=float), (n,))
                            for name, default in (("spot", SPOT), ("rate", RATE), ("maturity", MATURITY)))
    mc, se = np.empty(n), np.empty(n)
    for a in range(0, n, BLOCK):
        b = min(a + BLOCK, n)
        z = np.stack([_rng(strike[k], vol[k], spot[k], rate[k], maturity[k]).standard_normal(PATHS)
                      for k in range(a, b)])
        mc[a:b], se[a:b] = _monte_carlo(z, strike[a:b, None], vol[a:b, None], spot[a:b, None],
                                        rate[a:b, None], maturity[a:b, None])
    bs = np.array([black_scholes_call(spot[k], strike[k], vol[k], rate[k], maturity[k]) for k in range(n)])
    return {"price": mc, "stderr": se, "bs_price": bs}


def black_scholes_call(spot: float, strike: float, vol: float, rate: float, maturity: float) -> float:
    """The closed-form price of a European call."""
    spot, strike, vol, rate, maturity = map(float, (spot, strike, vol, rate, maturity))
    if vol <= 0 or maturity <= 0:
        return max(spot - strike * math.exp(-rate * maturity), 0.0)
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * maturity) / sd
    d2 = d1 - sd
    return spot * _norm_cdf(d1) - strike * math.exp(-rate * maturity) * _norm_cdf(d2)


def _monte_carlo(z: np.ndarray, strike: Any, vol: Any, spot: Any, rate: Any,
                 maturity: Any) -> tuple[np.ndarray, np.ndarray]:
    """Discounted mean payoff and its standard error, one row of ``z`` per point."""
    drift = (rate - 0.5 * vol * vol) * maturity
    terminal = spot * np.exp(drift + vol * np.sqrt(maturity) * z)
    payoff = np.maximum(terminal - strike, 0.0) * np.exp(-rate * maturity)
    return payoff.mean(axis=1), payoff.std(axis=1, ddof=1) / math.sqrt(z.shape[1])


def _market(p: Mapping[str, Any]) -> tuple[float, float, float]:
    return float(p.get("spot", SPOT)), float(p.get("rate", RATE)), float(p.get("maturity", MATURITY))


def _rng(*params: float) -> np.random.Generator:
    """A generator seeded by the point's values (the same in every process)."""
    digest = hashlib.blake2b(np.asarray(params, dtype=np.float64).tobytes(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
