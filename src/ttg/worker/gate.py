"""Whether this worker runs a leased chunk, and what with: the checks between a
lease and the function, written once for every broker.

A chunk passes when its message decodes and verifies, names a function on the
allow-list that imports (and is what the allow-list meant), and its space can
be built. When it does not, what happens to it depends on who could run it:

- **nobody** (``Unrunnable.nobody``): the message is malformed, replayed into
  another chunk, names a bad space, or carries a bad signature on a sweep
  whose messages this worker has verified before (so its secret is right):
  the chunk is dead-lettered, with the reason;
- **another worker may**: this one is not allowed to run the function, cannot
  import it, imports other code than the sweep's (its fingerprint differs),
  has another secret, or is on a store without the sweep's space: the chunk
  goes back uncounted for the others (child.py, ``refused``).

A function shipped by value (client/ship.py) is run only by a worker started
with ``--accept-shipped-code`` and a secret: its chunks name it by the SHA-256
of its pickle, signed; the pickle is read from the store and loaded only if it
is that very pickle (a store that holds another is dead-lettered: nobody runs
it). The allow-list does not apply to it: the flag is the permission.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from ..brokers.base import Lease
from ..core import fingerprint, funcref
from ..core.codec import Codec
from ..core.fingerprint import Code
from ..core.sweep import shipped_digest, spec_digest
from ..errors import (
    BadMessage,
    BadSignature,
    ConfigError,
    FunctionError,
    NotAllowed,
    OtherCode,
    SpecError,
    SpecNotInStore,
    TtgError,
)
from ..spaces import Space, space_from_spec
from ..stores.base import ResultStore
from .task import Task

#: after it gives back a chunk of a sweep, a child leases none of that sweep for this
#: long, twice as long after each such chunk, at most REFUSED_MAX_WAIT
REFUSED_WAIT = 0.5
REFUSED_MAX_WAIT = 30.0


class Unrunnable(Exception):
    """This worker does not run the chunk, for ``reason``; ``nobody``: no worker could."""

    def __init__(self, reason: TtgError, *, nobody: bool) -> None:
        super().__init__(str(reason))
        self.reason, self.nobody = reason, nobody


class Gate:
    """The checks of one child, with what they found out kept: functions imported,
    spaces built, sweeps whose signatures verified."""

    def __init__(self, codec: Codec, allow: funcref.AllowList, store: ResultStore,
                 before_store: Callable[[], None], *, accept_shipped: bool = False) -> None:
        self.codec, self.allow, self.store = codec, allow, store
        self.accept_shipped = accept_shipped
        #: called before the store is read (the child's commit thread must be done with it)
        self.before_store = before_store
        self._functions: dict[str, Callable[[Any], Any]] = {}
        self._codes: dict[tuple[str, tuple[str, ...]], Code] = {}
        self._spaces: dict[str, Space] = {}
        #: sweeps whose signed messages this worker has verified (its secret is theirs)
        self._verified: set[str] = set()

    def task(self, lease: Lease) -> Task:
        """The lease's message, decoded, verified and allowed; raises Unrunnable."""
        try:
            task = Task.parse(self.codec.decode(lease.body), lease)
        except BadSignature as exc:
            raise Unrunnable(exc, nobody=lease.sweep_id in self._verified) from exc
        except BadMessage as exc:
            raise Unrunnable(exc, nobody=True) from exc
        if self.codec.signing:
            self._verified.add(lease.sweep_id)
        if funcref.is_shipped(task.fn):
            if not (self.accept_shipped and self.codec.signing):
                raise Unrunnable(NotAllowed(
                    f"the chunks of {task.sweep_id} run a function shipped by value, and this worker "
                    "loads shipped code only when started with --accept-shipped-code and TTG_SECRET"),
                    nobody=False)
            return task
        try:
            self.allow.check(task.fn)
        except NotAllowed as exc:
            raise Unrunnable(exc, nobody=False) from exc
        return task

    def function(self, task: Task) -> Callable[[Any], Any]:
        """The task's function, imported once, if this worker's code is the sweep's;
        raises Unrunnable."""
        ref = task.fn
        if ref not in self._functions and task.shipped is not None:
            self._functions[ref] = self._load_shipped(task)
        if ref not in self._functions:
            try:
                fn = funcref.resolve(ref)
                self.allow.check_object(ref, fn)  # what the name turned out to be is allowed too
            except (FunctionError, NotAllowed) as exc:
                raise Unrunnable(exc, nobody=False) from exc
            self._functions[ref] = fn
        fn = self._functions[ref]
        if task.code is None:
            raise Unrunnable(OtherCode(f"the chunks of {task.sweep_id} carry no code fingerprint (queued by "
                                       "an older TTG); submit the sweep again with this TTG."), nobody=False)
        mine = self._code(ref, fn, task.code_paths)
        if mine.digest != task.code:
            raise Unrunnable(OtherCode(self._other_code(task, mine)), nobody=False)
        return fn

    def _load_shipped(self, task: Task) -> Callable[[Any], Any]:
        """The shipped function of ``task``, from the store, if its pickle is the one the
        signed message names; its fingerprint is the message's (signed too)."""
        import cloudpickle

        self.before_store()
        sweep = self.store.find(task.sweep_id)
        if sweep is None:
            raise Unrunnable(SpecNotInStore(f"the store does not hold sweep {task.sweep_id}, whose shipped "
                                            "function it keeps; start this worker with the sweep's --store."),
                             nobody=False)
        if sweep.shipped is None or shipped_digest(sweep.shipped) != task.shipped:
            raise Unrunnable(BadMessage(f"the store's shipped function of sweep {task.sweep_id} is not the "
                                        "one its signed chunks name (digest mismatch); it is not loaded"),
                             nobody=True)
        try:  # the pickle is the one the signed messages name (checked above)
            fn = cloudpickle.loads(base64.b64decode(sweep.shipped))  # opt-in: --accept-shipped-code
        except Exception as exc:  # what it references cannot be found here (a module missing)
            raise Unrunnable(FunctionError(f"the function shipped with {task.sweep_id} cannot be loaded here "
                                           f"({type(exc).__name__}: {exc}); install what it imports on "
                                           "this worker"), nobody=False) from exc
        funcref.register_local(task.fn, fn)
        fingerprint.remember(fn, Code(task.code or "", {"shipped": task.shipped or ""}))
        return fn  # type: ignore[no-any-return]

    def _code(self, ref: str, fn: Callable[..., Any], paths: tuple[str, ...]) -> Code:
        key = (ref, paths)
        if key not in self._codes:
            try:
                self._codes[key] = fingerprint.of_function(fn, paths)
            except ConfigError as exc:  # a --code path missing here
                raise Unrunnable(OtherCode(str(exc)), nobody=False) from exc
        return self._codes[key]

    def _other_code(self, task: Task, mine: Code) -> str:
        self.before_store()
        sweep = self.store.find(task.sweep_id)
        theirs = sweep.code if sweep is not None else None
        differs = ", ".join(mine.differing(theirs)) if theirs is not None else "unknown files"
        return (f"this worker has other code for {task.sweep_id} ({task.fn}): fingerprint {mine.short}, "
                f"the sweep's {task.code[:12] if task.code else '?'} ({differs} differ); start it from the "
                "sweep's code, or submit the sweep again from this code")

    def space(self, task: Task) -> Space:
        """The space of the task's sweep, built once; raises Unrunnable."""
        if task.sweep_id not in self._spaces:
            try:
                spec = task.space if task.space is not None else self._stored_spec(task)
                self._spaces[task.sweep_id] = space_from_spec(spec)
            except SpecNotInStore as exc:
                raise Unrunnable(exc, nobody=False) from exc
            except SpecError as exc:
                raise Unrunnable(exc, nobody=True) from exc
        return self._spaces[task.sweep_id]

    def _stored_spec(self, task: Task) -> dict[str, Any]:
        """A big spec, which the message names by digest: read from the store, and
        used only if it is the very spec the (signed) message names."""
        self.before_store()
        sweep = self.store.find(task.sweep_id)
        if sweep is None:
            raise SpecNotInStore(f"the store does not hold sweep {task.sweep_id}, whose chunks name their "
                                 "space by digest; start this worker with the sweep's --store.")
        if spec_digest(sweep.space) != task.space_ref:
            raise SpecNotInStore(f"the store's space of sweep {task.sweep_id} is not the one its chunks "
                                 "name (digest mismatch); check that workers use the sweep's --store.")
        return sweep.space


