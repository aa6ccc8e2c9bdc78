"""Shipping a function by value to workers that do not have its code (client/ship.py):
only with TTG_SECRET, only to workers started with --accept-shipped-code (others
leave its chunks), its helper modules going along, never a pickle the signed
messages do not name. Real Redis, real workers in another directory."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import cli_env, redis_url, store_records_per_index, ttg
from tests.processes import executions

SRC = str(Path(__file__).parents[2] / "src")
HELPERS = '''
def scale(x):
    return 7 * x
'''

JOB = '''
import os, sys
import ttg
from helpers import scale  # a module of the user's own files: shipped by value too


def f(x):  # a function of __main__, as in a notebook cell
    with open(os.environ["TTG_TEST_COUNTER"], "a") as fh:
        fh.write(f"{x}\\n")
    return scale(x) + 1


if __name__ == "__main__":
    res = ttg.submit(f, 30, ship=True, broker=sys.argv[1], chunk_size=5, progress=False)
    print(res.name)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The submitting side's files; workers run elsewhere, without them."""
    where = tmp_path / "project"
    where.mkdir()
    (where / "helpers.py").write_text(HELPERS)
    (where / "job.py").write_text(textwrap.dedent(JOB))
    return where


def submit_from(project: Path, home: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "job.py", url], cwd=project, capture_output=True, text=True,
                          timeout=120, env=cli_env(home, **env))


def worker(home: Path, elsewhere: Path, url: str, *flags: str,
           **env: str) -> subprocess.CompletedProcess[str]:
    """``ttg worker --burst`` in a directory without the project's files (only TTG on its path)."""
    elsewhere.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "ttg", "worker", "--broker", url, "--burst",
                           "--workers", "2", *flags], cwd=elsewhere, capture_output=True, text=True,
                          timeout=120, env=cli_env(home, **env) | {"PYTHONPATH": SRC})


def test_a_shipped_function_runs_only_where_shipped_code_is_accepted(home: Path, tmp_path: Path,
                                                                     project: Path) -> None:
    url, counter = redis_url(home), tmp_path / "counter"
    sent = submit_from(project, home, url, TTG_SECRET="s3cret", TTG_TEST_COUNTER=str(counter))
    assert sent.returncode == 0, sent.stderr
    sweep = sent.stdout.split()[-1]
    assert sweep.startswith("f_")
    elsewhere = tmp_path / "elsewhere"  # no helpers.py, no job.py
    refusing = worker(home, elsewhere, url, "--allow", "helpers", TTG_SECRET="s3cret",
                      TTG_TEST_COUNTER=str(counter))
    assert refusing.returncode == 0, refusing.stderr
    assert "loads shipped code only when started with --accept-shipped-code and TTG_SECRET" in refusing.stderr
    assert not counter.exists()  # computed nothing
    accepting = worker(home, elsewhere, url, "--accept-shipped-code", TTG_SECRET="s3cret",
                       TTG_TEST_COUNTER=str(counter))
    assert accepting.returncode == 0, accepting.stderr
    assert store_records_per_index(url, sweep) == {i: 1 for i in range(30)}
    assert executions(counter) == {i: 1 for i in range(30)}
    rows = ttg(home, "results", sweep, "--broker", url, "-o", str(tmp_path / "r.jsonl"), check=True,
               TTG_SECRET="s3cret")
    assert rows.returncode == 0
    values = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted((v["index"], v["value"]) for v in values) == [(i, 7 * i + 1) for i in range(30)]


def test_a_file_reference_is_shipped_from_the_command_line(home: Path, tmp_path: Path, project: Path) -> None:
    url, counter = redis_url(home), tmp_path / "counter"
    sent = subprocess.run([sys.executable, "-m", "ttg", "submit", "job.py:f", "--range", "12", "--ship",
                           "--broker", url], cwd=project, capture_output=True, text=True, timeout=120,
                          env=cli_env(home, TTG_SECRET="s3cret") | {"PYTHONPATH": SRC})
    assert sent.returncode == 0, sent.stderr
    sweep = sent.stdout.split()[-1]
    done = worker(home, tmp_path / "elsewhere", url, "--accept-shipped-code", TTG_SECRET="s3cret",
                  TTG_TEST_COUNTER=str(counter))
    assert done.returncode == 0, done.stderr
    assert store_records_per_index(url, sweep) == {i: 1 for i in range(12)}
    assert executions(counter) == {i: 1 for i in range(12)}


