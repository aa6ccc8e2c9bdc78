"""The client side of a sweep: submit it (resuming what exists), watch it, run
local workers for it.

Submitting is idempotent: the store is asked which index ranges are already
committed and only the rest is queued, and the broker ignores chunks it
already holds. So ``ttg run`` after an interruption, or ``ttg submit`` twice,
computes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker, DeadLetter
from ..core import fingerprint, funcref
from ..core.chunking import Chunk, gaps, merged, plan
from ..core.codec import Codec
from ..core.records import FAILED
from ..core.sweep import Options, Sweep
from ..errors import ConfigError
from ..spaces import Space
from ..spaces.files import FileSpace
from ..stores.base import ResultStore, SweepInfo
from ..worker.aio import is_async
from .reuse import reuse as copy_computed

log = logging.getLogger(__name__)

#: Messages per broker.submit call.
SUBMIT_BATCH = 1000


@dataclass(frozen=True)
class Submitted:
    sweep: Sweep
    queued: int
    already_done: int
    #: when resumed with other options: what they were, for the chunks queued before
    #: (each chunk message carries its options, so those keep them); None otherwise
    kept_options: dict[str, Any] | None = None
    #: points copied from earlier sweeps of the same code (``reuse``), part of already_done
    reused: int = 0


#: the options a queued chunk's message carries, which a resubmit does not change
_MESSAGE_OPTIONS = ("timeout", "max_attempts", "target_chunk_seconds", "batched", "concurrency")


def submit(sweep: Sweep, space: Space, broker: Broker, store: ResultStore, codec: Codec, *,
           reuse: bool = False) -> Submitted:
    """Register the sweep and queue every chunk that is not committed yet; with
    ``reuse``, after copying what earlier sweeps of the same code computed (reuse.py)."""
    existing = store.find(sweep.id)
    first = existing is None
    kept: dict[str, Any] | None = None
    if existing is not None:
        old = {k: getattr(existing.options, k) for k in _MESSAGE_OPTIONS}
        if old != {k: getattr(sweep.options, k) for k in _MESSAGE_OPTIONS} and broker.stats(sweep.id).active:
            kept = old
            log.warning("sweep %s: the chunks queued before keep their options %s; the new ones apply to "
                        "the chunks queued now (cancel the sweep and run it again to apply them to all)",
                        sweep.id, old)
    store.register(sweep)
    reused = copy_computed(sweep, space, store).points if reuse else 0
    size = sweep.first_chunk_size
    done = store.committed_ranges(sweep.id, 0, sweep.total)
    already = sum(b - a for a, b in done)
    queued = 0
    batch: list[tuple[Chunk, bytes]] = []
    for chunk, rows in _pending(sweep, space, size, done):
        batch.append((chunk, codec.encode(sweep.task(chunk, rows, first=first))))
        if len(batch) >= SUBMIT_BATCH:
            queued += broker.submit(sweep.id, batch, priority=sweep.options.priority)
            batch = []
    if batch:
        queued += broker.submit(sweep.id, batch, priority=sweep.options.priority)
    log.info("sweep %s: %d chunks queued, %d of %d points already done", sweep.id, queued, already,
             sweep.total)
    return Submitted(sweep, queued, already, kept, reused)


def other_code(sweep: Sweep, store: ResultStore) -> list[SweepInfo]:
    """Earlier sweeps of the same function and space that ran other code (an edit
    makes a new sweep; the summary says what became of the old one)."""
    return [i for i in store.sweeps() if i.sweep.id != sweep.id
            and sweep.same_work(i.sweep, code=False) and not sweep.same_work(i.sweep)]


def requeue(sweep: Sweep, ranges: list[Chunk], broker: Broker, codec: Codec) -> int:
    """Queue these ranges of an existing sweep again (retry, or chunks a broker lost),
    cut to the sweep's chunk size."""
    size = sweep.first_chunk_size
    space = sweep.make_space() if sweep.is_file else None
    items = [(c, codec.encode(sweep.task(c, list(space.points(c.start, c.stop)) if space else None)))
             for r in ranges for c in plan(r.start, r.stop, size)]
    return broker.submit(sweep.id, items, priority=sweep.options.priority)


def _pending(sweep: Sweep, space: Space, size: int,
             done: list[tuple[int, int]]) -> Iterator[tuple[Chunk, list[Any] | None]]:
    """The uncommitted pieces of the planned chunks (with their rows for file spaces)."""
    if isinstance(space, FileSpace):
        at = 0
        for rows in space.batches(size):
            whole = Chunk(at, at + len(rows))
            for piece in gaps(whole.start, whole.stop, done):
                yield piece, rows[piece.start - at:piece.stop - at]
            at = whole.stop
        return
    if not done:  # fast path: a new sweep
        for chunk in plan(0, sweep.total, size):
            yield chunk, None
        return
    for chunk in plan(0, sweep.total, size):
        for piece in gaps(chunk.start, chunk.stop, done):
            yield piece, None


