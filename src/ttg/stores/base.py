"""The result store contract: where chunk results are committed, first commit wins.

A store knows sweeps, committed index ranges and their records, and nothing
about leases. Committed ranges of a sweep never overlap: a commit that
overlaps anything already committed is refused (returns False), which is what
makes every index end with exactly one record however often its chunk ran or
was split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from ..core.chunking import Chunk
from ..core.records import FAILED, ChunkRecords
from ..core.sweep import Sweep
from ..errors import ConfigError


@dataclass(frozen=True)
class Progress:
    total: int
    ok: int = 0
    error: int = 0
    crashed: int = 0
    timeout: int = 0

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def failed(self) -> int:
        return self.error + self.crashed + self.timeout

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def by_status(self) -> dict[str, int]:
        return {"ok": self.ok, "error": self.error, "crashed": self.crashed, "timeout": self.timeout}


@dataclass(frozen=True)
class SweepInfo:
    sweep: Sweep
    #: "active" or "cancelled"
    state: str
    progress: Progress
    updated: float


class ResultStore(ABC):
    """Commits chunk results idempotently and answers progress and export."""

    #: ``commit`` may run in a thread of its own while the caller computes (the
    #: client waits on a server with the GIL released). The worker then commits a
    #: chunk while it computes the next one; it never uses the store from two
    #: threads at once.
    concurrent_commit = False

    def register(self, sweep: Sweep) -> Sweep:
        """Record a sweep (idempotent). Registering the same work again keeps its
        results and takes the new options; a different sweep under an existing
        name raises ConfigError."""
        existing = self.find(sweep.id)
        if existing is not None and not existing.same_work(sweep):
            if existing.same_work(sweep, code=False):
                raise ConfigError(code_changed(existing, sweep))
            raise ConfigError(f"a sweep named {sweep.id!r} already exists with another function or "
                              "space; choose another --name.")
        self._save_sweep(sweep, created=existing is None)
        return sweep

    @abstractmethod
    def _save_sweep(self, sweep: Sweep, *, created: bool) -> None:
        """Insert or update the sweep record; set its state to active."""

    @abstractmethod
    def delete(self, sweep_id: str) -> int:
        """Remove the sweep's record and every result of it (``ttg delete``); returns
        how many results went. Its id is then free for another sweep."""

    @abstractmethod
    def find(self, sweep_id: str) -> Sweep | None:
        """The sweep with this id, or None."""

    def sweep(self, sweep_id: str) -> Sweep:
        """The sweep with this id; raises SweepNotFound."""
        from ..errors import SweepNotFound

        found = self.find(sweep_id)
        if found is None:
            raise SweepNotFound(f"no sweep named {sweep_id!r} in this store; run `ttg list` to see "
                                "the sweeps (and check --home or --store).")
        return found

    @abstractmethod
    def sweeps(self) -> list[SweepInfo]:
        """Every sweep with its state and progress, newest first."""

    @abstractmethod
    def state(self, sweep_id: str) -> str:
        """"active" or "cancelled"."""

    @abstractmethod
    def set_state(self, sweep_id: str, state: str) -> None: ...

    @abstractmethod
    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        """Atomically store the records of one chunk and update the progress
        counts, unless any of its indices is already committed: then store
        nothing and return False. Safe under concurrent writers."""

    @abstractmethod
    def committed_ranges(self, sweep_id: str, start: int, stop: int) -> list[tuple[int, int]]:
        """The committed ranges that overlap ``[start, stop)``, sorted."""

    def uncommitted(self, sweep_id: str, chunk: Chunk) -> list[Chunk]:
        """The parts of ``chunk`` with no committed records yet."""
        from ..core.chunking import gaps

        return gaps(chunk.start, chunk.stop, self.committed_ranges(sweep_id, chunk.start, chunk.stop))

    @abstractmethod
    def progress(self, sweep_id: str) -> Progress:
        """Exact counts of committed records by status."""

    @abstractmethod
    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        """Committed chunks in index order, streamed (memory: one batch of chunks)."""

    @abstractmethod
    def _replace(self, sweep_id: str, old: ChunkRecords, new: list[ChunkRecords]) -> bool:
        """Atomically swap a committed chunk for ``new`` (sub-ranges of it) and
        adjust the counts; False if ``old`` is no longer committed as it was."""

    def reopen(self, sweep_id: str, statuses: tuple[str, ...] = FAILED) -> list[Chunk]:
        """Delete the records with these statuses, keeping every other record, and
        return the index ranges that now need computing again (for ``ttg retry``)."""
        reopened: list[Chunk] = []
        for rec in list(self.chunks(sweep_id, failed_only="ok" not in statuses)):
            bad = set(rec.failed_offsets(statuses))
            if not bad:
                continue
            keep, redo = _runs(rec, bad)
            if self._replace(sweep_id, rec, [rec.slice(a, b) for a, b in keep]):
                reopened.extend(Chunk(a, b) for a, b in redo)
        return reopened

    def close(self) -> None:  # noqa: B027 - not every backend holds connections
        """Release connections."""

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _runs(rec: ChunkRecords, bad: set[int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split a chunk into maximal runs of kept and of reopened indices."""
    keep: list[tuple[int, int]] = []
    redo: list[tuple[int, int]] = []
    run_start = rec.start
    for k in range(1, len(rec) + 1):
        if k == len(rec) or ((k in bad) != ((k - 1) in bad)):
            (redo if (k - 1) in bad else keep).append((run_start, rec.start + k))
            run_start = rec.start + k
    return keep, redo


def code_changed(existing: Sweep, new: Sweep) -> str:
    """One sentence: a named sweep run again with other code."""
    if existing.code is None or new.code is None:
        what = "it was made by an older TTG, without a code fingerprint"
    else:
        what = f"{', '.join(existing.code.differing(new.code)) or 'its code'} changed since"
    return (f"sweep {existing.id!r} was computed with other code ({what}): its results are not this "
            f"code's; run under a new --name, or `ttg delete {existing.id}` first to start over.")
