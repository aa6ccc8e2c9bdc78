"""A sweep as the Python API hands it out: its stored results (read as Arrow,
pandas, a file, its errors) and, for a sweep started from here, a handle on
its run: ``wait`` (showing its progress, client/progress.py), ``done``,
``cancel``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..brokers import open_broker
from ..core.sweep import Sweep
from ..errors import TtgError
from ..extras import need
from ..settings import Settings
from ..stores import Progress, open_store
from ..stores.base import ResultStore
from . import submit as client
from .background import LocalWorkers
from .progress import ProgressView

if TYPE_CHECKING:  # pyarrow loads in ~0.1 s; only reading results needs it
    import pyarrow as pa

    from .table import ErrorRow

#: How often ``Results.wait`` reads the sweep's progress while it shows it, in seconds.
POLL_SECONDS = 0.25


class Results:
    """A sweep: its stored results (reading them streams from the store) and, for one
    started from here, a handle on it: ``wait``, ``done``, ``cancel``.

    ``outcome``: how its run ended ("complete", "cancelled", "stopped" by its failure
    limit, "stuck" with dead-lettered chunks, "interrupted"), None while it runs or
    when it was not run from here."""

    def __init__(self, settings: Settings, sweep: Sweep, outcome: str | None = None,
                 workers: LocalWorkers | None = None, *, show_progress: bool = True) -> None:
        self.settings = settings
        self.sweep = sweep
        self.outcome = outcome
        self._workers = workers
        self._show_progress = show_progress

    @property
    def name(self) -> str:
        return self.sweep.id

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> Results:
        """Wait until the sweep's run ends and return this handle (``outcome`` set):
        until its local workers stop (``ttg.start``), else until every index has a
        record or the sweep is cancelled. TimeoutError after ``timeout`` seconds (the
        sweep goes on). Interrupted (Ctrl-C, a notebook's stop button), it stops the
        local workers as the CLI does (running chunks finish within the grace period,
        the others go back uncounted) and raises KeyboardInterrupt.

        ``progress`` (default: as given to ``start``/``run``/``submit``) shows done/total,
        rate, ETA and failures while it waits: a bar on a terminal, a line updated in
        place in a notebook, else a line every TTG_PROGRESS_SECONDS on stderr."""
        show = self._show_progress if progress is None else progress
        end = None if timeout is None else time.monotonic() + timeout
        if self._workers is None:
            with open_store(self.settings) as st:
                begun = st.progress(self.sweep.id)
                with ProgressView(self.sweep, begun.done, enabled=show,
                                  every=self.settings.progress_seconds) as view:
                    self.outcome = self._poll_store(st, end, timeout, view.update)
            return self
        watch = _Watch(self.settings, self.sweep.id) if show else None
        try:
            first = watch.read() if watch is not None else None
            with ProgressView(self.sweep, first.done if first else 0, enabled=show,
                              every=self.settings.progress_seconds) as view:
                self.outcome = self._await_workers(self._workers, end, timeout, view, watch)
        except KeyboardInterrupt:
            self._workers.interrupt()
            self._workers.proc.wait()
            self.outcome = "interrupted"
            raise
        finally:
            if watch is not None:
                watch.close()
        return self

    def _await_workers(self, workers: LocalWorkers, end: float | None, timeout: float | None,
                       view: ProgressView, watch: _Watch | None) -> str:
        """The outcome once the workers' process exits, showing progress meanwhile."""
        while True:
            step = None if end is None else max(0.0, end - time.monotonic())
            if watch is not None and view.mode != "off":  # wake to show progress
                step = POLL_SECONDS if step is None else min(step, POLL_SECONDS)
            try:
                outcome = workers.wait(step)
            except subprocess.TimeoutExpired:
                if end is not None and time.monotonic() >= end:
                    raise TimeoutError(f"sweep {self.name} is still running after {timeout:g} s; wait() "
                                       "again, or cancel() it") from None
                outcome = None
            p = watch.read() if watch is not None else None
            if p is not None:
                view.update(p)
            if outcome is not None:
                return outcome

    def done(self) -> bool:
        """Whether its run has ended (every index has a record, without local workers)."""
        if self._workers is not None:
            return not self._workers.running()
        return self.progress().complete

    def cancel(self) -> int:
        """Cancel the sweep as ``ttg cancel`` does (its queued chunks dropped, results
        kept; running it again resumes it); its local workers stop. Returns how many
        chunks were dropped."""
        with open_broker(self.settings) as b, open_store(self.settings) as st:
            dropped = client.cancel(self.sweep.id, b, st)
        if self._workers is not None:
            self.wait(progress=False)
        return dropped

    def _poll_store(self, st: ResultStore, end: float | None, timeout: float | None,
                    show: Callable[[Progress], None]) -> str:
        while True:
            p = st.progress(self.sweep.id)
            show(p)
            if p.complete:
                return "complete"
            if st.state(self.sweep.id) == "cancelled":
                return "cancelled"
            if end is not None and time.monotonic() >= end:
                raise TimeoutError(f"sweep {self.name} is not complete after {timeout:g} s")
            time.sleep(0.1)

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


class _Watch:
    """The sweep's progress for a display, read from a store opened on first use; an
    outage of the store only pauses the display (the workers ride it out)."""

    def __init__(self, settings: Settings, sweep_id: str) -> None:
        self.settings, self.sweep_id = settings, sweep_id
        self._store: ResultStore | None = None

    def read(self) -> Progress | None:
        try:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store.progress(self.sweep_id)
        except TtgError:
            return None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
