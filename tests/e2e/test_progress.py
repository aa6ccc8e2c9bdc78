"""Live progress where the user looks: plain lines in a log (``ttg run`` and
``ttg.run``), a bar redrawn in place on a terminal, silence when asked; and
``ttg run --fail-on-error``. (The notebook's line updated in place is checked
by test_notebook.py, in a real kernel.)"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT, cli_env, ttg
from tests.processes import executions

#: a plain progress line: ``ttg: NAME: done/total (share %)[, rate][, ETA][, failed]``
LINE = re.compile(r"^ttg: (?P<name>\S+): (?P<done>[\d,]+)/(?P<total>[\d,]+) \((?P<share>\d+\.\d) %\)"
                  r"(, [\d,.]+ points/s)?(, ETA [^,]+)?(, (?P<failed>[\d,]+) failed)?$")


def progress_lines(stderr: str) -> list[re.Match[str]]:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("ttg: ")]
    matches = [LINE.match(ln) for ln in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


def check_lines(found: list[re.Match[str]], total: int, failed: int = 0) -> None:
    """At least two lines, never going back, the last one the end state."""
    assert len(found) >= 2, [m.group(0) for m in found]
    done = [int(m["done"].replace(",", "")) for m in found]
    assert done == sorted(done) and all(int(m["total"]) == total for m in found)
    assert done[-1] == total and found[-1]["share"] == "100.0"
    assert int(found[-1]["failed"] or 0) == failed
    assert len({m.group(0) for m in found}) == len(found), "the last state is not repeated"


def test_ttg_run_into_a_log_prints_a_plain_line_every_interval(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    proc = ttg(home, "run", "tests.funcs:counted_slow", "--range", "120", "--chunk-size", "5", "--workers",
               "2", TTG_PROGRESS_SECONDS="0.3", TTG_TEST_COUNTER=str(counter))
    assert proc.returncode == 0, proc.stderr
    check_lines(progress_lines(proc.stderr), 120)
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr  # no bar drawn into a file
    assert executions(counter) == {i: 1 for i in range(120)}


def test_no_progress_lines_when_the_interval_is_zero(home: Path, tmp_path: Path) -> None:
    proc = ttg(home, "run", "tests.funcs:counted_slow", "--range", "40", "--chunk-size", "5",
               TTG_PROGRESS_SECONDS="0", TTG_TEST_COUNTER=str(tmp_path / "counter"))
    assert proc.returncode == 0, proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if ln.startswith("ttg: ")], proc.stderr


def test_a_bad_interval_is_one_sentence(home: Path) -> None:
    proc = ttg(home, "run", "tests.funcs:square", "--range", "4", TTG_PROGRESS_SECONDS="-1")
    assert proc.returncode == 2 and not home.exists()
    assert proc.stderr.strip() == ("ttg: error: progress seconds must be from 0 (no progress lines) to a day "
                                   "(86400), not -1.0 (TTG_PROGRESS_SECONDS).")


def test_ttg_run_on_a_terminal_redraws_one_bar(home: Path, tmp_path: Path) -> None:
    """stderr a pseudo-terminal: the bar is redrawn in place (carriage returns), and no
    plain line is written."""
    primary, secondary = pty.openpty()
    env = cli_env(home, TTG_PROGRESS_SECONDS="0.3", TTG_TEST_COUNTER=str(tmp_path / "counter"))
    proc = subprocess.Popen([sys.executable, "-m", "ttg", "run", "tests.funcs:counted_slow", "--range", "120",
                             "--chunk-size", "5", "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    drawn = b""
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal's last writer is gone
            break
        if not data:
            break
        drawn += data
    os.close(primary)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    text = drawn.decode(errors="replace")
    assert "120/120" in text and text.count("\r") >= 2, text
    assert "ttg: " not in text
    assert "complete, 120/120 points" in stdout


def test_fail_on_error_exits_1_when_points_failed(home: Path) -> None:
    plain = ttg(home, "run", "tests.funcs:fail_on_multiples_of_7", "--range", "30")
    assert plain.returncode == 0 and "error 5" in plain.stdout
    strict = ttg(home, "run", "tests.funcs:fail_on_multiples_of_7", "--range", "30", "--fail-on-error")
    assert strict.returncode == 1
    assert "5 points failed (--fail-on-error): exit status 1" in strict.stderr
    clean = ttg(home, "run", "tests.funcs:square", "--range", "30", "--fail-on-error")
    assert clean.returncode == 0, clean.stderr


API = '''
import sys
import ttg
from tests import funcs

if __name__ == "__main__":
    res = ttg.run(funcs.counted_slow, 100, workers=2, chunk_size=5, progress=sys.argv[1] == "on")
    print(res.outcome, res.progress().done)
'''


def test_ttg_run_into_a_log_prints_lines_and_progress_false_silences_it(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(API))
    counter = tmp_path / "counter"
    for shown in ("on", "off"):
        home_ = home / shown
        proc = subprocess.run([sys.executable, str(path), shown], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env=cli_env(home_, TTG_PROGRESS_SECONDS="0.3",
                                                       TTG_TEST_COUNTER=str(counter)))
        assert proc.returncode == 0 and proc.stdout == "complete 100\n", proc.stderr
        if shown == "on":
            check_lines(progress_lines(proc.stderr), 100)
        else:
            assert "ttg: " not in proc.stderr, proc.stderr


def test_ttg_run_without_a_stderr_or_into_a_broken_pipe_completes(home: Path, tmp_path: Path) -> None:
    """stderr closed (a daemon), or a pipe whose reader left after one byte: the
    display turns off and the sweep completes (the commands used to crash half-way)."""
    run = (f"{sys.executable} -m ttg run tests.funcs:counted_slow --range 100 --chunk-size 5 --workers 2 "
           f"--home {home}")
    env = cli_env(home, TTG_PROGRESS_SECONDS="0.2", TTG_TEST_COUNTER=str(tmp_path / "counter"))
    closed = subprocess.run(["bash", "-c", f"exec 2>&-; {run} >/dev/null"], cwd=ROOT, env=env, timeout=120)
    assert closed.returncode == 0
    assert executions(tmp_path / "counter") == {i: 1 for i in range(100)}
    broken = subprocess.run(["bash", "-o", "pipefail", "-c", f"{run} --name b 2>&1 >/dev/null | head -c1"],
                            cwd=ROOT, env=env, timeout=120, capture_output=True)
    assert broken.returncode == 0, broken.stderr
    status = ttg(home, "status", "b", check=True)
    assert "100/100" in status.stdout or "complete" in status.stdout, status.stdout
