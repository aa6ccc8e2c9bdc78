"""Brokers, chosen by URL scheme; each backend's driver is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..settings import Settings
from .base import Broker, DeadLetter, Lease, QueueStats

__all__ = ["Broker", "DeadLetter", "Lease", "QueueStats", "open_broker"]


def _local(url: str, settings: Settings) -> Broker:
    from .local import LocalBroker

    path = url.removeprefix("local://")
    return LocalBroker(path, settings.lease_seconds, poll_seconds=settings.poll_seconds)


def _redis(url: str, settings: Settings) -> Broker:
    from .redis_streams import RedisBroker

    return RedisBroker(url, settings.lease_seconds, poll_seconds=settings.poll_seconds)


_SCHEMES: dict[str, Callable[[str, Settings], Broker]] = {"local": _local, "redis": _redis, "rediss": _redis}


def open_broker(settings: Settings, url: str | None = None) -> Broker:
    """Open the broker at ``url`` (default: the settings' broker)."""
    url = url or settings.broker_url
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigError(f"unknown broker URL scheme {scheme + '://' if scheme else url!r}; "
                          f"use one of {known}.")
    return _SCHEMES[scheme](url, settings)
