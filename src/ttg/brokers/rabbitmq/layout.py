"""The queues, exchange and headers of TTG on RabbitMQ (see broker.py for the layout)."""

from __future__ import annotations

import json
from typing import Any

import pika

from ...core.chunking import Chunk
from ...core.retry import Failure

#: ``x-delivery-limit`` of a sweep's queue: a safety net, TTG splits poison chunks long before it
DELIVERY_LIMIT = 50
#: fanout exchange announcing new work (broker.py)
ANNOUNCE = "ttg.sweeps"


def queue_names(sweep_id: str) -> tuple[str, str, str]:
    """The sweep's chunk queue, delay queue and dead-letter queue."""
    return f"ttg.q.{sweep_id}", f"ttg.delay.{sweep_id}", f"ttg.dead.{sweep_id}"


def chunk_headers(sweep_id: str, chunk: Chunk, failures: int, last: Failure | None,
                  priority: int) -> dict[str, Any]:
    return {"ttg-sweep": sweep_id, "ttg-start": chunk.start, "ttg-stop": chunk.stop,
            "ttg-failures": failures, "ttg-priority": priority,
            "ttg-last-failure": json.dumps(last.to_dict()) if last else ""}


def persistent(headers: dict[str, Any], expiration_ms: int = 0) -> pika.BasicProperties:
    """A persistent message's properties."""
    return pika.BasicProperties(delivery_mode=2, headers=headers,
                                expiration=str(expiration_ms) if expiration_ms else None)
