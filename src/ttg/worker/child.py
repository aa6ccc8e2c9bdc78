"""The worker loop, written once against the Broker and ResultStore interfaces:

    lease -> decode and check -> (split | isolate | compute what is not yet
    committed -> commit) -> ack

Results are committed before the ack, and a chunk whose results are already
committed is acked without computing it again, so redelivery never produces a
second record. The child tells its supervisor what it holds (``Reporter``), so
the supervisor can extend the lease while the function runs and release it
at once if the child dies.

On a store over the network (``ResultStore.concurrent_commit``) a chunk's
commit runs in a thread of the child while the next chunk computes, so the
server's round trip and write do not stand between two chunks. The
committing chunk stays leased until its commit returns and it is acked (with
the lease request after that), so a child holds at most two chunks (three
when its broker relays through the supervisor and leases one ahead:
proxy.py), and one that dies
leaves them all to be redelivered: a committed one is acked without computing,
and only the computing one counts a failed attempt.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ..brokers.base import Broker, Lease
from ..core import funcref
from ..core.chunking import Chunk, remainder_pieces
from ..core.codec import Codec
from ..core.records import ChunkRecords, failed_record
from ..core.retry import Isolated, Split, decide
from ..errors import BadMessage, FunctionError, NotAllowed, SpecError, TtgError
from ..spaces import Space, space_from_spec
from ..stores.base import ResultStore
from .compute import Beacon, make_storable, run_batch, run_points
from .events import Events
from .pace import LONG_SECONDS

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """How a child tells its supervisor what it is doing."""

    def leased(self, lease: Lease, timeout: float | None) -> None: ...
    def computed(self, lease: Lease) -> None:
        """The function is done with this chunk; its results are being committed."""
    def finished(self, lease: Lease) -> None: ...
    def stop_requested(self) -> bool: ...


@dataclass
class ChildOptions:
    worker_id: str
    allow: funcref.AllowList
    #: Lease only this sweep's chunks (``ttg run``); None: any sweep.
    sweep_id: str | None = None
    #: Exit when nothing is queued or leased (``--burst``).
    burst: bool = False
    #: Exit (to be replaced) after this many chunks.
    max_chunks: int | None = None
    #: Exit (to be replaced) once the resident set exceeds this many MiB.
    max_memory_mb: float | None = None
    poll_seconds: float = 0.5
    #: Send the supervisor a summary of each chunk (for its metrics; events.Tally).
    report_chunks: bool = False


@dataclass(frozen=True)
class Task:
    """A decoded chunk message."""

    sweep_id: str
    chunk: Chunk
    fn: str
    space: dict[str, Any] | None
    rows: list[Any] | None
    batched: bool
    timeout: float | None
    max_attempts: int
    auto: float | None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, body: Any, lease: Lease) -> Task:
        try:
            chunk = Chunk(int(body["start"]), int(body["stop"]))
            task = cls(str(body["sweep"]), chunk, str(body["fn"]), body.get("space"), body.get("rows"),
                       bool(body.get("batched")), _seconds(body.get("timeout")),
                       int(body.get("max_attempts") or 3), body.get("auto"), body)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadMessage(f"malformed chunk message ({type(exc).__name__}: {exc}).") from exc
        if task.sweep_id != lease.sweep_id or task.chunk != lease.chunk:
            raise BadMessage(f"message names sweep {task.sweep_id} {task.chunk} but was queued as "
                             f"{lease.sweep_id} {lease.chunk} (replayed into another sweep?).")
        if (task.space is None) == (task.rows is None):
            raise BadMessage("chunk message needs exactly one of 'space' or 'rows'.")
        return task

    def body_for(self, piece: Chunk) -> dict[str, Any]:
        body = dict(self.raw, start=piece.start, stop=piece.stop)
        if self.rows is not None:
            body["rows"] = self.rows[piece.start - self.chunk.start:piece.stop - self.chunk.start]
        return body


class ChildLoop:
    def __init__(self, broker: Broker, store: ResultStore, codec: Codec, options: ChildOptions,
                 reporter: Reporter, beacon: Beacon, events: Events | None = None) -> None:
        self.broker, self.store, self.codec = broker, store, codec
        self.options = options
        self.reporter = reporter
        self.events = events or Events()
        self.beacon = beacon
        self._functions: dict[str, Callable[[Any], Any]] = {}
        self._spaces: dict[str, Space] = {}
        self.chunks_done = 0
        #: chunks whose results are committed, to ack with the next lease
        self._unacked: list[Lease] = []
        #: a chunk being committed in the background: (lease, sweep id, its commit)
        self._pending: tuple[Lease, str, Future[list[ChunkRecords]]] | None = None
        self._committer = (ThreadPoolExecutor(1, thread_name_prefix="ttg-commit")
                           if store.concurrent_commit else None)

    def run(self) -> str:
        """Lease and handle chunks until told to stop; returns why it stopped:
        "stop", "drained" (burst, no work left), "recycle" (max chunks or memory)."""
        try:
            return self._loop()
        finally:
            try:
                self._settle()
            finally:
                self._flush_ack()
                if self._committer is not None:
                    self._committer.shutdown()

    def _loop(self) -> str:
        o = self.options
        while True:
            if self.reporter.stop_requested():
                return "stop"
            lease = self._next_lease()
            if lease is not None and self.reporter.stop_requested():
                self.broker.release(lease)  # handed out as the stop came: back, uncounted
                return "stop"
            if lease is None:
                self._settle()  # nothing to compute meanwhile: finish the commit, ack it now
                self._flush_ack()
                if o.burst and self._drained():
                    return "drained"
                continue
            self.events.chunk_leased(lease)
            self.events.chunk_finished(lease, self.handle(lease))
            if not self._holds(lease):
                self.reporter.finished(lease)
            self.chunks_done += 1
            if o.max_chunks and self.chunks_done >= o.max_chunks:
                return "recycle"
            if o.max_memory_mb and _rss_mb() > o.max_memory_mb:
                return "recycle"

    def _next_lease(self) -> Lease | None:
        """The next chunk. A computed chunk's ack waits until here, so that it goes
        in the same request as the next lease (``Broker.ack_and_lease``); its
        results are committed already, so a worker that dies in between only
        leaves a chunk that is redelivered and acked without computing."""
        o = self.options
        if self._unacked:
            done = self._unacked.pop()
            self._flush_ack()  # (more than one only after a skipped chunk)
            lease = self.broker.ack_and_lease(done, o.worker_id, sweep_id=o.sweep_id)
            self.reporter.finished(done)
            if lease is not None:
                return lease
        return self.broker.lease(o.worker_id, timeout=o.poll_seconds, sweep_id=o.sweep_id)

    def _flush_ack(self) -> None:
        while self._unacked:
            done = self._unacked.pop()
            try:
                self.broker.ack(done)
                self.reporter.finished(done)
            except TtgError as exc:  # committed: it comes back and is acked without computing
                log.warning("could not ack %s %s: %s", done.sweep_id, done.chunk, exc)

    def _holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still to be acked (committing, or committed and unacked)."""
        pending = self._pending is not None and self._pending[0].token == lease.token
        return pending or any(u.token == lease.token for u in self._unacked)

    def _settle(self) -> None:
        """Wait for the commit running in the background, if any (re-raising its
        error); its chunk is then acked with the next lease request. Called before
        any other use of the store, which is never used by two threads at once."""
        if self._pending is None:
            return
        lease, sweep_id, commit = self._pending
        self._pending = None
        for rec in commit.result():
            self.events.committed(sweep_id, rec)
        self._unacked.append(lease)

    def _drained(self) -> bool:
        """Nothing left for a burst worker: nothing queued or leased anywhere."""
        self._settle()
        return not self.broker.stats(self.options.sweep_id).active

    def handle(self, lease: Lease) -> str:
        """Handle one leased chunk: its results end committed (or it ends split,
        released or dead-lettered) before this returns. Returns how (events.OUTCOMES)."""
        try:
            task = Task.parse(self.codec.decode(lease.body), lease)
            self.options.allow.check(task.fn)
        except (BadMessage, NotAllowed) as exc:
            log.warning("rejecting %s %s: %s", lease.sweep_id, lease.chunk, exc)
            self.broker.dead_letter(lease, str(exc))
            return "rejected"
        self.reporter.leased(lease, task.timeout)
        decision = decide(lease.chunk, lease.failures, task.max_attempts, lease.last_failure)
        if isinstance(decision, Split):
            self._requeue(task, lease, decision.pieces)
            self.broker.ack(lease)
            return "split"
        if isinstance(decision, Isolated):
            rec = failed_record(lease.chunk, decision.status, decision.reason, self.options.worker_id,
                                lease.attempt, task.rows)
            self._settle()
            if self.store.commit(task.sweep_id, rec):
                self.events.committed(task.sweep_id, rec)
            self.broker.dead_letter(lease, decision.reason)
            return "isolated"
        return self._compute(task, lease)

    def _compute(self, task: Task, lease: Lease) -> str:
        try:
            fn = self._function(task.fn)
            space = None if task.rows is not None else self._space(task)
        except (FunctionError, SpecError) as exc:
            log.error("cannot run %s %s: %s", task.sweep_id, task.chunk, exc)
            self.broker.dead_letter(lease, str(exc))
            return "unrunnable"
        outcome = "skipped"  # everything was committed already
        parts = self._to_compute(task, lease)
        for part in parts:
            started = time.perf_counter()
            rec = self._run(fn, space, task, part, lease.attempt)
            short = time.perf_counter() - started < LONG_SECONDS
            make_storable(rec)
            outcome = "computed"
            self._settle()  # the previous chunk's commit, which ran meanwhile
            if rec.stop < part.stop:  # chunk_size="auto": commit, then hand the rest back
                self._commit_now(task.sweep_id, rec)
                per_point = sum(rec.durations) / len(rec) / 1e9
                rest = remainder_pieces(rec.stop, part.stop, per_point, task.auto or 1.0)
                self._requeue(task, lease, rest)
                continue
            if part is parts[-1]:
                # told first: a commit thread would contend for the GIL with the message
                self.reporter.computed(lease)
                if self._committer is not None and short:
                    # committed while the next chunk computes; after a long chunk the
                    # commit is awaited, so that its ack goes out at once (pace.py)
                    commit = self._committer.submit(self._commit, task.sweep_id, rec)
                    self._pending = (lease, task.sweep_id, commit)
                    return outcome
            self._commit_now(task.sweep_id, rec)
        self._unacked.append(lease)
        return outcome

    def _commit_now(self, sweep_id: str, rec: ChunkRecords) -> None:
        for piece in self._commit(sweep_id, rec):
            self.events.committed(sweep_id, piece)

    def _commit(self, sweep_id: str, rec: ChunkRecords) -> list[ChunkRecords]:
        """Commit ``rec``; returns what this call committed (``rec``, or the parts of
        it nobody else had committed). Runs in the commit thread or in the loop's."""
        if self.store.commit(sweep_id, rec):
            return [rec]
        log.info("%s %s was already committed by another worker", sweep_id, rec.chunk)
        return self._commit_gaps(sweep_id, rec)

    def _to_compute(self, task: Task, lease: Lease) -> list[Chunk]:
        """The parts of the chunk without committed results. When nothing of it can
        be committed yet, the store is not asked (a round trip per chunk): the broker
        says so (``Lease.fresh``), or this is the first delivery of a message of the
        sweep's first submit, of which no other copy was ever queued. Were that
        wrong, the commit's first-commit-wins check and ``_commit_gaps`` would still
        keep every index to one record."""
        if lease.fresh or (lease.attempt == 1 and task.raw.get("first") is True):
            return [task.chunk]
        self._settle()
        return self.store.uncommitted(task.sweep_id, task.chunk)

    def _run(self, fn: Callable[[Any], Any], space: Space | None, task: Task, part: Chunk,
             attempt: int) -> ChunkRecords:
        offset = part.start - task.chunk.start
        if task.rows is not None:
            points: Any = task.rows[offset:offset + len(part)]
        else:
            assert space is not None
            points = _batch_input(space, part) if task.batched else space.points(part.start, part.stop)
        if task.batched:
            batch = _rows_to_columns(points) if task.rows is not None else points
            values, durations, errors = run_batch(fn, batch, len(part), part.start, self.beacon)
        else:
            deadline = None if task.auto is None else time.perf_counter() + task.auto
            values, durations, errors = run_points(fn, points, part.start, self.beacon, deadline)
        n = len(values)
        statuses = None
        if errors:
            statuses = ["ok"] * n
            for k in errors:
                statuses[k] = "error"
        params = task.rows[offset:offset + n] if task.rows is not None else None
        return ChunkRecords(part.start, part.start + n, values, durations, self.options.worker_id,
                            attempt, statuses, errors, params)

    def _commit_gaps(self, sweep_id: str, rec: ChunkRecords) -> list[ChunkRecords]:
        """Commit the parts of ``rec`` still without records, and return them. Another
        worker may have committed only part of the range meanwhile (its lease was
        lost, or it cut the chunk elsewhere) and died before handing the rest back;
        acking without these would leave those indices with no record."""
        committed = []
        while gaps := self.store.uncommitted(sweep_id, rec.chunk):
            for gap in gaps:  # a refusal means someone else committed there: look again
                piece = rec.slice(gap.start, gap.stop)
                if self.store.commit(sweep_id, piece):
                    committed.append(piece)
        return committed

    def _requeue(self, task: Task, lease: Lease, pieces: list[Chunk]) -> None:
        items = [(p, self.codec.encode(task.body_for(p))) for p in pieces]
        self.broker.submit(task.sweep_id, items, priority=lease.priority)

    def _function(self, ref: str) -> Callable[[Any], Any]:
        if ref not in self._functions:
            self._functions[ref] = funcref.resolve(ref)
        return self._functions[ref]

    def _space(self, task: Task) -> Space:
        if task.sweep_id not in self._spaces:
            assert task.space is not None
            self._spaces[task.sweep_id] = space_from_spec(task.space)
        return self._spaces[task.sweep_id]


def _seconds(v: Any) -> float | None:
    return None if v is None else float(v)


def _batch_input(space: Space, part: Chunk) -> Any:
    """A chunk's points for a batched function: an int array for a range space,
    else a dict of column arrays."""
    import numpy as np

    cols = space.columns(part.start, part.stop)
    if space.kind == "range":
        return np.asarray(next(iter(cols.values())))
    return {name: np.asarray(values) for name, values in cols.items()}


def _rows_to_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    names = list(rows[0]) if rows else []
    return {name: np.asarray([r.get(name) for r in rows]) for name in names}


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
