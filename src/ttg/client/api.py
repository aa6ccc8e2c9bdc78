"""The Python API: the same sweeps as the CLI, from code.

    import ttg
    res = ttg.run("mymod:f", ttg.Grid(a=[1, 2, 3], b=ttg.linspace(0, 1, 11)), workers=4)
    df = res.to_pandas()
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec

from .. import settings as settings_mod
from ..brokers import open_broker
from ..core import fingerprint, funcref
from ..core.codec import Codec
from ..core.fingerprint import paths_from_env
from ..core.sweep import Options, Sweep, parse_chunk_size
from ..errors import ConfigError, FunctionError
from ..settings import Settings
from ..spaces import GridSpace, RandomSpace, RangeSpace, Space, load_spec_file, space_from_spec
from ..spaces.files import FileSpace
from ..stores import open_store
from . import submit as client
from .background import ByValue, LocalWorkers
from .guard import unguarded_sweep_call
from .results import Results
from .ship import dumps, shipped_sweep

SpaceLike = Space | Mapping[str, Any] | int | str | Path
FunctionLike = Callable[..., Any] | str

P = ParamSpec("P")



# -- spaces as Python objects --------------------------------------------------------


def Range(stop: int, start: int = 0, step: int = 1, name: str = "x") -> RangeSpace:
    return RangeSpace(stop, start, step, name)


def Grid(**axes: Any) -> GridSpace:
    """A grid over named axes; the last axis varies fastest."""
    return GridSpace(axes)


def Random(n: int, seed: int = 0, **params: Any) -> RandomSpace:
    """``n`` random points; each keyword names a distribution, e.g. ``x=uniform(0, 1)``."""
    return RandomSpace(n, seed, params)


def Rows(path: str | Path, format: str | None = None) -> FileSpace:
    """The rows of a CSV, JSONL or Parquet file."""
    return FileSpace(path, format)


def linspace(start: float, stop: float, num: int) -> dict[str, list[float]]:
    return {"linspace": [start, stop, num]}


def logspace(start: float, stop: float, num: int) -> dict[str, list[float]]:
    return {"logspace": [start, stop, num]}


def arange(start: int, stop: int, step: int = 1) -> dict[str, list[int]]:
    return {"range": [start, stop, step]}


def uniform(low: float, high: float) -> dict[str, list[float]]:
    return {"uniform": [low, high]}


def loguniform(low: float, high: float) -> dict[str, list[float]]:
    return {"loguniform": [low, high]}


def normal(mean: float, std: float) -> dict[str, list[float]]:
    return {"normal": [mean, std]}


def integers(low: int, high: int) -> dict[str, list[int]]:
    return {"integers": [low, high]}


def choice(*values: Any) -> dict[str, list[Any]]:
    return {"choice": list(values)}


def as_space(space: SpaceLike) -> Space:
    """A Space from a Space, a spec dict, a point count, or a spec/rows file path."""
    if isinstance(space, Space):
        return space
    if isinstance(space, bool):
        raise ConfigError("a space cannot be a bool; pass a count, a spec or a Space.")
    if isinstance(space, int):
        return RangeSpace(space)
    if isinstance(space, str | Path):
        return space_from_spec(load_spec_file(space))
    return space_from_spec(space)


# -- sweeps -------------------------------------------------------------------------------


def _settings(settings: Settings | None, **flags: Any) -> Settings:
    base = settings or settings_mod.load()
    return base.with_overrides(**flags)


def start(fn: FunctionLike, space: SpaceLike, *, workers: int | None = None,
          chunk_size: int | str = "auto", max_attempts: int = 3, timeout: float | None = None,
          batched: bool = False, priority: int = 0, target_chunk_seconds: float = 1.0,
          name: str | None = None, code: Sequence[str] = (), reuse: bool = False,
          retries: int = 0, retry_on: Sequence[str | type[BaseException]] = (), retry_backoff: float = 0.0,
          max_failures: int | str | None = None, concurrency: int = 1, progress: bool = True,
          home: str | Path | None = None, broker: str | None = None,
          store: str | None = None, settings: Settings | None = None) -> Results:
    """Submit a sweep (resuming it if it exists), start local workers for it in a
    process of their own, and return at once with its handle (``.wait()``,
    ``.done()``, ``.cancel()``, ``.progress()``, the results).

    ``fn``: a function, ``"pkg.mod:fn"``, or any callable (a lambda, a closure, a
    ``functools.partial``, a bound method, a callable object, a function defined
    in a notebook): what workers cannot import is given to the local workers by
    value, never sent over a network. ``code``: files or directories whose content
    counts besides the function's module (and ``TTG_CODE``); ``reuse``: copy what
    this code already computed in other sweeps; ``retries``, ``retry_on``
    (exception classes or their names), ``retry_backoff``: try a point again in
    place; ``max_failures``: stop the sweep once that many points (``"5%"``: that
    share of them) failed; ``concurrency``: points of an ``async def`` function a
    worker process runs at once; ``progress``: whether ``wait`` shows the sweep's
    progress (``progress=False``: silent)."""
    s = _settings(settings, workers=workers, home=Path(home) if home else None, broker=broker, store=store)
    options = _options(chunk_size, max_attempts, timeout, batched, priority, target_chunk_seconds, retries,
                       retry_on, retry_backoff, max_failures, concurrency)
    local = LocalWorkers.spawn()  # it starts up while the sweep is submitted
    try:
        sweep, space_, by_value = _prepare(fn, space, options, name, code, local=True)
        with open_broker(s) as b, open_store(s) as st:
            client.submit(sweep, space_, b, st, Codec(s.secret), reuse=reuse)
            done = st.progress(sweep.id).complete
    except BaseException:
        local.abandon()
        raise
    if done:  # nothing to compute
        local.abandon()
        return Results(s, sweep, "complete", show_progress=progress)
    local.begin(s, sweep, by_value)
    return Results(s, sweep, workers=local, show_progress=progress)


def _waited(begin: Callable[P, Results]) -> Callable[P, Results]:
    """``begin(...).wait()``, with ``begin``'s signature (for help() and type checkers)."""

    @functools.wraps(begin)
    def run(*args: P.args, **kwargs: P.kwargs) -> Results:
        return begin(*args, **kwargs).wait()

    run.__doc__ = """``start(...).wait()``: run the sweep on local workers until it ends, and
    return its results (``outcome`` says how it ended). The options are ``start``'s."""
    run.__name__ = run.__qualname__ = "run"
    return run


