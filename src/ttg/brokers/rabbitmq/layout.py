"""The queues, exchange and headers of TTG on RabbitMQ.

Queues (vhost of the URL):

``ttg.q.{sweep}``      quorum queue of the sweep's chunks. Message body: the chunk
                       message; headers ``ttg-start``, ``ttg-stop``,
                       ``ttg-failures`` (failed attempts before this message was
                       published), ``ttg-last-failure`` (JSON). Arguments: a
                       ``x-delivery-limit`` safety net (TTG splits poison chunks
                       long before it), dead-lettering to ``ttg.dead.{sweep}``,
                       and ``x-ttg-priority`` (read back through the management
                       API to lease from the highest-priority sweep first).
``ttg.delay.{sweep}``  classic queue holding chunks released with a delay; each
                       message expires after its delay and is dead-lettered back
                       into ``ttg.q.{sweep}``.
``ttg.dead.{sweep}``   classic queue: the dead-letter record (headers ``ttg-reason``,
                       ``ttg-at``).
``ttg.sweeps``         fanout exchange: a message (body: the sweep id) after every
                       submit and release. Each client binds an exclusive queue
                       ``ttg.listen.{client}`` to it, so an idle worker sees new
                       work at once instead of waiting for the next listing.
"""

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


def read_headers(h: dict[str, Any]) -> tuple[Chunk, int, Failure | None, int]:
    """(chunk, failed attempts, last failure, priority) of a delivered chunk; raises
    KeyError, TypeError or ValueError for a message that is not a TTG chunk. A
    delivery RabbitMQ returned unacknowledged (``x-delivery-count``) was a lost lease."""
    chunk = Chunk(int(h["ttg-start"]), int(h["ttg-stop"]))
    lost = int(h.get("x-delivery-count") or 0)
    last = h.get("ttg-last-failure") or ""
    failure = Failure.from_dict(json.loads(last)) if last else None
    if lost:
        failure = Failure("lost", "the connection holding the lease closed: its worker died or was cut off")
    return chunk, int(h.get("ttg-failures") or 0) + lost, failure, int(h.get("ttg-priority") or 0)


def persistent(headers: dict[str, Any], expiration_ms: int = 0) -> pika.BasicProperties:
    """A persistent message's properties."""
    return pika.BasicProperties(delivery_mode=2, headers=headers,
                                expiration=str(expiration_ms) if expiration_ms else None)
