"""When RabbitMQ closes a channel because a delivery outlived ``consumer_timeout``.

A delivery left unacknowledged longer than the server's ``consumer_timeout``
(rabbitmq.conf, default 30 minutes) makes RabbitMQ close the channel, which
gives back every delivery on it. AMQP 0-9-1 has no way to extend a delivery,
so ``consumer_timeout`` must exceed the longest chunk. When it happens anyway,
TTG logs an error naming it, opens a new channel, and lets the chunks that
were running keep going: it takes their messages back at once on the new
channel (a returned message is the first a quorum queue delivers again) and
binds each to the chunk still running (deliveries.py: the token *moves*), so
its ack, release and heartbeat work as before. One that another worker got
first is left to finish anyway (an *orphan*: its commit is idempotent, its
ack a no-op): it is further along than the copy.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import pika.exceptions

from ..base import Lease
from .deliveries import Deliveries, Delivery
from .link import AMQP_ERRORS

log = logging.getLogger(__name__)


def log_timeout(reason: pika.exceptions.ChannelClosedByBroker, held: int) -> None:
    used = re.search(r"Timeout value used: (\d+) ms", reason.reply_text)
    limit = f"{int(used.group(1)) / 1000:g} s" if used else "its limit"
    log.error("RabbitMQ closed the channel because a chunk stayed unacknowledged longer than "
              "its consumer_timeout (%s), which put the %d chunk(s) this worker held back in "
              "the queue (it takes back what it can and lets them finish, but they may run "
              "twice). Set consumer_timeout in rabbitmq.conf above the longest chunk duration "
              "(in ms), or make chunks shorter (--chunk-size, or --chunk-size auto with "
              "--target-chunk-seconds).", limit, held)


def reclaim(lost: list[Delivery], deliveries: Deliveries, get: Callable[[str], Lease | None],
            give_back: Callable[[Lease], None], patience: float = 0.5) -> None:
    """Take back the chunks of ``lost`` deliveries, which still run here: the next
    gets of their queues usually return them (unless another worker was faster).
    A message of another chunk got on the way goes back to its queue with
    ``give_back``, its attempts unchanged. What is not found becomes an orphan."""
    wanted = {d.token: d for d in lost}
    strays = 0
    end = time.monotonic() + patience
    try:
        while wanted and strays <= len(lost) and time.monotonic() < end:
            for sweep in sorted({d.sweep for d in wanted.values()}):
                got = get(sweep)
                if got is None:
                    continue
                old = next((t for t, d in wanted.items() if d.sweep == sweep and d.chunk == got.chunk), None)
                if old is not None:
                    deliveries.move(old, got.token)
                    del wanted[old]
                    continue
                strays += 1
                give_back(got)
            if wanted:
                time.sleep(0.01)
    except AMQP_ERRORS as exc:
        log.warning("could not take back the chunks lost to the consumer timeout: %r", exc)
    for d in wanted.values():
        deliveries.orphan(d)  # another worker has it: let ours finish anyway
    log.info("took back %d of %d chunk(s) after the consumer timeout", len(lost) - len(wanted), len(lost))
