"""What to do with a leased chunk given its failure history: a pure decision.

A chunk whose process died (crash, timeout, lost worker) fewer than
``max_attempts`` times is run again. After that it is split (around the
culprit index when the supervisor saw it, in halves otherwise) and the pieces
start with a clean history; a single index that still fails is recorded as
``crashed`` or ``timeout`` with its last reason, so the sweep finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import Chunk, split


@dataclass(frozen=True)
class Failure:
    """Why an attempt at a chunk ended without a commit."""

    #: "crashed" (the process died), "timeout" (killed for running too long) or
    #: "lost" (the lease expired: the worker vanished or was cut off).
    kind: str
    reason: str
    #: The index being computed when it happened, when the supervisor knew it.
    index: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "reason": self.reason, "index": self.index}

    @classmethod
    def from_dict(cls, d: dict[str, object] | None) -> Failure | None:
        if not d:
            return None
        idx = d.get("index")
        return cls(str(d.get("kind", "crashed")), str(d.get("reason", "")),
                   idx if isinstance(idx, int) else None)


@dataclass(frozen=True)
class Run:
    """Compute the chunk."""


@dataclass(frozen=True)
class Split:
    """Replace the chunk by these pieces."""

    pieces: list[Chunk]


@dataclass(frozen=True)
class Isolated:
    """A single index that keeps failing: record it with this status and reason."""

    status: str
    reason: str


Decision = Run | Split | Isolated


def decide(chunk: Chunk, failures: int, max_attempts: int, last: Failure | None) -> Decision:
    if failures < max_attempts or last is None:
        return Run()
    if len(chunk) == 1:
        status = "timeout" if last.kind == "timeout" else "crashed"
        return Isolated(status, f"{last.reason} (after {failures} attempts)")
    return Split(split(chunk, last.index))