def test_shipping_needs_a_secret_and_stores_nothing_without_one(home: Path, tmp_path: Path,
                                                                 project: Path) -> None:
    url = redis_url(home)
    sent = submit_from(project, home, url, TTG_TEST_COUNTER=str(tmp_path / "counter"))
    assert sent.returncode != 0
    assert sent.stderr.strip().splitlines()[-1] == (
        "ttg.errors.ConfigError: shipping a function runs it on remote workers from the signed messages "
        "alone, and there is no TTG_SECRET to sign them with; set TTG_SECRET on this machine and on the "
        "workers (started with --accept-shipped-code).")
    assert "no sweeps yet" in ttg(home, "list", "--broker", url, check=True).stdout
    refused = worker(home, tmp_path / "elsewhere", url, "--accept-shipped-code")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "ttg: error: --accept-shipped-code runs code that comes with signed messages, and there is no "
        "TTG_SECRET to check them with; set the sweep's TTG_SECRET, or drop the flag.")


def test_a_tampered_shipped_function_is_never_run(home: Path, tmp_path: Path, project: Path) -> None:
    """Whoever can write the store (not the broker's signed messages) swaps the pickle
    for one of their own: workers refuse it and dead-letter its chunks."""
    import cloudpickle
    import redis

    url, counter = redis_url(home), tmp_path / "counter"
    sent = submit_from(project, home, url, TTG_SECRET="s3cret", TTG_TEST_COUNTER=str(counter))
    sweep = sent.stdout.split()[-1]
    prefix = url.partition("prefix=")[2]
    r = redis.Redis.from_url(url.partition("?")[0])
    key = f"{prefix}:s:{sweep}" if r.exists(f"{prefix}:s:{sweep}") else next(
        k.decode() for k in r.scan_iter(f"{prefix}*s:{sweep}"))
    record = json.loads(r.hget(key, "record"))
    marker = tmp_path / "forged-ran"
    forged = cloudpickle.dumps(lambda x: marker.write_text("ran") or x)
    record["shipped"] = base64.b64encode(forged).decode()
    r.hset(key, "record", json.dumps(record))
    done = worker(home, tmp_path / "elsewhere", url, "--accept-shipped-code", TTG_SECRET="s3cret",
                  TTG_TEST_COUNTER=str(counter))
    assert done.returncode == 0, done.stderr
    assert not marker.exists() and not counter.exists()
    assert "is not the one its signed chunks name (digest mismatch); it is not loaded" in done.stderr
    status = ttg(home, "status", sweep, "--broker", url, TTG_SECRET="s3cret")
    assert "dead-lettered" in status.stdout, status.stdout


CELLS = [
    """
import os
import ttg

def cube(x):  # a function of a cell
    with open(os.environ["TTG_TEST_COUNTER"], "a") as fh:
        fh.write(f"{x}\\n")
    return x ** 3
""",
    """
res = ttg.submit(cube, 16, ship=True, broker=URL, progress=False)
print(res.name)
""",
]


def test_a_notebook_ships_a_function_of_a_cell(home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """In a real Jupyter kernel: a cell defines the function, the next ships it."""
    import nbformat
    from nbclient import NotebookClient

    url, counter = redis_url(home), tmp_path / "counter"
    monkeypatch.setenv("TTG_SECRET", "s3cret")  # the kernel inherits the environment
    monkeypatch.setenv("TTG_TEST_COUNTER", str(counter))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.replace("URL", repr(url)))
                                         for c in CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    sweep = "".join(o.get("text", "") for o in nb.cells[1].outputs).strip()
    done = worker(home, tmp_path / "elsewhere", url, "--accept-shipped-code", TTG_SECRET="s3cret",
                  TTG_TEST_COUNTER=str(counter))
    assert done.returncode == 0, done.stderr
    assert store_records_per_index(url, sweep) == {i: 1 for i in range(16)}
    assert executions(counter) == {i: 1 for i in range(16)}
