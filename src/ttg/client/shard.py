"""Shard mode: pod ``i`` of ``n`` computes its own slice of a sweep, with no broker.

The sweep is registered in a shared result store first (``ttg submit --no-queue``;
idempotent, so every pod of a Kubernetes Indexed Job may run it). Then
``ttg worker --shard I/N --sweep ID`` computes indices
``[I * total // N, (I + 1) * total // N)``: it queues the slice's uncommitted
ranges in an embedded broker in a temporary directory (so its local children
lease, retry and split chunks as usual) and stops when the store holds the whole
slice. A rerun of a failed shard (Kubernetes ``backoffLimitPerIndex``) queues only
what is not committed yet, so committed chunks are not recomputed.

Exit status: 0 when the slice is complete; 1 when it is not (stopped by a signal,
or chunks dead-lettered): unlike ``ttg worker``, whose chunks another worker picks
up, an unfinished shard must fail so that Kubernetes runs its index again.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..brokers import open_broker
from ..core.chunking import gaps
from ..core.codec import Codec
from ..errors import ConfigError
from ..settings import Settings
from ..stores import open_store
from ..worker.child import ChildOptions
from ..worker.supervisor import Supervisor
from .submit import requeue

log = logging.getLogger(__name__)

#: How often the supervisor's tick asks the store whether the slice is complete.
CHECK_SECONDS = 0.2


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def bounds(self, total: int) -> tuple[int, int]:
        """This shard's slice of ``total`` indices: ``[start, stop)``; the slices of
        shards ``0..count-1`` cover every index once."""
        return self.index * total // self.count, (self.index + 1) * total // self.count


def parse(text: str) -> Shard:
    """``I/N``; Settings turns ``auto/N`` into it with the pod's ``JOB_COMPLETION_INDEX``
    or the SLURM array task's index, and ``auto`` with the SLURM array's as well."""
    index_text, sep, count_text = text.partition("/")
    if index_text == "auto":
        raise ConfigError(f"--shard {text} takes the index from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID"
                          f"{'' if sep else ' and the count from SLURM_ARRAY_TASK_COUNT'}, which are not "
                          "set; give --shard I/N, or run it in an Indexed Job or a SLURM job array.")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not I/N (e.g. 0/4) or auto/N.") from None
    if not sep or count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= I < N, e.g. 0/4.")
    return Shard(index, count)


@dataclass(frozen=True)
class Outcome:
    start: int
    stop: int
    #: indices of the slice committed before this run started
    already_done: int
    complete: bool


def run(settings: Settings, sweep_id: str, shard: Shard, options: ChildOptions) -> Outcome:
    """Compute this shard's slice of the sweep into the settings' store."""
    if not settings.store:
        raise ConfigError("--shard needs the shared result store: give --store or TTG_STORE "
                          "(postgresql://, redis:// or sqlite:// on a shared volume).")
    with open_store(settings, create=False) as store:
        sweep = store.sweep(sweep_id)
        start, stop = shard.bounds(sweep.total)
        missing = gaps(start, stop, store.committed_ranges(sweep.id, start, stop))
        already = (stop - start) - sum(len(c) for c in missing)
        log.info("shard %d/%d of %s: indices [%d, %d), %d already done", shard.index, shard.count,
                 sweep.id, start, stop, already)
        if not missing:
            return Outcome(start, stop, already, True)
        with tempfile.TemporaryDirectory(prefix="ttg-shard-") as tmp:
            local = settings.with_overrides(broker=f"local://{Path(tmp) / 'broker.db'}",
                                            home=Path(tmp))
            with open_broker(local) as broker:
                requeue(sweep, missing, broker, Codec(settings.secret))
                state = {"next": 0.0, "complete": False}

                def tick() -> bool:
                    now = time.monotonic()
                    if now < state["next"]:
                        return False
                    state["next"] = now + CHECK_SECONDS
                    if not gaps(start, stop, store.committed_ranges(sweep.id, start, stop)):
                        state["complete"] = True
                        return True
                    # nothing left to lease and still incomplete: dead-lettered chunks
                    return broker.stats(sweep.id).active == 0

                child = ChildOptions(worker_id="", allow=options.allow, sweep_id=sweep.id,
                                     max_chunks=options.max_chunks, max_memory_mb=options.max_memory_mb)
                Supervisor(local, child, broker, on_tick=tick).run()
                complete = bool(state["complete"]) or not gaps(
                    start, stop, store.committed_ranges(sweep.id, start, stop))
        return Outcome(start, stop, already, complete)
