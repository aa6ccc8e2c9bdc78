"""Running the dashboard: token policy, the exporter at /metrics, uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
import socket

import click

from ...core.codec import Codec
from ...errors import ConfigError
from ...settings import Settings
from ..monitor import SweepMonitor


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_for(host: str, given: str | None) -> str | None:
    """The token to require: the one given; on loopback none; elsewhere a random one."""
    if given:
        return given
    return None if is_loopback(host) else secrets.token_urlsafe(18)


def serve(settings: Settings, monitor: SweepMonitor, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard until SIGINT/SIGTERM (blocks)."""
    import uvicorn

    from .app import create_app

    token = token_for(host, token)
    app = create_app(monitor, Codec(settings.secret), token, _metrics_app(monitor))
    shown = host if ":" not in host else f"[{host}]"
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc}); choose another --port.") from exc
    click.echo(f"ttg dashboard: {url}", err=True)
    if token:
        click.echo("  (every request needs that token: ?token=, X-TTG-Token or Authorization: Bearer)",
                   err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")


def _metrics_app(monitor: SweepMonitor) -> object | None:
    """The sweep exporter at /metrics, when prometheus-client is installed."""
    try:
        from prometheus_client import make_asgi_app
    except ImportError:
        return None
    from ...worker.metrics import registry
    from ..exporter import SweepCollector

    return make_asgi_app(registry(SweepCollector(monitor)))
