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
the lease request after that), so a child holds at most two chunks (three when
its broker relays through the supervisor and leases one ahead: proxy.py), and
one that dies leaves them all to be redelivered: a committed one is acked
without computing, and only the computing one counts a failed attempt.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..brokers.base import Broker, Lease
from ..core import funcref
from ..core.chunking import Chunk, remainder_pieces
from ..core.codec import Codec
from ..core.records import ChunkRecords, failed_record
from ..core.retry import Isolated, SetAside, Split, decide
from ..errors import (
    BrokerError,
    StoreError,
    TtgError,
)
from ..stores.base import ResultStore
from . import aio
from .compute import Beacon, compute_part, make_storable
from .events import Events
from .gate import Gate, Refusals, Unrunnable
from .limits import FailureLimits
from .pace import LONG_SECONDS
from .task import Task, rss_mb

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """How a child tells its supervisor what it is doing."""

    def leased(self, lease: Lease, timeout: float | None, *, loop: bool = False) -> None: ...
    def computed(self, lease: Lease) -> None:
        """The function is done with this chunk; its results are being committed."""
    def finished(self, lease: Lease) -> None: ...
    def refused(self, lease: Lease, reason: str) -> None:
        """This child gave the chunk back, leaving its sweep to other workers, for ``reason``."""
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
    #: The function's prints go to stderr (``ttg run``: stdout carries TTG's own output).
    prints_to_stderr: bool = False
    #: Seconds to wait after each failed try while the broker or the store cannot be
    #: reached (the last one repeats).
    outage_waits: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    #: GPUs the children split, and how many children share one (worker/devices.py)
    devices: tuple[str, ...] = ()
    children_per_device: int = 1
    #: Load functions shipped by value with their sweep (``--accept-shipped-code``).
    accept_shipped: bool = False


