"""What the function may know about the point it is computing: ``ttg.context()``.

Inside a function TTG runs, ``ttg.context()`` gives the point's index, the
attempt (1 on the first delivery of its chunk, more after a crash, a timeout
or a lost lease), the sweep's id, the worker's id, and a seed derived from
(sweep, index) alone: the same on every worker, in every process, on every
rerun of the sweep, whatever the space's kind and whatever chunk the point
fell in. A sweep's id covers its code (core/sweep.py), so an edited function
is a new sweep with new seeds.

The worker states the chunk once (``enter``); the index is read from the
beacon the compute loop already writes before each point (worker/compute.py),
so a function that never calls ``context()`` pays nothing for it. Async points
computed at once (worker/aio.py) each state their index in a context variable
of their own task (``at``), which ``context()`` reads first.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: the seeds are 63-bit: non-negative in a signed 64-bit integer
_SEED_BITS = 63


def seed_of(sweep_id: str, index: int) -> int:
    """The seed of ``index`` in sweep ``sweep_id``: the first 63 bits of
    BLAKE2b(sweep id, index), so that neighbouring indices get unrelated seeds."""
    digest = hashlib.blake2b(f"{sweep_id}\0{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _SEED_BITS)


@dataclass(frozen=True)
class Context:
    """The point being computed. For a batched function, ``index`` is the first
    point of the batch; ``seed_of(i)`` gives any other point's seed."""

    index: int
    attempt: int
    sweep: str
    worker: str

    @property
    def seed(self) -> int:
        """This point's seed (63 bits; ``seed % 2**32`` for libraries that take 32-bit
        seeds, such as scikit-learn's ``random_state``)."""
        return seed_of(self.sweep, self.index)

    def seed_of(self, index: int) -> int:
        return seed_of(self.sweep, index)

    def rng(self) -> np.random.Generator:
        """A NumPy generator seeded with this point's seed."""
        import numpy as np

        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class _Chunk:
    sweep: str
    attempt: int
    worker: str
    #: worker/compute.py's beacon: [index + 1 being computed (0: none), ...]
    beacon: Any
    #: several points at once (worker/aio.py): only a point's own task knows its index
    concurrent: bool = False


_current: _Chunk | None = None
#: the index an async point's task computes (-1: read the beacon)
_index: ContextVar[int] = ContextVar("ttg_index", default=-1)


def enter(sweep: str, attempt: int, worker: str, beacon: Any, *, concurrent: bool = False) -> None:
    """The worker is about to compute points of a chunk of ``sweep`` (``concurrent``:
    several at once, each in a task of its own that states its index with ``at``)."""
    global _current
    _current = _Chunk(sweep, attempt, worker, beacon, concurrent)


def at(index: int) -> None:
    """The current asyncio task computes ``index`` (worker/aio.py)."""
    _index.set(index)


def leave() -> None:
    global _current
    _current = None


def context() -> Context | None:
    """The point being computed, inside a function TTG runs; None elsewhere (so the
    function can be called directly, in a test or a notebook, and choose a default)."""
    chunk = _current
    if chunk is None:
        return None
    index = _index.get()
    if index < 0:
        if chunk.concurrent:  # a thread of run_in_executor: the context did not go with it
            raise RuntimeError("ttg.context() cannot tell which point this thread computes: points run "
                               "at once (--concurrency), and loop.run_in_executor does not carry the "
                               "context into its thread; call ttg.context() in the coroutine and pass it "
                               "on, or use asyncio.to_thread, which carries it.")
        computing = int(chunk.beacon[0])
        if computing <= 0:
            return None
        index = computing - 1
    return Context(index, chunk.attempt, chunk.sweep, chunk.worker)
