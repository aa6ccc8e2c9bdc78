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
    #: With signing: how many failed attempts the chunk has had that a supervisor
    #: saw and signed (this one included), and the signature over the chunk, this
    #: count and this failure (codec.Codec.sign_failure); None when unsigned.
    count: int | None = None
    mac: str | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"kind": self.kind, "reason": self.reason, "index": self.index}
        if self.mac is not None:
            d.update(count=self.count, mac=self.mac)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object] | None) -> Failure | None:
        if not d:
            return None
        idx, count, mac = d.get("index"), d.get("count"), d.get("mac")
        return cls(str(d.get("kind", "crashed")), str(d.get("reason", "")),
                   idx if isinstance(idx, int) else None, count if isinstance(count, int) else None,
                   mac if isinstance(mac, str) else None)


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


@dataclass(frozen=True)
class SetAside:
    """A single index whose failures nobody can vouch for (lost leases, or a history
    whose signature does not verify): dead-letter it, without a record, for
    ``ttg retry``."""

    reason: str


Decision = Run | Split | Isolated | SetAside

#: with signing, a single index whose history is not signed is set aside after this
#: many times ``max_attempts`` failed attempts (rather than retried for ever)
UNSIGNED_MARGIN = 3


def decide(chunk: Chunk, failures: int, max_attempts: int, last: Failure | None,
           signed: int | None = None) -> Decision:
    """``failures`` and ``last`` as the broker tells them. ``signed``: with signing,
    how many of them a supervisor signed (verified; 0 when none verifies), which
    alone may turn into a final record; None without signing (everything counts)."""
    if failures < max_attempts or last is None:
        return Run()
    if len(chunk) > 1:  # splitting only ever changes where chunks are cut
        return Split(split(chunk, last.index))
    if last.kind == "lost":
        # nobody saw the index fail: its worker vanished or was cut off (a killed
        # machine, a dropped connection), which no record may be made of
        if failures >= UNSIGNED_MARGIN * max_attempts:
            return SetAside(f"its worker vanished {failures} times while it ran ({last.reason}); set "
                            "aside without a record: `ttg retry` runs it again")
        return Run()
    if signed is None or signed >= max_attempts:
        status = "timeout" if last.kind == "timeout" else "crashed"
        return Isolated(status, f"{last.reason} (after {failures if signed is None else signed} attempts)")
    if failures >= UNSIGNED_MARGIN * max_attempts:
        return SetAside(f"failed {failures} times, {signed} of them signed by the worker that saw it "
                        f"({last.kind}: {last.reason}); set aside without a record: `ttg retry` runs it "
                        "again")
    return Run()
