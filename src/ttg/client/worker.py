"""Running a worker (``ttg worker``): a supervisor and its children on this
machine, computing chunks of any allowed sweep from the broker."""

from __future__ import annotations

from ..brokers import open_broker
from ..errors import ConfigError, DiskFull
from ..extras import need
from ..settings import Settings
from ..stores import open_store
from ..worker.child import ChildOptions
from ..worker.supervisor import Supervisor


def run_worker(settings: Settings, options: ChildOptions, *, metrics: tuple[str, int] | None = None) -> None:
    """Run until stopped (SIGTERM, Ctrl-C, or ``options.burst`` and no work left);
    ``metrics``: serve Prometheus metrics on (host, port)."""
    require_allowed(options)
    # a networked broker's worker may be on another machine: never create an SQLite store there
    with open_broker(settings) as broker, open_store(settings, create=settings.broker_url.startswith("local://")):
        if metrics is None:
            supervisor = Supervisor(settings, options, broker)
            supervisor.run()
        else:
            need("prometheus_client", "metrics", "ttg worker --metrics-port")
            from ..worker.metrics import run_observed

            supervisor = run_observed(settings, options, broker, *metrics)
    if supervisor.fatal is not None:
        raise DiskFull(supervisor.fatal)


def require_allowed(options: ChildOptions) -> None:
    """A worker must be allowed to run something (ConfigError otherwise)."""
    if not options.allow.patterns and not options.accept_shipped:
        raise ConfigError("this worker may run nothing; give --allow MODULE (or TTG_ALLOW) for the "
                          "functions it should run.")
