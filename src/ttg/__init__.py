"""TTG: run one Python function over a huge parameter space, exactly one result per index."""

from __future__ import annotations

from .client.api import (
    Grid,
    Random,
    Range,
    Rows,
    arange,
    as_space,
    choice,
    integers,
    linspace,
    logspace,
    loguniform,
    normal,
    results,
    run,
    start,
    submit,
    uniform,
)
from .client.results import Results
from .core.context import Context, context
from .errors import TtgError
from .settings import Settings
from .spaces import Space
from .version import __version__

__all__ = [
    "Context", "Grid", "Random", "Range", "Results", "Rows", "Settings", "Space", "TtgError", "__version__",
    "arange", "as_space", "choice", "context", "integers", "linspace", "logspace", "loguniform", "normal",
    "results", "run", "start", "submit", "uniform",
]