class Refusals:
    """The sweeps a child leaves to other workers. After it gives back a chunk of
    one, it leases none of that sweep for REFUSED_WAIT seconds, twice as long
    after each chunk of it given back, at most REFUSED_MAX_WAIT; meanwhile it goes
    on with other sweeps' chunks."""

    def __init__(self) -> None:
        #: sweep -> why this worker leaves its chunks to others (said once per reason)
        self.reasons: dict[str, str] = {}
        self._given: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def left(self, lease: Lease, reason: str) -> bool:
        """Note a chunk given back for ``reason``; True when the reason is new for its sweep."""
        s = lease.sweep_id
        n = self._given[s] = self._given.get(s, 0) + 1
        self._until[s] = time.monotonic() + min(REFUSED_WAIT * 2.0 ** (n - 1), REFUSED_MAX_WAIT)
        new = self.reasons.get(s) != reason
        self.reasons[s] = reason
        return new

    def ran(self, sweep_id: str) -> None:
        """A chunk of the sweep ran here after all (what stood in the way is gone)."""
        for d in (self.reasons, self._given, self._until):
            d.pop(sweep_id, None)

    def skipped(self) -> frozenset[str]:
        """The sweeps not to lease from now."""
        now = time.monotonic()
        return frozenset(s for s, until in self._until.items() if until > now)
