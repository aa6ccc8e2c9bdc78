"""Brokers, chosen by URL scheme; each backend's driver is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..core.clock import SYSTEM, Clock
from ..errors import ConfigError
from ..extras import need
from ..settings import Settings
from .base import Broker, BrokerBackend, DeadLetter, Lease, QueueStats

__all__ = ["Broker", "DeadLetter", "Lease", "QueueStats", "broker_class", "open_broker", "open_child_broker"]


def _local() -> type[BrokerBackend]:
    from .local import LocalBroker

    return LocalBroker


def _redis() -> type[BrokerBackend]:
    need("redis", "redis", "the Redis broker")
    from .redis_streams import RedisBroker

    return RedisBroker


def _amqp() -> type[BrokerBackend]:
    need("pika", "amqp", "the RabbitMQ broker")
    from .rabbitmq import RabbitBroker

    return RabbitBroker


_SCHEMES: dict[str, Callable[[], type[BrokerBackend]]] = {
    "local": _local, "redis": _redis, "rediss": _redis, "amqp": _amqp, "amqps": _amqp,
}


def broker_class(url: str) -> type[BrokerBackend]:
    """The broker class for ``url``'s scheme; ConfigError for an unknown one."""
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigError(f"unknown broker URL scheme {scheme + '://' if scheme else url!r}; "
                          f"use one of {known}.")
    return _SCHEMES[scheme]()


def open_broker(settings: Settings, url: str | None = None, *, clock: Clock = SYSTEM) -> Broker:
    """Open the broker at ``url`` (default: the settings' broker), reading time from
    ``clock`` (a test's, to step it)."""
    url = url or settings.broker_url
    return broker_class(url).from_url(url, settings, clock)


def open_child_broker(settings: Settings, proxied: Callable[[], Broker]) -> Broker:
    """In a worker child: the client it uses (``Broker.for_child``)."""
    url = settings.broker_url
    return broker_class(url).for_child(url, settings, proxied)
