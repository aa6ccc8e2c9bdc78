"""The progress display's plain lines, with a clock the test steps: when a line is
written, what it says, and that the end state is written once."""

from __future__ import annotations

import io
import sys

import pytest

from ttg.client.progress import ProgressView, describe, mode_for
from ttg.core.sweep import Options, Sweep
from ttg.spaces import RangeSpace
from ttg.stores.base import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def sweep(total: int) -> Sweep:
    return Sweep.create("m:f", RangeSpace(total), Options(chunk_size=10), name="s")


def test_plain_lines_every_interval_and_the_end_once() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressView(sweep(1000), already_done=100, every=10.0, stream=out, clock=clock) as view:
        assert view.mode == "lines"
        view.update(Progress(1000, ok=100))
        clock.now += 9.9
        view.update(Progress(1000, ok=300))  # not yet 10 s
        clock.now += 0.1
        view.update(Progress(1000, ok=400, error=2))
        clock.now += 5.0
        view.update(Progress(1000, ok=598, error=2))
        clock.now += 10.0
        view.update(Progress(1000, ok=997, error=3))
    assert out.getvalue().splitlines() == [
        "ttg: s: 402/1,000 (40.2 %), 30 points/s, ETA 20 s, 2 failed",
        "ttg: s: 1,000/1,000 (100.0 %), 36 points/s, 3 failed",
    ]


def test_a_run_shorter_than_the_interval_logs_its_end_state() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressView(sweep(10), every=10.0, stream=out, clock=clock) as view:
        view.update(Progress(10, ok=4))
        clock.now += 2.0
        view.update(Progress(10, ok=10))
    assert out.getvalue() == "ttg: s: 10/10 (100.0 %), 5.0 points/s\n"


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stream", [None, "closed", "broken"])
def test_a_missing_or_broken_stream_turns_the_display_off(stream: str | None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, or a daemon that closed its streams
    out: io.StringIO | None = None if stream is None else Broken() if stream == "broken" else io.StringIO()
    if stream == "closed":
        assert out is not None
        out.close()
    clock = Clock()
    view = ProgressView(sweep(10), every=1.0, stream=out, clock=clock)
    with view:
        clock.now += 5.0
        view.update(Progress(10, ok=5))  # no exception, whatever the stream
        clock.now += 5.0
        view.update(Progress(10, ok=10))
    assert view.mode == "off"


@pytest.mark.parametrize(("enabled", "every", "tty", "mode"), [
    (True, 10.0, False, "lines"), (True, 0.0, False, "off"), (False, 10.0, False, "off"),
    (True, 10.0, True, "terminal"), (False, 10.0, True, "off"),
])
def test_the_mode_follows_the_output(enabled: bool, every: float, tty: bool, mode: str) -> None:
    assert mode_for(Tty() if tty else io.StringIO(), enabled, every) == mode


@pytest.mark.parametrize(("p", "computed", "seconds", "text"), [
    (Progress(0), 0, 0.0, "0/0 (100.0 %)"),
    (Progress(10), 0, 5.0, "0/10 (0.0 %)"),
    (Progress(7200, ok=3600), 3600, 3600.0, "3,600/7,200 (50.0 %), 1.0 points/s, ETA 1 h 00 min"),
    (Progress(200, ok=50, timeout=1, crashed=1), 52, 2.0, "52/200 (26.0 %), 26 points/s, ETA 6 s, 2 failed"),
    (Progress(10_000, ok=1000), 1000, 10.0, "1,000/10,000 (10.0 %), 100 points/s, ETA 1 min 30 s"),
])
def test_describe(p: Progress, computed: int, seconds: float, text: str) -> None:
    assert describe(p, computed, seconds) == text