class ChildLoop:
    def __init__(self, broker: Broker, store: ResultStore, codec: Codec, options: ChildOptions,
                 reporter: Reporter, beacon: Beacon, events: Events | None = None) -> None:
        self.broker, self.store, self.codec = broker, store, codec
        self.options = options
        self.reporter = reporter
        self.events = events or Events()
        self.beacon = beacon
        self.gate = Gate(codec, options.allow, store, before_store=self._settle,
                         accept_shipped=options.accept_shipped)
        self.chunks_done = 0
        #: chunks whose results are committed, to ack with the next lease
        self._unacked: list[Lease] = []
        #: the chunk being handled now
        self._current: Lease | None = None
        #: after an outage: chunks to give back uncounted ("release") or to ack ("ack")
        self._backlog: list[tuple[Lease, str]] = []
        #: failed tries in a row (0: the broker and the store answer)
        self._outages = 0
        self.refusals = Refusals()
        self.limits = FailureLimits(broker, store)
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
        while True:
            try:
                reason = self._turn()
                self._outages = 0
            except (StoreError, BrokerError) as exc:
                reason = self._outage(exc)
            if reason is not None:
                return reason

    def _turn(self) -> str | None:
        """One chunk (or one empty poll); returns why to stop, or None to go on."""
        o = self.options
        if self.reporter.stop_requested():
            return "stop"
        self._retry_backlog()
        lease = self._next_lease()
        if lease is not None and self.reporter.stop_requested():
            self.broker.release(lease)  # handed out as the stop came: back, uncounted
            return "stop"
        if lease is None:
            self._settle()  # nothing to compute meanwhile: finish the commit, ack it now
            self._flush_ack()
            if o.burst and self._drained():
                return "drained"
            return None
        self._current = lease
        self.events.chunk_leased(lease)
        outcome = self.handle(lease)
        self.events.chunk_finished(lease, outcome)
        self._current = None
        if outcome == "refused":
            return None  # (it leases none of that sweep for a while: gate.Refusals)
        if lease.sweep_id in self.refusals.reasons:
            self.refusals.ran(lease.sweep_id)
        if not self._holds(lease):
            self.reporter.finished(lease)
        self.chunks_done += 1
        if o.max_chunks and self.chunks_done >= o.max_chunks:
            return "recycle"
        if o.max_memory_mb and rss_mb() > o.max_memory_mb:
            return "recycle"
        return None

    def _outage(self, exc: TtgError) -> str | None:
        """The broker or the store failed: never the chunks' fault. What this child was
        computing or committing goes back without counting an attempt (now, or once
        the broker answers again: until then the supervisor keeps extending it); then
        it waits, longer after each failed try, and goes on. Returns "stop" when told
        to stop meanwhile."""
        back = []
        if self._pending is not None:
            lease, sweep_id, commit = self._pending
            self._pending = None
            try:
                for rec in commit.result():
                    self.events.committed(sweep_id, rec)
                self._unacked.append(lease)
            except TtgError:
                back.append(lease)
        if self._current is not None:
            back.append(self._current)
            self.reporter.computed(self._current)  # not computing it any more: held, uncounted
            self._current = None
        self._backlog += [(lease, "release") for lease in back]
        waits = self.options.outage_waits
        wait = waits[min(self._outages, len(waits) - 1)]
        self._outages += 1
        log.log(logging.WARNING if self._outages == 1 else logging.DEBUG,
                "%s; %d chunk(s) go back uncounted; trying again in %g s", exc, len(back), wait)
        return "stop" if self._pause(wait) else None

    def _pause(self, seconds: float) -> bool:
        """Wait, hearing the supervisor; True when told to stop meanwhile."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.reporter.stop_requested():
                return True
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        return False

    def _retry_backlog(self) -> None:
        """Give back (or ack) what an outage left, oldest first; raises while the broker
        still cannot be reached."""
        while self._backlog:
            lease, action = self._backlog[0]
            if action == "ack":
                self.broker.ack(lease)
            else:
                self.broker.release(lease)
            self._backlog.pop(0)
            self.reporter.finished(lease)

    def _next_lease(self) -> Lease | None:
        """The next chunk. A computed chunk's ack waits until here, so that it goes
        in the same request as the next lease (``Broker.ack_and_lease``); its
        results are committed already, so a worker that dies in between only
        leaves a chunk that is redelivered and acked without computing."""
        o = self.options
        skip = self.refusals.skipped()
        if self._unacked:
            done = self._unacked.pop()
            self._flush_ack()  # (more than one only after a skipped chunk)
            try:
                lease = self.broker.ack_and_lease(done, o.worker_id, sweep_id=o.sweep_id, skip=skip)
            except BrokerError:
                self._backlog.append((done, "ack"))  # committed: acked once the broker answers again
                raise
            self.reporter.finished(done)
            if lease is not None:
                return lease
        return self.broker.lease(o.worker_id, timeout=o.poll_seconds, sweep_id=o.sweep_id, skip=skip)

    def _flush_ack(self) -> None:
        while self._unacked:
            done = self._unacked.pop()
            try:
                self.broker.ack(done)
                self.reporter.finished(done)
            except TtgError as exc:  # committed: acked once the broker answers again
                log.warning("could not ack %s %s: %s", done.sweep_id, done.chunk, exc)
                self._backlog.append((done, "ack"))

    def _holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still to be acked (committing, or committed and unacked)."""
        pending = self._pending is not None and self._pending[0].token == lease.token
        return pending or any(u.token == lease.token for u in self._unacked)

    def _settle(self) -> None:
        """Wait for the commit running in the background, if any (re-raising its
        error, the chunk still pending: ``_outage`` gives it back); its chunk is then
        acked with the next lease request. Called before any other use of the
        store, which is never used by two threads at once."""
        if self._pending is None:
            return
        lease, sweep_id, commit = self._pending
        done = commit.result()
        self._pending = None
        for rec in done:
            self._committed(sweep_id, rec)
        self._unacked.append(lease)

    def _drained(self) -> bool:
        """Nothing left for a burst worker: nothing queued or leased anywhere but in
        sweeps it leaves to other workers."""
        self._settle()
        only = self.options.sweep_id
        active = self.broker.stats(only).active
        left = [s for s in self.refusals.reasons if only in (None, s)]
        return active - sum(self.broker.stats(s).active for s in left) <= 0

    def handle(self, lease: Lease) -> str:
        """Handle one leased chunk: its results end committed (or it ends split,
        released or dead-lettered) before this returns. Returns how (events.OUTCOMES).

        A chunk no worker can run is dead-lettered; one that another worker may
        run goes back uncounted, and this child waits before it leases again
        (``refused``): gate.py says which is which."""
        try:
            task = self.gate.task(lease)
        except Unrunnable as no:
            return self._unrunnable(lease, no)
        self.reporter.leased(lease, task.timeout)
        self.limits.note(task)
        signed = self.codec.signed_failures(lease.sweep_id, lease.chunk, lease.last_failure)
        decision = decide(lease.chunk, lease.failures, task.max_attempts, lease.last_failure, signed)
        if isinstance(decision, SetAside):
            log.warning("setting %s %s aside: %s", lease.sweep_id, lease.chunk, decision.reason)
            self.broker.dead_letter(lease, decision.reason)
            return "isolated"
        if isinstance(decision, Split):
            self._requeue(task, lease, decision.pieces)
            self.broker.ack(lease)
            return "split"
        if isinstance(decision, Isolated):
            rec = failed_record(lease.chunk, decision.status, decision.reason, self.options.worker_id,
                                lease.attempt, task.rows, task.code)
            self._settle()
            if self.store.commit(task.sweep_id, rec):
                self._committed(task.sweep_id, rec)
            self.broker.dead_letter(lease, decision.reason)
            return "isolated"
        return self._compute(task, lease)

    def _compute(self, task: Task, lease: Lease) -> str:
        try:
            fn = self.gate.function(task)
            space = None if task.rows is not None else self.gate.space(task)
        except Unrunnable as no:
            return self._unrunnable(lease, no)
        if task.timeout is not None and not task.batched and aio.is_async(fn):
            # the child times each point itself: the watchdog only guards the event loop
            self.reporter.leased(lease, aio.watchdog_seconds(task.timeout), loop=True)
        outcome = "skipped"  # everything was committed already
        parts = self._to_compute(task, lease)
        for part in parts:
            started = time.perf_counter()
            rec = compute_part(fn, space, task, part, lease.attempt, self.options.worker_id, self.beacon)
            short = time.perf_counter() - started < LONG_SECONDS
            make_storable(rec)
            outcome = "computed"
            self._settle()  # the previous chunk's commit, which ran meanwhile
            if rec.stop < part.stop:  # chunk_size="auto": commit, then hand the rest back
                self._commit_now(task.sweep_id, rec)
                per_point = sum(rec.durations) / len(rec) / 1e9 / task.concurrency  # (wall time)
                rest = remainder_pieces(rec.stop, part.stop, per_point, task.auto or 1.0,
                                        least=2 * task.concurrency if task.concurrency > 1 else 1)
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

    def _unrunnable(self, lease: Lease, no: Unrunnable) -> str:
        """Dead-letter a chunk nobody can run; leave one that another worker may run
        to the others: back at once, uncounted (and its sweep skipped for a while)."""
        reason = str(no)
        if no.nobody:
            log.warning("rejecting %s %s: %s", lease.sweep_id, lease.chunk, reason)
            self.broker.dead_letter(lease, reason)
            return "rejected"
        new = self.refusals.left(lease, reason)
        self.broker.release(lease)
        if new:
            log.warning("leaving the chunks of %s to other workers: %s", lease.sweep_id, reason)
        log.debug("gave %s %s back", lease.sweep_id, lease.chunk)
        self.reporter.refused(lease, reason)
        return "refused"

    def _commit_now(self, sweep_id: str, rec: ChunkRecords) -> None:
        for piece in self._commit(sweep_id, rec):
            self._committed(sweep_id, piece)

    def _committed(self, sweep_id: str, rec: ChunkRecords) -> None:
        self.events.committed(sweep_id, rec)
        self.limits.committed(sweep_id, rec)

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
