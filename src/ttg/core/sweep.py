"""Sweeps (function + space + options) and the chunk tasks they are queued as."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from ..errors import ConfigError, SpecError
from ..spaces import Space, space_from_spec
from . import funcref
from .chunking import MAX_CHUNK_POINTS, MAX_CHUNKS, MAX_POINTS, TARGET_CHUNK_SECONDS, Chunk, auto_size
from .failures import Retries, check, parse_max_failures
from .fingerprint import Code

#: the most points of an async function a worker child may run at once (--concurrency)
MAX_CONCURRENCY = 10_000


@dataclass(frozen=True)
class Options:
    """How a sweep runs. None of these change its results, so none is in its id
    (except ``batched``, which changes how the function is called)."""

    #: Points per chunk; None means "auto" (see chunking.py).
    chunk_size: int | None = None
    #: Crashes or timeouts of one chunk before it is split to isolate the culprit.
    max_attempts: int = 3
    #: Seconds one call of the function may take (one point, or one chunk when batched).
    timeout: float | None = None
    #: Higher runs first when several sweeps share a broker.
    priority: int = 0
    #: Call the function once per chunk with all its points as columns.
    batched: bool = False
    #: Target duration of a chunk for chunk_size="auto".
    target_chunk_seconds: float = TARGET_CHUNK_SECONDS
    #: Tries of a point in place after an exception (core/failures.py): how many more,
    #: of which exception classes (none listed: any), after what first back-off.
    retries: int = 0
    retry_on: tuple[str, ...] = ()
    retry_backoff: float = 0.0
    #: Stop the sweep once this many points ("10") or this share of them ("5%") failed.
    max_failures: str | None = None
    #: Points of an async function one worker child runs at once (worker/aio.py).
    concurrency: int = 1

    def __post_init__(self) -> None:
        # a record read back from JSON holds a list; an API user may give any sequence
        object.__setattr__(self, "retry_on", tuple(self.retry_on))
        object.__setattr__(self, "max_failures", parse_max_failures(self.max_failures))
        check(self.retries, self.retry_on, self.retry_backoff)
        if self.chunk_size is not None and not 1 <= self.chunk_size <= MAX_CHUNK_POINTS:
            raise ConfigError(f"chunk size must be 'auto' or an integer from 1 to {MAX_CHUNK_POINTS:,} (a "
                              f"worker holds a chunk's results in memory), not {self.chunk_size}.")
        if not 1 <= self.max_attempts <= 1000:
            raise ConfigError(f"max attempts must be at least 1 (and at most 1000), not {self.max_attempts}.")
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout}; leave it "
                              "out for none.")
        if not 0 < self.target_chunk_seconds < math.inf:
            raise ConfigError(f"target chunk seconds must be a positive number, not "
                              f"{self.target_chunk_seconds}.")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or not (
                1 <= self.concurrency <= MAX_CONCURRENCY):
            raise ConfigError(f"concurrency must be an integer from 1 to {MAX_CONCURRENCY:,} (points of an "
                              f"async function a worker child runs at once), not {self.concurrency!r}.")
        if self.concurrency > 1 and self.batched:
            raise ConfigError("concurrency runs several calls of a function at once, and a batched function "
                              "is called once per chunk: drop --concurrency or --batched.")
        if not -(2**31) <= self.priority < 2**31:
            raise ConfigError(f"priority must be an integer from {-(2**31)} to {2**31 - 1}, not "
                              f"{self.priority}.")


@dataclass(frozen=True)
class Sweep:
    id: str
    function: str
    space: dict[str, Any]
    options: Options
    total: int
    fields: list[str]
    created: float = field(default_factory=time.time)
    #: the fingerprint of the code it runs (core/fingerprint.py); None: made by an older TTG
    code: Code | None = None
    #: the function shipped by value (client/ship.py): its pickle, base64; None: imported
    shipped: str | None = None

    @classmethod
    def create(cls, function: str, space: Space, options: Options, name: str | None = None,
               code: Code | None = None, shipped: str | None = None) -> Sweep:
        """A sweep whose id is ``name`` or is derived from its content: its function,
        space and code (an edited function is another sweep)."""
        ref = funcref.normalize(function)
        spec = space.spec()
        total = space.size
        if total == 0:
            raise SpecError("the space is empty (0 points); give it at least one point.")
        if total > MAX_POINTS:
            raise SpecError(f"the space has {total:,} points, more than TTG can index exactly "
                            f"({MAX_POINTS:,}); split it into several sweeps.")
        size = options.chunk_size or auto_size(total, batched=options.batched,
                                               concurrency=options.concurrency)
        chunks = -(-total // size)
        if chunks > MAX_CHUNKS:
            raise ConfigError(f"{total:,} points in chunks of {size:,} make {chunks:,} chunks, "
                              f"more than {MAX_CHUNKS:,} (each is a message and a row); use a larger "
                              "--chunk-size, or auto.")
        if name is not None and not _valid_name(name):
            raise ConfigError(f"sweep name {name!r} is not valid; use letters, digits, '-', '_' "
                              "and '.' (at most 100 characters).")
        sweep_id = name or derive_id(ref, spec, options.batched, code.digest if code else None)
        return cls(sweep_id, ref, spec, options, total, space.fields, code=code, shipped=shipped)

    @property
    def first_chunk_size(self) -> int:
        """The size the sweep is cut into when queued (``auto``: see chunking.auto_size)."""
        return self.options.chunk_size or auto_size(self.total, batched=self.options.batched,
                                                    concurrency=self.options.concurrency)

    def make_space(self) -> Space:
        return space_from_spec(self.space)

    @property
    def is_file(self) -> bool:
        return bool(self.space.get("kind") == "file")

    def same_work(self, other: Sweep, *, code: bool = True) -> bool:
        """True when both compute the same thing (so one may resume the other):
        the same function over the same space, with the same code (unless ``code``
        is False)."""
        mine, theirs = (self.code.digest if self.code else None), (other.code.digest if other.code else None)
        return (self.function, _identity(self.space), self.options.batched) == (
            other.function, _identity(other.space), other.options.batched) and (not code or mine == theirs)

    def to_record(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = asdict(self.options)
        d["code"] = self.code.to_dict() if self.code else None
        return d

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Sweep:
        code = Code.from_dict(d["code"]) if d.get("code") else None
        return cls(d["id"], d["function"], dict(d["space"]), Options(**d["options"]), d["total"],
                   list(d["fields"]), d["created"], code, d.get("shipped"))

    def task(self, chunk: Chunk, rows: list[Any] | None = None, *, first: bool = False) -> dict[str, Any]:
        """The message body of one chunk. Generated spaces ship only the range;
        file spaces ship their rows, so workers never need the file. ``first``: queued
        by the sweep's first submit, so no other copy of the chunk was ever queued
        and nothing of it can be committed before its first delivery."""
        o = self.options
        body: dict[str, Any] = {
            "sweep": self.id, "start": chunk.start, "stop": chunk.stop, "fn": self.function,
            "batched": o.batched, "timeout": o.timeout, "max_attempts": o.max_attempts,
            "auto": o.target_chunk_seconds if o.chunk_size is None else None,
        }
        if first:
            body["first"] = True
        if o.retries:
            body["retries"] = Retries(o.retries, o.retry_on, o.retry_backoff).to_message()
        if o.max_failures is not None:
            body["max_failures"] = o.max_failures
        if o.concurrency > 1:
            body["concurrency"] = o.concurrency
        if self.shipped is not None:  # the shipped function, named by digest (signed)
            body["shipped"] = self._shipped_digest
        if self.code is not None:  # which code may compute it (signed with the rest)
            body["code"] = self.code.digest
            if self.code.paths:
                body["code_paths"] = list(self.code.paths)
        if rows is not None:
            body["rows"] = rows
        elif self._spec_bytes <= INLINE_SPEC_BYTES:
            body["space"] = self.space
        else:  # a big spec (a long explicit axis) is read once per worker from the store
            body["space_ref"] = spec_digest(self.space)
        return body

    @cached_property
    def _shipped_digest(self) -> str:
        assert self.shipped is not None
        return shipped_digest(self.shipped)

    @cached_property
    def _spec_bytes(self) -> int:
        return len(json.dumps(self.space, separators=(",", ":")))


#: A space spec up to this size (as JSON) travels in every chunk message; a bigger
#: one (a grid with a long explicit axis) travels as its digest, and each worker
#: reads the spec from the store once and checks it against the digest.
INLINE_SPEC_BYTES = 4096


def spec_digest(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a space spec's canonical JSON: what a chunk message carries in
    place of a big spec (``space_ref``), signed with the message."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def shipped_digest(shipped: str) -> str:
    """SHA-256 of a shipped function's pickle (``Sweep.shipped`` is it in base64):
    what its chunk messages carry, signed, and what a worker checks before it loads it."""
    return hashlib.sha256(base64.b64decode(shipped)).hexdigest()


def derive_id(ref: str, spec: Mapping[str, Any], batched: bool, code: str | None = None) -> str:
    blob = json.dumps([ref, _identity(spec), batched, *([code] if code else [])], sort_keys=True,
                      separators=(",", ":"))
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    short = ref.rpartition(":")[2].rpartition(".")[2]
    return f"{short}-{digest}"


def _identity(spec: Mapping[str, Any]) -> Any:
    # a file space is its content, wherever the file lies
    if spec.get("kind") == "file":
        return {"kind": "file", "sha256": spec.get("sha256"), "format": spec.get("format")}
    if spec.get("kind") == "grid" and isinstance(spec.get("axes"), Mapping):
        # the order of the axes decides which point each index is, so it is part of the
        # identity (a dict compares, and json.dumps(sort_keys=True) writes, without order)
        return {"kind": "grid", "axes": [[k, v] for k, v in spec["axes"].items()]}
    return dict(spec)


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name)


def parse_chunk_size(value: int | str | None) -> int | None:
    """A chunk size as given (``"auto"``, an int, a numeric string): None for auto."""
    if value is None or value == "auto":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"chunk size must be a positive integer or 'auto', not {value!r}.") from None
    if n < 1:
        raise ConfigError(f"chunk size must be a positive integer or 'auto', not {value!r}.")
    return n
