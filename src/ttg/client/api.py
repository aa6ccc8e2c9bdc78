"""The Python API: the same sweeps as the CLI, from code.

    import ttg
    res = ttg.run("mymod:f", ttg.Grid(a=[1, 2, 3], b=ttg.linspace(0, 1, 11)), workers=4)
    df = res.to_pandas()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings as settings_mod
from ..brokers import Broker, open_broker
from ..core import funcref
from ..core.codec import Codec
from ..core.fingerprint import paths_from_env
from ..core.sweep import Options, Sweep, parse_chunk_size
from ..errors import ConfigError
from ..extras import need
from ..settings import Settings
from ..spaces import GridSpace, RandomSpace, RangeSpace, Space, load_spec_file, space_from_spec
from ..spaces.files import FileSpace
from ..stores import Progress, ResultStore, open_store
from . import submit as client
from .local import run_local

if TYPE_CHECKING:  # pyarrow loads in ~0.1 s; only reading results needs it
    import pyarrow as pa

    from .table import ErrorRow

SpaceLike = Space | Mapping[str, Any] | int | str | Path
FunctionLike = Callable[..., Any] | str


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


# -- results ----------------------------------------------------------------------------


class Results:
    """A sweep's stored results. Reading them streams from the store."""

    def __init__(self, settings: Settings, sweep: Sweep, outcome: str | None = None) -> None:
        self.settings = settings
        self.sweep = sweep
        self.outcome = outcome

    @property
    def name(self) -> str:
        return self.sweep.id

    def progress(self) -> Progress:
        with open_store(self.settings) as store:
            return store.progress(self.sweep.id)

    def to_arrow(self) -> pa.Table:
        from .table import Table

        with open_store(self.settings) as store:
            return Table(store, self.sweep).to_arrow()

    def to_pandas(self) -> Any:
        need("pandas", "pandas", "Results.to_pandas()")
        from .table import Table

        with open_store(self.settings) as store:
            return Table(store, self.sweep).to_pandas()

    def write(self, path: str | Path) -> int:
        from .table import Table

        with open_store(self.settings) as store:
            return Table(store, self.sweep).write(path)

    def errors(self) -> Iterator[ErrorRow]:
        from .table import Table

        with open_store(self.settings) as store:
            yield from Table(store, self.sweep).errors()

    def __repr__(self) -> str:
        p = self.progress()
        return f"<Results {self.name}: {p.done}/{p.total} done, {p.failed} failed>"


# -- sweeps -------------------------------------------------------------------------------


def _settings(settings: Settings | None, **flags: Any) -> Settings:
    base = settings or settings_mod.load()
    return base.with_overrides(**flags)


def run(fn: FunctionLike, space: SpaceLike, *, workers: int | None = None,
        chunk_size: int | str = "auto", max_attempts: int = 3, timeout: float | None = None,
        batched: bool = False, priority: int = 0, target_chunk_seconds: float = 1.0,
        name: str | None = None, code: Sequence[str] = (), reuse: bool = False,
        retries: int = 0, retry_on: Sequence[str | type[BaseException]] = (), retry_backoff: float = 0.0,
        max_failures: int | str | None = None,
        home: str | Path | None = None, broker: str | None = None,
        store: str | None = None, settings: Settings | None = None) -> Results:
    """Submit a sweep (resuming it if it exists), run local workers until it is done,
    and return its results. ``fn`` is a function object or ``"pkg.mod:fn"``; ``code``:
    files or directories whose content counts besides the function's module (and
    ``TTG_CODE``); ``reuse``: copy what this code already computed in other sweeps;
    ``retries``, ``retry_on`` (exception classes or their names), ``retry_backoff``:
    try a point again in place; ``max_failures``: stop the sweep once that many
    points (``"5%"``: that share of them) failed."""
    s = _settings(settings, workers=workers, home=Path(home) if home else None, broker=broker, store=store)
    options = Options(parse_chunk_size(chunk_size), max_attempts, timeout, priority, batched,
                      target_chunk_seconds, retries, _names(retry_on), retry_backoff,
                      None if max_failures is None else str(max_failures))
    with open_broker(s) as b, open_store(s) as st:
        sweep = _queue(s, fn, space, options, name, b, st, code, reuse)
        watcher = run_local(s, sweep, b, st)
    return Results(s, sweep, watcher.outcome)


def submit(fn: FunctionLike, space: SpaceLike, *, chunk_size: int | str = "auto", max_attempts: int = 3,
           timeout: float | None = None, batched: bool = False, priority: int = 0,
           target_chunk_seconds: float = 1.0, name: str | None = None, code: Sequence[str] = (),
           reuse: bool = False, retries: int = 0, retry_on: Sequence[str | type[BaseException]] = (),
           retry_backoff: float = 0.0, max_failures: int | str | None = None,
           home: str | Path | None = None, broker: str | None = None,
           store: str | None = None, settings: Settings | None = None) -> Results:
    """Queue a sweep for workers started elsewhere (``ttg worker``); the options as
    for ``run``."""
    s = _settings(settings, home=Path(home) if home else None, broker=broker, store=store)
    options = Options(parse_chunk_size(chunk_size), max_attempts, timeout, priority, batched,
                      target_chunk_seconds, retries, _names(retry_on), retry_backoff,
                      None if max_failures is None else str(max_failures))
    with open_broker(s) as b, open_store(s) as st:
        sweep = _queue(s, fn, space, options, name, b, st, code, reuse)
    return Results(s, sweep)


def _names(classes: Sequence[str | type[BaseException]]) -> tuple[str, ...]:
    """Exception classes as --retry-on names them (a class: its qualified name)."""
    if isinstance(classes, str | type):
        classes = [classes]
    return tuple(c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}" for c in classes)


def _queue(s: Settings, fn: FunctionLike, space: SpaceLike, options: Options, name: str | None,
           broker: Broker, store: ResultStore, code: Sequence[str], reuse: bool) -> Sweep:
    """Make the sweep (its function imported and fingerprinted now) and queue what is
    not committed yet."""
    sp = as_space(space)
    ref = fn if isinstance(fn, str) else funcref.ref_of(fn)
    sweep = client.prepare(ref, sp, options, name, [*code, *paths_from_env()])
    client.submit(sweep, sp, broker, store, Codec(s.secret), reuse=reuse)
    return sweep


def results(name: str, *, home: str | Path | None = None, store: str | None = None,
            settings: Settings | None = None) -> Results:
    """The results of an existing sweep."""
    s = _settings(settings, home=Path(home) if home else None, store=store)
    with open_store(s) as st:
        return Results(s, st.sweep(name))
