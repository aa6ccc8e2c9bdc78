"""Brokers, chosen by URL scheme; each backend's driver is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..settings import Settings
from .base import Broker, DeadLetter, Lease, QueueStats

__all__ = ["Broker", "DeadLetter", "Lease", "QueueStats", "holds_leases", "open_broker"]


def _local(url: str, settings: Settings) -> Broker:
    from .local import LocalBroker

    path = url.removeprefix("local://")
    return LocalBroker(path, settings.lease_seconds, poll_seconds=settings.poll_seconds)


def _redis(url: str, settings: Settings) -> Broker:
    from .redis_streams import RedisBroker

    return RedisBroker(url, settings.lease_seconds, poll_seconds=settings.poll_seconds)


def _amqp(url: str, settings: Settings) -> Broker:
    from .rabbitmq import RabbitBroker

    return RabbitBroker(url, settings.lease_seconds, poll_seconds=settings.poll_seconds)


_SCHEMES: dict[str, Callable[[str, Settings], Broker]] = {
    "local": _local, "redis": _redis, "rediss": _redis, "amqp": _amqp, "amqps": _amqp,
}


def holds_leases(url: str) -> bool:
    """True for brokers whose leases live with a connection (see Broker.holds_leases)."""
    return urlsplit(url).scheme in ("amqp", "amqps")


def open_broker(settings: Settings, url: str | None = None) -> Broker:
    """Open the broker at ``url`` (default: the settings' broker)."""
    url = url or settings.broker_url
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigError(f"unknown broker URL scheme {scheme + '://' if scheme else url!r}; "
                          f"use one of {known}.")
    return _SCHEMES[scheme](url, settings)
