"""``ttg.run`` and ``ttg.start`` from Python: any callable, on local workers that
run in a process of their own (never forked from the caller), with a handle to
wait on, cancel and interrupt. Real processes; executions counted per index."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import ttg
from tests import funcs
from tests.conftest import cli_env, records_per_index
from tests.processes import executions, wait_until
from ttg.errors import FunctionError


def values(res: ttg.Results) -> list[Any]:
    return [r["value"] for r in sorted(res.to_arrow().to_pylist(), key=lambda r: int(r["index"]))]


class Scale:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return x * self.factor

    def minus(self, x: int) -> int:
        return x - self.factor


def make_adder(k: int) -> Any:
    def add(x: int) -> int:
        return x + k

    return add


CALLABLES = {
    "lambda": (lambda x: x * 3, [x * 3 for x in range(30)]),
    "closure": (make_adder(100), [x + 100 for x in range(30)]),
    "partial": (functools.partial(pow, 2), [2**x for x in range(30)]),
    "callable-object": (Scale(7), [x * 7 for x in range(30)]),
    "bound-method": (Scale(7).minus, [x - 7 for x in range(30)]),
}


@pytest.mark.parametrize("kind", list(CALLABLES))
def test_any_callable_runs_on_local_workers(home: Path, kind: str) -> None:
    fn, expected = CALLABLES[kind]
    res = ttg.run(fn, ttg.Range(30), workers=2, chunk_size=4, home=home)
    assert res.outcome == "complete"
    assert res.sweep.function.startswith("<local>:")  # given by value: workers never import it
    assert values(res) == expected
    assert records_per_index(home, res.name) == {i: 1 for i in range(30)}


def test_an_importable_function_is_still_imported(home: Path) -> None:
    res = ttg.run(funcs.square, ttg.Range(10), workers=1, home=home)
    assert res.sweep.function == "tests.funcs:square" and values(res) == [x * x for x in range(10)]


def test_another_captured_value_is_another_sweep(home: Path) -> None:
    two, three = ttg.run(make_adder(2), 5, home=home), ttg.run(make_adder(3), 5, home=home)
    assert two.name != three.name
    assert (values(two), values(three)) == ([2, 3, 4, 5, 6], [3, 4, 5, 6, 7])
    assert ttg.run(make_adder(2), 5, home=home).name == two.name


def test_workers_elsewhere_cannot_be_given_a_lambda(home: Path) -> None:
    with pytest.raises(FunctionError, match=r"cannot be imported by workers started elsewhere.*ttg\.run\.$"):
        ttg.submit(lambda x: x, ttg.Range(10), home=home)
    assert not home.exists()  # nothing stored, not even an empty store


SCRIPT = '''
import os, sys, time
import ttg

K = int(os.environ.get("K", "1"))


class Model:
    def __init__(self, k):
        self.k = k

    def predict(self, x):
        with open(os.environ["TTG_TEST_COUNTER"], "a") as fh:
            fh.write(f"{{x}}\\n")
        time.sleep({sleep})
        return x * self.k


if __name__ == "__main__":
    {body}
'''


def script(tmp_path: Path, body: str, sleep: float = 0.0, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(SCRIPT.format(sleep=sleep, body=textwrap.indent(textwrap.dedent(body), "    ").strip()))
    return path


def run_script(path: Path, home: Path, counter: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(path)], cwd=path.parent, capture_output=True, text=True,
                          timeout=120, env=cli_env(home, TTG_TEST_COUNTER=str(counter), **env))


def test_a_notebook_style_callable_resumes_from_a_new_process(home: Path, tmp_path: Path) -> None:
    """A method of a class defined in ``__main__``: a second process finds the same
    sweep (its fingerprint does not depend on the process) and computes nothing."""
    path = script(tmp_path, '''
        res = ttg.run(Model(K).predict, ttg.Range(40), workers=2, chunk_size=5)
        print(res.name, res.outcome, sum(r["value"] for r in res.to_arrow().to_pylist()))
    ''')
    counter = tmp_path / "counter"
    first = run_script(path, home, counter, K="3")
    assert first.returncode == 0, first.stderr
    name, outcome, total = first.stdout.split()
    assert (outcome, int(total)) == ("complete", 3 * sum(range(40)))
    assert executions(counter) == {i: 1 for i in range(40)}
    again = run_script(path, home, counter, K="3")
    assert again.stdout.split() == [name, "complete", total]
    assert executions(counter) == {i: 1 for i in range(40)}  # nothing computed twice
    other = run_script(path, home, counter, K="4")  # another captured value: another sweep
    assert other.stdout.split()[0] != name


def test_a_library_that_started_threads_does_not_hang_the_workers(home: Path, tmp_path: Path) -> None:
    """scikit-learn called once in the caller starts an OpenMP pool; a child forked from
    that process deadlocked in it, and every point ran into its timeout."""
    path = tmp_path / "fit.py"
    path.write_text(textwrap.dedent('''
        import numpy as np
        from sklearn.cluster import KMeans
        import ttg

        X = np.random.default_rng(0).normal(size=(2000, 5))

        def fit(seed):
            return float(KMeans(n_clusters=3, n_init=1, random_state=seed).fit(X).inertia_)

        if __name__ == "__main__":
            fit(0)  # the sanity check that starts the OpenMP threads
            res = ttg.run(lambda seed: fit(seed), ttg.Range(8), workers=2, timeout=20)
            print(res.outcome, res.progress().by_status())
    '''))
    out = run_script(path, home, tmp_path / "counter")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "complete" and "'ok': 8" in out.stdout, out.stdout + out.stderr


def test_start_watch_cancel_and_resume(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    os.environ["TTG_TEST_COUNTER"] = str(counter)
    try:
        handle = ttg.start("tests.funcs:counted_slow", ttg.Range(200), workers=2, chunk_size=5, home=home)
        assert not handle.done() and handle.outcome is None
        wait_until(lambda: handle.progress().done >= 60, 60, "30 % done")
        dropped = handle.cancel()
        assert handle.outcome == "cancelled" and handle.done() and dropped > 0
        assert handle.progress().done < 200
        res = ttg.run("tests.funcs:counted_slow", ttg.Range(200), workers=2, chunk_size=5, home=home)
    finally:
        del os.environ["TTG_TEST_COUNTER"]
    assert res.outcome == "complete" and res.name == handle.name
    assert records_per_index(home, res.name) == {i: 1 for i in range(200)}
    assert executions(counter) == {i: 1 for i in range(200)}


def test_wait_with_a_timeout_leaves_the_sweep_running(home: Path, tmp_path: Path) -> None:
    os.environ["TTG_TEST_COUNTER"] = str(tmp_path / "counter")
    try:
        handle = ttg.start("tests.funcs:counted_slow", ttg.Range(60), workers=1, chunk_size=5, home=home)
        with pytest.raises(TimeoutError, match=r"still running after 0\.2 s"):
            handle.wait(0.2)
        assert handle.wait().outcome == "complete"
    finally:
        del os.environ["TTG_TEST_COUNTER"]


def test_ctrl_c_stops_the_workers_then_raises(home: Path, tmp_path: Path) -> None:
    path = script(tmp_path, '''
        try:
            ttg.run(Model(1).predict, ttg.Range(400), workers=2, chunk_size=5)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise SystemExit(130)
        print("not interrupted")
    ''', sleep=0.02)
    counter = tmp_path / "counter"
    proc = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=cli_env(home, TTG_TEST_COUNTER=str(counter)))
    wait_until(lambda: len(executions(counter)) >= 40, 60, "the first points")
    proc.send_signal(signal.SIGINT)  # as Ctrl-C, or a notebook's stop button
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out.strip() == "interrupted", out + err
    assert _processes_of(tmp_path) == []  # the workers' process and its children are gone
    ran = executions(counter)
    assert set(ran.values()) == {1} and len(ran) < 400
    again = run_script(path, home, counter)
    assert again.stdout.strip() == "not interrupted", again.stderr
    assert executions(counter) == {i: 1 for i in range(400)}  # what was running finished and committed


def test_workers_stop_when_the_caller_dies(home: Path, tmp_path: Path) -> None:
    path = script(tmp_path, '''
        handle = ttg.start(Model(1).predict, ttg.Range(400), workers=2, chunk_size=5)
        print(handle._workers.proc.pid, flush=True)
        time.sleep(600)
    ''', sleep=0.05)
    proc = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env=cli_env(home, TTG_TEST_COUNTER=str(tmp_path / "counter")))
    assert proc.stdout is not None
    with proc.stdout:
        workers = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    wait_until(lambda: not _alive(workers), 30, "the workers' process to stop")
    wait_until(lambda: _processes_of(tmp_path) == [], 30, "its children to stop")


def test_a_script_that_starts_a_sweep_at_its_top_level_is_told_so(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "unguarded.py"
    path.write_text("import ttg\n\ndef f(x):\n    return x\n\nres = ttg.run(f, ttg.Range(10))\n")
    out = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env=cli_env(home))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"ttg.errors.FunctionError: {path} starts a sweep at its top level, and workers import it to find "
        "the function: put the call under `if __name__ == \"__main__\":`.")
    assert not (home / "results.db").exists()  # nothing stored


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _processes_of(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (the script, its workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory and _alive(int(entry.name)):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def test_the_guard_reading_is_exact() -> None:
    from ttg.client.guard import unguarded_sweep_call as unguarded

    assert unguarded("import ttg\nttg.run(f, 3)\n")
    assert unguarded("import ttg as t\nx = [t.start(f, 3)]\n")
    assert unguarded("from ttg import submit as s\nif True:\n    s(f, 3)\n")
    assert not unguarded("import ttg\nif __name__ == '__main__':\n    ttg.run(f, 3)\n")
    assert not unguarded("import ttg\nif '__main__' == __name__:\n    ttg.run(f, 3)\n")
    assert not unguarded("import ttg\ndef main():\n    ttg.run(f, 3)\n")
    assert not unguarded("import other\nother.run(f, 3)\n")
    assert not unguarded("this is not python")


def test_workers_elsewhere_leave_its_chunks_alone(home: Path, procs: Any) -> None:
    """A `ttg worker` that allows anything, on the same broker and store, cannot run a
    function given by value: it leaves those chunks to the local workers."""
    other = procs.start(home, "worker", "--allow", "*", "--workers", "1")
    handle = ttg.start(lambda x: (time.sleep(0.01), x + 0.5)[1], ttg.Range(400), workers=1, chunk_size=5,
                       home=home)
    wait_until(lambda: "was given by value to the local workers" in other.stderr, 30,
               "the other worker to lease a chunk of it and leave it")
    assert handle.wait().outcome == "complete"
    local = handle._workers.proc.pid  # type: ignore[union-attr]
    workers = {r["worker"] for r in handle.to_arrow().to_pylist()}
    assert all(f"-{local}-" in w for w in workers), workers
    other.signal_group(signal.SIGTERM)
    assert other.wait(60) == 0
    assert "was given by value to the local workers" in other.stderr


def test_what_cannot_be_pickled_is_one_sentence(home: Path) -> None:
    import threading

    lock = threading.Lock()
    with pytest.raises(FunctionError, match=r"cannot be given to the local workers: it references "
                                            r"something that cannot be pickled \(TypeError: .*\); define "
                                            r"it in a module that workers import, or make what it uses "
                                            r"picklable\.$"):
        ttg.run(lambda x: lock.locked(), ttg.Range(3), home=home)
    with pytest.raises(FunctionError, match=r"cannot be shipped: .*; make what it uses picklable, or run it "
                                            r"from a module the workers import\.$"):
        ttg.submit(lambda x: lock.locked(), ttg.Range(3), home=home, ship=True,
                   settings=ttg.Settings(home=home, secret="s"))
    assert not (home / "results.db").exists()
