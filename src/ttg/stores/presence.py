"""Worker presence: who is working, and what they hold.

Every worker supervisor (``ttg worker``, ``ttg run``) writes a ``WorkerBeat``
every ``presence_seconds`` (worker/beats.py), at start, and once more with
state "stopped" at a clean exit. A ``PresenceStore`` keeps the newest beat
per worker and drops beats older than ``PRUNE_SECONDS`` when it writes. Its
backends live in the result store's database (``open_presence``: the same
URL), because that is the one shared database every backend combination has
(RabbitMQ holds no key-value state) and what the dashboard and the exporter
already read; but it is a contract of its own, since a store knows results
and nothing about who computes them.

The beat's time is the worker's own wall clock (``time.time()``), so a
reader compares it with its own: clocks of different machines must agree to
within a few seconds (NTP) for the ages to be right.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any

#: Beats older than this are deleted when a store writes a beat (one day).
PRUNE_SECONDS = 86400.0
#: A worker is "alive" while its last beat is younger than this many of its intervals.
ALIVE_INTERVALS = 3.0
#: At most this many leases are listed in a beat (a worker with more children holds more).
MAX_LEASES = 32
#: Worker states, as the supervisor writes them.
STATES = ("running", "stopping", "stopped")
#: Derived statuses (``liveness``): alive, stale (no beat for a while), stopped.
STATUSES = ("alive", "stale", "stopped")


@dataclass(frozen=True)
class WorkerBeat:
    """What a worker supervisor says about itself at one heartbeat."""

    #: the supervisor's id, ``host-pid``: its children's ids (in committed records) are ``host-pid-childpid``
    worker: str
    host: str
    pid: int
    #: when the supervisor started (Unix time)
    started: float
    #: when it wrote this beat (Unix time, its own clock)
    beat: float
    #: seconds between its beats
    interval: float
    #: live child processes
    children: int = 0
    #: chunks its children have finished since it started
    chunks: int = 0
    #: ``(sweep, start, stop)`` of the chunks leased right now (at most MAX_LEASES)
    leases: tuple[tuple[str, int, int], ...] = ()
    #: "running", "stopping" or "stopped"
    state: str = "running"
    #: ``(sweep, reason)`` of the sweeps whose chunks it leaves to other workers lately
    #: (not allowed, cannot import the function, another secret...)
    refusing: tuple[tuple[str, str], ...] = ()
    #: ``(sweep, chunks)``: how many chunks of each sweep its children finished since it
    #: started (the MAX_LEASES sweeps worked on last)
    worked: tuple[tuple[str, int], ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {"worker": self.worker, "host": self.host, "pid": self.pid, "started": self.started,
                "beat": self.beat, "interval": self.interval, "children": self.children,
                "chunks": self.chunks, "leases": [list(x) for x in self.leases], "state": self.state,
                "refusing": [list(x) for x in self.refusing], "worked": [list(x) for x in self.worked]}

    def to_json(self) -> str:
        return json.dumps(self.to_record(), separators=(",", ":"))

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> WorkerBeat:
        return cls(str(r["worker"]), str(r["host"]), int(r["pid"]), float(r["started"]), float(r["beat"]),
                   float(r["interval"]), int(r.get("children", 0)), int(r.get("chunks", 0)),
                   tuple((str(s), int(a), int(b)) for s, a, b in r.get("leases", ())),
                   str(r.get("state", "running")), tuple((str(s), str(w)) for s, w in r.get("refusing", ())),
                   tuple((str(s), int(n)) for s, n in r.get("worked", ())))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerBeat:
        return cls.from_record(json.loads(text))

    def sweeps(self) -> set[str]:
        """The sweeps it holds leases on now."""
        return {s for s, _, _ in self.leases}

    def worked_on(self, sweep_id: str) -> int:
        """Chunks of this sweep its children finished."""
        return sum(n for s, n in self.worked if s == sweep_id)


def liveness(beat: WorkerBeat, now: float) -> str:
    """"stopped" when it said so; else "alive" while its last beat is younger than
    ALIVE_INTERVALS of its intervals, and "stale" after (killed, frozen, cut off)."""
    if beat.state == "stopped":
        return "stopped"
    return "alive" if now - beat.beat <= ALIVE_INTERVALS * beat.interval else "stale"


def supervisor_of(worker_id: str) -> str:
    """The supervisor id of a child's worker id (``host-pid-childpid`` -> ``host-pid``)."""
    head, sep, tail = worker_id.rpartition("-")
    return head if sep and head and tail.isdigit() else worker_id


class PresenceStore(ABC):
    """Where worker beats are kept."""

    @abstractmethod
    def beat(self, info: WorkerBeat) -> None:
        """Store ``info`` as its worker's newest beat, replacing the one before
        (idempotent), and delete beats older than PRUNE_SECONDS before
        ``info.beat``. One round trip; raises StoreError (StoreUnavailable when the
        server cannot be reached)."""

    @abstractmethod
    def workers(self) -> list[WorkerBeat]:
        """The newest beat of every worker kept, most recent beat first (ties by
        worker id)."""

    def close(self) -> None:  # noqa: B027 - not every backend holds connections
        """Release connections."""

    def __enter__(self) -> PresenceStore:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
