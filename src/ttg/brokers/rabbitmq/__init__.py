"""The RabbitMQ broker (see broker.py for its queues and how a lease lives)."""

from __future__ import annotations

from .broker import RabbitBroker

__all__ = ["RabbitBroker"]
