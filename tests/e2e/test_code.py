"""Results bound to the code that computed them (issue 13), through the real `ttg`
command and real workers: an edit is a new sweep, a stale worker computes
nothing, a named sweep refuses changed code, --reuse copies only what the same
code computed, and a sweep can be deleted or computed again."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, cli_env, redis_url, store_url, sweep_id_from, ttg
from tests.processes import Procs, executions, submit, wait_until
from ttg import settings as settings_mod
from ttg.stores import open_store

COUNTED = '''import os


def g(x):
    with open(os.environ["TTG_TEST_COUNTER"], "a") as fh:
        fh.write(f"{{x}}\\n")
    return {value}
'''
GRID = '''import os


def h(p):
    with open(os.environ["TTG_TEST_COUNTER"], "a") as fh:
        fh.write(f"{p['a'] * 1000 + p['b']}\\n")
    return {"sum": p["a"] * 100 + p["b"], "label": f"{p['a']}-{p['b']}"}
'''


def module(directory: Path, value: str, name: str = "m.py") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(COUNTED.format(value=value))
    return f"{directory / name}:g"


def values(url: str, sweep: str) -> dict[int, Any]:
    with open_store(settings_mod.load(environ={}), url) as store:
        return {rec.start + k: v for rec in store.chunks(sweep) for k, v in enumerate(rec.values)}


def codes(url: str, sweep: str) -> set[str | None]:
    with open_store(settings_mod.load(environ={}), url) as store:
        return {rec.code for rec in store.chunks(sweep)}


def test_an_edited_function_is_computed_again(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    ref = module(tmp_path / "proj", "x + 1")
    first = sweep_id_from(ttg(home, "run", ref, "--range", "4", "--workers", "1", check=True,
                              TTG_TEST_COUNTER=str(counter)).stdout)
    module(tmp_path / "proj", "x + 100")
    rerun = ttg(home, "run", ref, "--range", "4", "--workers", "1", check=True, TTG_TEST_COUNTER=str(counter))
    second = sweep_id_from(rerun.stdout)
    assert second != first
    assert executions(counter) == dict.fromkeys(range(4), 2)  # every point ran again, with the new code
    db = f"sqlite://{home / 'results.db'}"
    assert values(db, first) == {i: i + 1 for i in range(4)}  # the first sweep is untouched
    assert values(db, second) == {i: i + 100 for i in range(4)}
    assert f"earlier: {first} ran this function over this space with other code (4 results, kept)" \
        in rerun.stdout
    with open_store(settings_mod.load(environ={}), db) as store:
        fingerprints = {s: store.sweep(s).code for s in (first, second)}
    assert all(c is not None for c in fingerprints.values())
    assert codes(db, first) == {fingerprints[first].digest}  # type: ignore[union-attr]
    assert codes(db, second) == {fingerprints[second].digest}  # type: ignore[union-attr]
    listing = ttg(home, "list", check=True).stdout
    assert fingerprints[first].short in listing and fingerprints[second].short in listing  # type: ignore[union-attr]


def test_a_named_sweep_refuses_changed_code(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    ref = module(tmp_path / "proj", "x + 1")
    ttg(home, "run", ref, "--range", "4", "--workers", "1", "--name", "fit", check=True,
        TTG_TEST_COUNTER=str(counter))
    before = (home / "results.db").read_bytes()
    module(tmp_path / "proj", "x + 2")
    again = ttg(home, "run", ref, "--range", "4", "--workers", "1", "--name", "fit",
                TTG_TEST_COUNTER=str(counter))
    assert again.returncode == 2, again.stderr
    lines = again.stderr.strip().splitlines()
    assert lines == ["ttg: error: sweep 'fit' was computed with other code (m.py changed since): its "
                     "results are not this code's; run under a new --name, or `ttg delete fit` first to "
                     "start over."]
    assert (home / "results.db").read_bytes() == before and executions(counter) == dict.fromkeys(range(4), 1)
    # retry refuses too, naming the file; delete, then the new code runs under the name
    retry = ttg(home, "retry", "fit", "--all", "--workers", "1", TTG_TEST_COUNTER=str(counter))
    assert retry.returncode == 2
    assert "the code of sweep fit changed since it was submitted (m.py)" in retry.stderr
    assert ttg(home, "delete", "fit", "--yes", check=True).stdout.startswith("deleted fit: 4 results")
    ttg(home, "run", ref, "--range", "4", "--workers", "1", "--name", "fit", check=True,
        TTG_TEST_COUNTER=str(counter))
    assert values(f"sqlite://{home / 'results.db'}", "fit") == {i: i + 2 for i in range(4)}


def test_retry_can_compute_ok_points_again(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    ref = module(tmp_path / "proj", "x * 2")
    sweep = sweep_id_from(ttg(home, "run", ref, "--range", "10", "--chunk-size", "3", "--workers", "1",
                              check=True, TTG_TEST_COUNTER=str(counter)).stdout)
    out = ttg(home, "retry", sweep, "--status", "ok", "--workers", "1", check=True,
              TTG_TEST_COUNTER=str(counter)).stdout
    assert "re-queued 10 indices" in out
    assert executions(counter) == dict.fromkeys(range(10), 2)
    assert values(f"sqlite://{home / 'results.db'}", sweep) == {i: 2 * i for i in range(10)}
    refused = ttg(home, "retry", sweep, "--status", "fine")
    assert refused.returncode == 2 and "unknown status fine; use ok, error, crashed, timeout (or --all)" \
        in refused.stderr


def test_delete_asks_first(home: Path, tmp_path: Path) -> None:
    ref = module(tmp_path / "proj", "x")
    sweep = sweep_id_from(ttg(home, "run", ref, "--range", "3", "--workers", "1", check=True,
                              TTG_TEST_COUNTER=str(tmp_path / "counter")).stdout)
    no = subprocess.run([sys.executable, "-m", "ttg", "delete", sweep], cwd=ROOT, env=cli_env(home),
                        input="n\n", capture_output=True, text=True, timeout=60)
    assert no.returncode != 0 and f"delete sweep {sweep} and its 3 results?" in no.stdout
    assert sweep in ttg(home, "list", check=True).stdout
    yes = subprocess.run([sys.executable, "-m", "ttg", "delete", sweep], cwd=ROOT, env=cli_env(home),
                         input="y\n", capture_output=True, text=True, timeout=60)
    assert yes.returncode == 0, yes.stderr
    assert sweep not in ttg(home, "list", check=True).stdout
    missing = ttg(home, "delete", sweep, "--yes")
    assert missing.returncode == 2 and f"no sweep named {sweep!r}" in missing.stderr


def test_a_stale_worker_computes_nothing_and_says_so(home: Path, tmp_path: Path, procs: Procs) -> None:
    """Two workers import two versions of one module (two directories on PYTHONPATH),
    on one Redis broker: the one with other code leaves every chunk to the other."""
    url = redis_url(home)
    new, old = tmp_path / "new", tmp_path / "old"
    module(new, "x + 100", "fitmod.py")
    module(old, "x + 1", "fitmod.py")
    counter_new, counter_old = tmp_path / "counter-new", tmp_path / "counter-old"
    args = ["--broker", url]
    sweep = submit(home, "fitmod:g", "--range", "40", "--chunk-size", "5", *args, PYTHONPATH=f"{new}:{ROOT}")
    stale = procs.start(home, "worker", "--allow", "fitmod", "--workers", "1", *args,
                        PYTHONPATH=f"{old}:{ROOT}", TTG_TEST_COUNTER=str(counter_old),
                        TTG_PRESENCE_SECONDS="0.2")
    wait_until(lambda: "other code" in ttg(home, "workers", *args, check=True).stdout, 30,
               "the stale worker's presence to show it")
    good = procs.start(home, "worker", "--allow", "fitmod", "--workers", "1", "--burst", *args,
                       PYTHONPATH=f"{new}:{ROOT}", TTG_TEST_COUNTER=str(counter_new))
    assert good.wait(60) == 0, good.stderr
    assert not counter_old.exists(), "the stale worker computed something"
    assert executions(counter_new) == dict.fromkeys(range(40), 1)
    assert values(url, sweep) == {i: i + 100 for i in range(40)}
    with open_store(settings_mod.load(environ={}), url) as store:
        submitted = store.sweep(sweep).code
    assert submitted is not None and codes(url, sweep) == {submitted.digest}
    status = ttg(home, "status", sweep, *args, check=True).stdout
    assert "this worker has other code for" in status and "fitmod.py differ" in status, status
    # what the dashboard's sweep page reads ("1 worker has other code for this sweep: ...")
    from ttg.observe.monitor import open_monitor

    with open_monitor(settings_mod.load(environ={}, home=home, broker=url)) as monitor:
        seen = [p.to_json() for p in monitor.presence(sweep)]
    assert [w["status"] for w in seen if "other code" in w["refusing"].get(sweep, "")] == ["alive"], seen
    stale.signal_group(signal.SIGTERM)
    stale.wait(30)
    log = stale.stderr
    warnings = [ln for ln in log.splitlines() if "other code" in ln]
    assert len(warnings) == 1 and submitted.short in warnings[0], log


@pytest.mark.parametrize("store", ["sqlite", "redis", "postgres"])
def test_reuse_computes_only_the_new_points(store: str, home: Path, tmp_path: Path) -> None:
    """A 10x10 grid, then a 20x20 grid that contains it, with --reuse: exactly the
    300 new points run, and the table equals a cold run of the 20x20 grid."""
    from tests.conftest import _empty

    _empty(store)
    url = store_url(store, home)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "gridmod.py").write_text(GRID)
    ref = f"{tmp_path / 'proj' / 'gridmod.py'}:h"
    counter = tmp_path / "counter"
    args = ["--store", url, "--workers", "2", "--chunk-size", "7"]
    ttg(home, "run", ref, "--grid", "a=range:0:10", "--grid", "b=range:0:10", *args, check=True,
        TTG_TEST_COUNTER=str(counter))
    counter.unlink()
    warm = ttg(home, "run", ref, "--grid", "a=range:0:20", "--grid", "b=range:0:20", "--reuse", *args,
               check=True, TTG_TEST_COUNTER=str(counter))
    assert "100 reused from earlier sweeps of this code" in warm.stdout, warm.stdout
    ran = executions(counter)
    assert sum(ran.values()) == 300 and set(ran.values()) == {1}
    assert not any(a < 10 and b < 10 for a, b in (divmod(k, 1000) for k in ran))
    warm_id = sweep_id_from(warm.stdout)
    cold_home = tmp_path / "cold"
    cold = sweep_id_from(ttg(cold_home, "run", ref, "--grid", "a=range:0:20", "--grid", "b=range:0:20",
                             "--workers", "2", check=True, TTG_TEST_COUNTER=str(tmp_path / "c2")).stdout)
    assert table(home, warm_id, url) == table(cold_home, cold, f"sqlite://{cold_home / 'results.db'}")


def table(home: Path, sweep: str, url: str) -> list[dict[str, Any]]:
    """The results table without the columns that say who computed what, when."""
    import ttg as api

    rows = api.results(sweep, home=home, store=url).to_arrow().to_pylist()
    return [{k: v for k, v in r.items() if k not in ("worker", "attempt", "duration")} for r in rows]


def test_a_message_without_a_fingerprint_is_left_to_others() -> None:
    """A chunk queued by an older TTG (no ``code`` in its message) is refused with
    the reason: the worker cannot know which code it belongs to."""
    from ttg.brokers.base import Lease
    from ttg.core.chunking import Chunk
    from ttg.core.codec import Codec
    from ttg.core.funcref import AllowList
    from ttg.core.sweep import Options, Sweep
    from ttg.spaces import RangeSpace
    from ttg.worker.gate import Gate, Unrunnable
    from ttg.worker.task import Task

    sweep = Sweep.create("tests.funcs:square", RangeSpace(10), Options())
    body = sweep.task(Chunk(0, 10))
    assert "code" not in body  # (a sweep made without a fingerprint, as an older TTG made them)
    gate = Gate(Codec(), AllowList(["tests.funcs"]), store=None, before_store=lambda: None)  # type: ignore[arg-type]
    task = Task.parse(body, Lease(sweep.id, Chunk(0, 10), b"", "t", 0.0, 0, None))
    with pytest.raises(Unrunnable) as info:
        gate.function(task)
    assert not info.value.nobody
    assert "carry no code fingerprint (queued by an older TTG); submit the sweep again" in str(info.value)


SCRIPT = '''import sys

import ttg


def g(x):
    return x + {value}


if __name__ == "__main__":
    results = ttg.run(g, ttg.Range(4), workers=1, home=sys.argv[1])
    print(results.name, sorted(r["value"] for r in results.to_arrow().to_pylist()))
'''


def test_a_function_of_a_script_is_fingerprinted_by_the_script(home: Path, tmp_path: Path) -> None:
    """``ttg.run(g, ...)`` from a script's ``__main__``: the workers import the script
    by path, and an edit of the script is a new sweep."""
    script = tmp_path / "job.py"
    outs = []
    for value in (1, 50):
        script.write_text(SCRIPT.format(value=value))
        proc = subprocess.run([sys.executable, str(script), str(home)], cwd=tmp_path, env=cli_env(home),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout.split(None, 1))
    (first, a), (second, b) = outs
    assert first != second
    assert a.strip() == "[1, 2, 3, 4]" and b.strip() == "[50, 51, 52, 53]"