def requeue_failed(sweep: Sweep, broker: Broker, store: ResultStore, codec: Codec,
                   statuses: tuple[str, ...] = FAILED) -> int:
    """Compute again (``ttg retry``) the indices whose records have these statuses and
    those of dead-lettered chunks, and, when nothing of the sweep is queued or leased,
    every index without a record (left so by a broker that lost its queue, or an
    earlier retry cut short); returns how many indices were queued."""
    reopened = store.reopen(sweep.id, statuses)  # (first: a worker must not find them committed)
    store.set_state(sweep.id, "active")
    if broker.stats(sweep.id).active:
        todo = [*reopened, *unresolved_dead(sweep, broker, store)]
    else:  # every index without a record, wherever it was lost
        todo = gaps(0, sweep.total, store.committed_ranges(sweep.id, 0, sweep.total))
    requeue(sweep, todo, broker, codec)
    return sum(len(c) for c in todo)


def open_dead_letters(sweep: Sweep, broker: Broker, store: ResultStore) -> list[DeadLetter]:
    """The sweep's dead letters whose chunk still lacks results (one that a retry
    computed since is history, not news)."""
    out = []
    for d in broker.dead_letters(sweep.id):
        a, b = d.chunk.start, d.chunk.stop
        if gaps(a, b, store.committed_ranges(sweep.id, a, b)):
            out.append(d)
    return out


def unresolved_dead(sweep: Sweep, broker: Broker, store: ResultStore) -> list[Chunk]:
    """The parts of the sweep's dead-lettered chunks that still have no results."""
    dead = merged((d.chunk.start, d.chunk.stop) for d in broker.dead_letters(sweep.id))
    return [g for a, b in dead for g in gaps(a, b, store.committed_ranges(sweep.id, a, b))]


def prepare(ref: str, space: Space, options: Options, name: str | None = None,
            code_paths: Sequence[str] = (), *, shipped: str | None = None) -> Sweep:
    """The sweep of ``ref`` over ``space``, its function imported now (so that a typo
    fails before anything is stored) and its code fingerprinted, with ``code_paths``
    (core/fingerprint.py); ``shipped``: the function's pickle (client/ship.py)."""
    Sweep.create(ref, space, options, name)  # the space, the options and the name are checked first
    fn = check_function(funcref.normalize(ref))
    if options.concurrency > 1 and not is_async(fn):
        raise ConfigError(f"concurrency runs several points of an async function at once, and {ref} is not "
                          "async: define it with `async def`, or drop --concurrency (concurrency=).")
    return Sweep.create(ref, space, options, name, code=fingerprint.of_function(fn, code_paths),
                        shipped=shipped)


def delete(sweep_id: str, broker: Broker, store: ResultStore) -> int:
    """Delete a sweep (``ttg delete``): its queued chunks, its results and its record;
    returns how many results went. Its name is free again."""
    store.sweep(sweep_id)
    broker.cancel(sweep_id)
    return store.delete(sweep_id)


def check_code(sweep: Sweep, paths: Sequence[str] = ()) -> None:
    """Refuse (ConfigError) to compute more of ``sweep`` here when the code this
    process imports is not the code the sweep was submitted with."""
    if sweep.code is None:
        return
    fn = check_function(sweep.function)
    here = fingerprint.of_function(fn, paths or sweep.code.paths)
    if here.digest != sweep.code.digest:
        raise ConfigError(f"the code of sweep {sweep.id} changed since it was submitted "
                          f"({', '.join(sweep.code.differing(here)) or 'its files'}); computing more of it "
                          "here would mix two codes: restore that code, or run the new code as a new "
                          "sweep (without --name, or under a new one).")


def cancel(sweep_id: str, broker: Broker, store: ResultStore) -> int:
    """Cancel a sweep: drop its queued chunks (returns how many); results stay, and
    submitting it again resumes it."""
    store.sweep(sweep_id)
    store.set_state(sweep_id, "cancelled")
    return broker.cancel(sweep_id)


def check_function(ref: str) -> Callable[..., Any]:
    """Import the function now, so a typo fails before anything is stored."""
    fn = funcref.resolve(ref)
    if not callable(fn):
        raise ConfigError(f"{ref!r} is not callable.")
    return fn