run = _waited(start)


def submit(fn: FunctionLike, space: SpaceLike, *, chunk_size: int | str = "auto", max_attempts: int = 3,
           timeout: float | None = None, batched: bool = False, priority: int = 0,
           target_chunk_seconds: float = 1.0, name: str | None = None, code: Sequence[str] = (),
           reuse: bool = False, retries: int = 0, retry_on: Sequence[str | type[BaseException]] = (),
           retry_backoff: float = 0.0, max_failures: int | str | None = None, concurrency: int = 1,
           progress: bool = True, ship: bool = False, home: str | Path | None = None,
           broker: str | None = None, store: str | None = None, settings: Settings | None = None) -> Results:
    """Queue a sweep for workers started elsewhere (``ttg worker``), which import its
    function themselves; the options as for ``start``. ``.wait()`` on the result
    waits until every index has a record (or the sweep is cancelled).

    ``ship=True`` sends the function by value instead (any callable, its module
    too), signed with TTG_SECRET, to workers started with --accept-shipped-code;
    anyone with the secret can run code on those (client/ship.py)."""
    s = _settings(settings, home=Path(home) if home else None, broker=broker, store=store)
    options = _options(chunk_size, max_attempts, timeout, batched, priority, target_chunk_seconds, retries,
                       retry_on, retry_backoff, max_failures, concurrency)
    if ship:
        space_ = as_space(space)
        obj = fn if not isinstance(fn, str) else client.check_function(funcref.normalize(fn))
        sweep = shipped_sweep(obj, space_, options, name, [*code, *paths_from_env()], s)
    else:
        sweep, space_, _ = _prepare(fn, space, options, name, code, local=False)
    with open_broker(s) as b, open_store(s) as st:
        client.submit(sweep, space_, b, st, Codec(s.secret), reuse=reuse)
    return Results(s, sweep, show_progress=progress)


