"""Optional dependencies: each backend and feature installs with an extra of its own.
A missing one is one sentence naming the extra and the command, never a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

#: TTG's name on PyPI (the import name and the command are `ttg`; "ttg" on PyPI is
#: an unrelated project)
DISTRIBUTION = "ttg-sweep"

#: what each extra is for (pyproject.toml's optional-dependencies)
EXTRAS = {"redis": "Redis", "amqp": "RabbitMQ", "postgres": "PostgreSQL", "metrics": "Prometheus metrics",
          "dashboard": "the dashboard", "plot": "plots", "pandas": "pandas DataFrames"}


def need(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` for ``what``; ConfigError naming ``extra`` when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{what} needs {exc.name or module}, which is not installed; install it with "
                          f"pip install '{DISTRIBUTION}[{extra}]'.") from None
