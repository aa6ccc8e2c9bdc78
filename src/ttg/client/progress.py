"""A running sweep's progress, shown where its user looks: done/total, rate, ETA and
failures.

- on a terminal: a bar redrawn in place (rich), on stderr;
- in a Jupyter notebook: one output line updated in place (IPython's display
  handle: no widget library needed, and a saved notebook keeps the last state);
- anywhere else (a file, a pipe: nohup, CI, a batch job's log): a plain line
  every ``every`` seconds (TTG_PROGRESS_SECONDS, default 10; 0 for none) and
  the end state once, so a log shows a long sweep moving and how it ended;
- nowhere when there is no stream (stderr None or closed), or it breaks.

``ttg run``, ``ttg retry`` and ``ttg.run`` (``Results.wait``) use it; the
caller passes each new ``Progress`` to ``update``, as often as it likes.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from ..core.sweep import Sweep
from ..stores.base import Progress

#: How often a notebook's line is redrawn at most, in seconds (each is a message to the page).
JUPYTER_EVERY = 0.5


def describe(p: Progress, computed: int, seconds: float) -> str:
    """``1,234/10,000 (12.3 %), 456 points/s, ETA 19 s, 3 failed``: ``computed`` points
    of it in the last ``seconds``."""
    share = 100.0 * p.done / p.total if p.total else 100.0
    text = f"{p.done:,}/{p.total:,} ({share:.1f} %)"
    rate = computed / seconds if seconds > 0 else 0.0
    if computed > 0 and rate > 0:
        text += f", {rate:,.1f} points/s" if rate < 10 else f", {rate:,.0f} points/s"
        if not p.complete:
            text += f", ETA {_duration((p.total - p.done) / rate)}"
    if p.failed:
        text += f", {p.failed:,} failed"
    return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def mode_for(stream: TextIO | None, enabled: bool, every: float) -> str:
    """How progress is shown on ``stream``: "jupyter", "terminal", "lines" or "off"
    (also when there is no stream to write to: None, or closed)."""
    if not enabled:
        return "off"
    if in_jupyter():
        return "jupyter"
    try:
        if stream is None or stream.closed:
            return "off"
        if stream.isatty():
            return "terminal"
    except (AttributeError, ValueError, OSError):  # not a real stream, or closed under it
        return "off"
    return "lines" if every > 0 else "off"


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (IPython is imported only if it is)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)


class ProgressView:
    """Shows one sweep's progress (a context manager; ``update`` with each new one)."""

    def __init__(self, sweep: Sweep, already_done: int = 0, *, every: float = 10.0, enabled: bool = True,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``already_done``: points done before this run (not counted in the rate);
        ``every``: seconds between plain lines."""
        self.sweep = sweep
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode_for(self.stream, enabled, every)
        self.every = every
        self.clock = clock
        self._start = clock()
        self._base = already_done
        self._next = self._start + (every if self.mode == "lines" else 0.0)
        self._shown: Progress | None = None  # the latest state given
        self._printed: Progress | None = None  # the latest state shown (lines, notebook)
        self._bar: Any = None
        self._task: Any = None
        self._handle: Any = None

    def __enter__(self) -> ProgressView:
        if self.mode == "terminal":
            self._start_bar()
        return self

    def update(self, p: Progress) -> None:
        """Show ``p`` (as often as the mode wants). Showing never fails the run: a
        stream that breaks (closed, a pipe whose reader left) turns the display off."""
        self._shown = p
        if self.mode == "off":
            return
        try:
            if self.mode == "terminal":
                self._bar.update(self._task, completed=p.done, rate=self._rate(p),
                                 errors=f"{p.failed:,} failed" if p.failed else "")
                return
            now = self.clock()
            if now < self._next:
                return
            self._next = now + (self.every if self.mode == "lines" else JUPYTER_EVERY)
            self._show(p)
        except (OSError, ValueError):
            self.mode = "off"

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._bar is not None:
                self._bar.stop()
            elif self.mode != "off" and self._shown is not None and self._shown != self._printed:
                self._show(self._shown)  # the end state, whatever the interval
        except (OSError, ValueError):
            self.mode = "off"

    def _show(self, p: Progress) -> None:
        self._printed = p
        text = f"{self.sweep.id}: {describe(p, p.done - self._base, self.clock() - self._start)}"
        if self.mode == "lines":
            assert self.stream is not None
            self.stream.write(f"ttg: {text}\n")
            self.stream.flush()
            return
        from IPython.display import display

        share = min(p.done, p.total)
        shown = {"text/plain": text,
                 "text/html": f'<progress value="{share}" max="{max(p.total, 1)}" style="width: 20em">'
                              f"</progress> <code>{html.escape(text)}</code>"}
        if self._handle is None:
            self._handle = display(shown, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(shown, raw=True)

    def _rate(self, p: Progress) -> str:
        seconds = self.clock() - self._start
        if seconds <= 0:
            return ""
        rate = (p.done - self._base) / seconds
        return f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"

    def _start_bar(self) -> None:
        from rich import progress as rp
        from rich.console import Console

        self._bar = rp.Progress(
            rp.TextColumn("[bold]{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[rate]}"), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
            rp.TimeElapsedColumn(), rp.TextColumn("[red]{task.fields[errors]}"),
            console=Console(file=self.stream), refresh_per_second=5)
        self._bar.start()
        self._task = self._bar.add_task(self.sweep.id, total=self.sweep.total, completed=self._base,
                                        rate="", errors="")