def _options(chunk_size: int | str, max_attempts: int, timeout: float | None, batched: bool, priority: int,
             target_chunk_seconds: float, retries: int, retry_on: Sequence[str | type[BaseException]],
             retry_backoff: float, max_failures: int | str | None, concurrency: int) -> Options:
    return Options(parse_chunk_size(chunk_size), max_attempts, timeout, priority, batched,
                   target_chunk_seconds, retries, _names(retry_on), retry_backoff,
                   None if max_failures is None else str(max_failures), concurrency)


def _names(classes: Sequence[str | type[BaseException]]) -> tuple[str, ...]:
    """Exception classes as --retry-on names them (a class: its qualified name)."""
    if isinstance(classes, str | type):
        classes = [classes]
    return tuple(c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}" for c in classes)


def _prepare(fn: FunctionLike, space: SpaceLike, options: Options, name: str | None, code: Sequence[str], *,
             local: bool) -> tuple[Sweep, Space, dict[str, ByValue]]:
    """Make the sweep, its function imported and fingerprinted now, before anything is
    stored. A function that workers cannot import is given by value to ``local``
    workers (returned with its fingerprint, to be handed to them)."""
    started_at_import = funcref.importing()
    if started_at_import is not None:
        raise FunctionError(f"{started_at_import} starts a sweep when it is imported, and workers import it "
                            "to find the function: put the call under `if __name__ == \"__main__\":`.")
    sp = as_space(space)
    paths = [*code, *paths_from_env()]
    by_value: dict[str, ByValue] = {}
    ref = fn if isinstance(fn, str) else funcref.importable_ref(fn)
    if ref is None:
        assert not isinstance(fn, str)
        if not local:
            raise FunctionError(f"{fn!r} cannot be imported by workers started elsewhere (a lambda, a "
                                "closure, a partial, a method, a callable object or a function of a notebook "
                                "runs only on the local workers of ttg.run or ttg.start); define it at the "
                                "top level of a module, or run it with ttg.run.")
        blob = dumps(fn, "given to the local workers", "define it in a module that workers import, or make "
                     "what it uses picklable")  # (first: the fingerprint pickles it too)
        by_value_code = fingerprint.of_value(fn, paths)
        ref = funcref.by_value_ref(fn, by_value_code.digest)
        funcref.register_local(ref, fn)
        fingerprint.remember(fn, by_value_code)
        by_value[ref] = (blob, by_value_code.to_dict())
    else:
        _check_guarded(ref)
    return client.prepare(ref, sp, options, name, paths), sp, by_value


def _check_guarded(ref: str) -> None:
    """A script whose function workers import must not start a sweep as it is imported:
    each worker would start it again. Its top-level statements are read (not run)."""
    module, _ = funcref.split_ref(ref)
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not funcref.is_file_module(module) or main is None or Path(main).resolve() != Path(module):
        return
    if unguarded_sweep_call(Path(module).read_text(errors="replace")):
        raise FunctionError(f"{module} starts a sweep at its top level, and workers import it to find the "
                            "function: put the call under `if __name__ == \"__main__\":`.")


def results(name: str, *, home: str | Path | None = None, store: str | None = None,
            settings: Settings | None = None) -> Results:
    """The results of an existing sweep."""
    s = _settings(settings, home=Path(home) if home else None, store=store)
    with open_store(s) as st:
        return Results(s, st.sweep(name))
