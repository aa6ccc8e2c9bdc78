"""The ttg command end to end: every space kind, every output format, every
subcommand, in real subprocesses, checking the exact number of records per
index and the values in the exported tables."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ttg as ttg_api
from tests.conftest import assert_exactly_once, records_per_index, sweep_id_from, ttg
from tests.processes import Procs, columns_of, executions, sweep_in, table_rows, wait_until

TAIL = ["status", "error", "duration", "worker", "attempt"]



def run_ok(home: Path, *args: str, **env: str) -> str:
    """Run ttg, require exit status 0, return stdout."""
    proc = ttg(home, *args, **env)
    assert proc.returncode == 0, f"ttg {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_sweep(home: Path, *args: str, **env: str) -> str:
    """`ttg run ...` with two workers; returns the sweep id."""
    out = run_ok(home, "run", *args, "--workers", "2", **env)
    assert ": complete," in out, out
    return sweep_id_from(out)


def export(home: Path, sweep_id: str, path: Path) -> list[dict[str, Any]]:
    out = run_ok(home, "results", sweep_id, "-o", str(path))
    rows = table_rows(path)
    assert out.startswith(f"wrote {len(rows)} rows to {path}"), out
    return rows


def check_common(row: dict[str, Any], i: int, status: str = "ok") -> None:
    assert row["index"] == i
    assert row["status"] == status
    assert row["attempt"] == 1
    assert isinstance(row["worker"], str) and row["worker"]
    assert isinstance(row["duration"], float) and 0 <= row["duration"] < 10


# -- space kinds ---------------------------------------------------------------------------


def _rows_data() -> list[dict[str, Any]]:
    return [{"a": i, "b": 10 * i, "name": f"row{i}"} for i in range(17)]


def _write_rows(path: Path) -> None:
    data = _rows_data()
    if path.suffix == ".csv":
        path.write_text("a,b,name\n" + "".join(f"{r['a']},{r['b']},{r['name']}\n" for r in data))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    else:
        pq.write_table(pa.Table.from_pylist(data), path)


SPACE_FILES = {
    "spec.yaml": "kind: grid\naxes:\n  a: [1, 2]\n  b: {range: [0, 6, 2]}\n",
    "spec.toml": '[space]\nkind = "range"\nstart = 3\nstop = 15\nname = "n"\n',
    "spec.json": json.dumps({"kind": "random", "n": 9, "seed": 7,
                             "params": {"u": {"loguniform": [1, 100]}, "k": {"integers": [-5, 5]}}}),
}

Case = tuple[str, list[str], list[str], list[Any], Callable[[Any], Any]]


def space_case(kind: str, tmp: Path) -> Case:
    """(function, flags, point fields, expected points, expected value of a point)."""
    def add(p: dict[str, Any]) -> Any:
        return sum(v for v in p.values() if isinstance(v, int | float))

    if kind == "range":
        return "square", ["--range", "5:45:2"], ["x"], list(range(5, 45, 2)), lambda x: x * x
    if kind == "grid":
        pts = [{"a": a, "b": b} for a in (1, 2, 3) for b in (0.0, 0.25, 0.5, 0.75, 1.0)]
        return "add", ["--grid", "a=1,2,3", "--grid", "b=linspace:0:1:5"], ["a", "b"], pts, add
    if kind == "random":
        space = ttg_api.Random(30, seed=3, u=ttg_api.uniform(0, 1), k=ttg_api.integers(0, 10),
                               c=ttg_api.choice("red", "blue"))
        flags = ["--random", "30", "--seed", "3", "--param", "u=uniform:0:1", "--param", "k=integers:0:10",
                 "--param", "c=choice:red,blue"]
        return "add", flags, ["u", "k", "c"], [space[i] for i in range(30)], add
    if kind in ("csv", "jsonl", "parquet"):
        path = tmp / f"rows.{kind}"
        _write_rows(path)
        return "add", ["--space", str(path)], ["a", "b", "name"], _rows_data(), add
    path = tmp / kind
    path.write_text(SPACE_FILES[kind])
    if kind == "spec.yaml":
        pts = [{"a": a, "b": b} for a in (1, 2) for b in (0, 2, 4)]
        return "add", ["--space", str(path)], ["a", "b"], pts, add
    if kind == "spec.toml":
        return "square", ["--space", str(path)], ["n"], list(range(3, 15)), lambda x: x * x
    space = ttg_api.as_space(path)
    return "add", ["--space", str(path)], ["u", "k"], [space[i] for i in range(9)], add


@pytest.mark.parametrize("kind", ["range", "grid", "random", "csv", "jsonl", "parquet",
                                  "spec.yaml", "spec.toml", "spec.json"])
def test_every_space_kind(kind: str, home: Path, tmp_path: Path) -> None:
    fn, flags, fields, points, expect = space_case(kind, tmp_path)
    sweep = run_sweep(home, f"tests.funcs:{fn}", *flags, "--chunk-size", "4")
    total = len(points)
    assert_exactly_once(home, sweep, total)
    rows = export(home, sweep, tmp_path / "out.parquet")
    assert columns_of(tmp_path / "out.parquet") == ["index", *fields, "value", *TAIL]
    assert len(rows) == total
    for i, (row, point) in enumerate(zip(rows, points, strict=True)):
        check_common(row, i)
        got = {f: row[f] for f in fields}
        assert got == (point if isinstance(point, dict) else {fields[0]: point})
        assert row["value"] == pytest.approx(expect(point))
        assert row["error"] is None


def test_random_points_within_their_distributions(home: Path, tmp_path: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:noop", "--random", "200", "--seed", "11",
                      "--param", "u=uniform:2:3", "--param", "g=loguniform:1:1000",
                      "--param", "k=integers:-3:3", "--chunk-size", "50")
    assert_exactly_once(home, sweep, 200)
    rows = export(home, sweep, tmp_path / "r.jsonl")
    assert all(2 <= r["u"] < 3 and 1 <= r["g"] < 1000 and -3 <= r["k"] < 3 for r in rows)
    assert len({r["u"] for r in rows}) == 200  # not the same draw over and over
    assert {r["k"] for r in rows} == {-3, -2, -1, 0, 1, 2}


# -- output formats ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One home with a dict-result sweep and a sweep with errors."""
    home = tmp_path_factory.mktemp("formats") / ".ttg"
    dicts = run_sweep(home, "tests.funcs:as_dict", "--range", "23", "--chunk-size", "5")
    errors = run_sweep(home, "tests.funcs:fail_on_multiples_of_7", "--range", "30", "--chunk-size", "8")
    return home, dicts, errors


@pytest.mark.parametrize("fmt", [".parquet", ".csv", ".jsonl"])
def test_results_file_with_dict_results(fmt: str, exported_home: tuple[Path, str, str],
                                        tmp_path: Path) -> None:
    home, sweep, _ = exported_home
    path = tmp_path / f"out{fmt}"
    rows = export(home, sweep, path)
    assert columns_of(path) == ["index", "x", "double", "text", *TAIL]
    assert len(rows) == 23
    for i, row in enumerate(rows):
        check_common(row, i)
        assert (row["x"], row["double"], str(row["text"]), row["error"]) == (i, 2 * i, str(i), None)


@pytest.mark.parametrize("fmt", [".parquet", ".csv", ".jsonl"])
def test_results_file_with_errors(fmt: str, exported_home: tuple[Path, str, str], tmp_path: Path) -> None:
    home, _, sweep = exported_home
    path = tmp_path / f"out{fmt}"
    rows = export(home, sweep, path)
    assert columns_of(path) == ["index", "x", "value", *TAIL]
    assert len(rows) == 30
    for i, row in enumerate(rows):
        if i % 7 == 0:
            check_common(row, i, "error")
            assert row["value"] is None
            assert row["error"] == f"ValueError: {i} is a multiple of 7"
        else:
            check_common(row, i)
            assert (row["x"], row["value"], row["error"]) == (i, i, None)


def test_results_into_a_new_directory(exported_home: tuple[Path, str, str], tmp_path: Path) -> None:
    home, sweep, _ = exported_home
    path = tmp_path / "deep" / "er" / "out.parquet"
    assert len(export(home, sweep, path)) == 23
    assert not list(path.parent.glob("*.partial"))


def test_clashing_result_keys_get_a_prefix(home: Path, tmp_path: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:clashing", "--range", "12", "--chunk-size", "5")
    assert_exactly_once(home, sweep, 12)
    path = tmp_path / "out.parquet"
    rows = export(home, sweep, path)
    assert columns_of(path) == ["index", "x", "result_x", "result_status", "result_value", *TAIL]
    for i, row in enumerate(rows):
        check_common(row, i)
        got = (row["x"], row["result_x"], row["result_status"], row["result_value"])
        assert got == (i, -i, "mine", 10 * i)


# -- batched -------------------------------------------------------------------------------


def test_batched_range(home: Path, tmp_path: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:batched_square", "--range", "103", "--batched", "--chunk-size", "16")
    assert_exactly_once(home, sweep, 103)
    rows = export(home, sweep, tmp_path / "out.csv")
    assert len(rows) == 103
    for i, row in enumerate(rows):
        check_common(row, i)
        assert (row["x"], row["value"]) == (i, i * i)


def test_batched_grid(home: Path, tmp_path: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:batched_sum", "--grid", "a=range:0:5", "--grid", "b=1,2,3",
                      "--batched", "--chunk-size", "4")
    assert_exactly_once(home, sweep, 15)
    rows = export(home, sweep, tmp_path / "out.jsonl")
    expected = [(a, b) for a in range(5) for b in (1, 2, 3)]
    for i, (row, (a, b)) in enumerate(zip(rows, expected, strict=True)):
        check_common(row, i)
        assert (row["a"], row["b"], row["value"]) == (a, b, a + b)


def test_batched_and_unbatched_are_different_sweeps(home: Path) -> None:
    plain = run_sweep(home, "tests.funcs:square", "--range", "10")
    batched = run_sweep(home, "tests.funcs:batched_square", "--range", "10", "--batched")
    again = run_sweep(home, "tests.funcs:square", "--range", "10", "--chunk-size", "3")
    assert plain != batched
    assert again == plain  # chunk size is not part of the identity: it resumes


# -- status, list, errors --------------------------------------------------------------------


def test_status_and_list(home: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:fail_on_multiples_of_7", "--range", "50", "--chunk-size", "10")
    out = run_ok(home, "status", sweep)
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["sweep"] == f"{sweep} (done)"  # every point has its record
    assert lines["function"] == "tests.funcs:fail_on_multiples_of_7"
    assert lines["space"] == "range, 50 points"
    assert lines["done"] == "50/50 (100.0%)"
    assert lines["status"].split() == ["ok", "42", "error", "8", "crashed", "0", "timeout", "0"]
    assert lines["queue"] == "0 queued, 0 leased chunks"  # (dead letters are named when there are any)

    other = run_sweep(home, "tests.funcs:square", "--range", "20")
    listing = run_ok(home, "list")
    assert listing.splitlines()[0].split() == ["sweep", "state", "done", "failed", "queued", "function",
                                               "code", "updated"]
    by_id = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert set(by_id) == {sweep, other}
    assert by_id[sweep][1:6] == ["done", "50/50", "8", "0+0", "tests.funcs:fail_on_multiples_of_7"]
    assert by_id[other][1:6] == ["done", "20/20", "0", "0+0", "tests.funcs:square"]
    assert all(len(row[6]) == 12 for row in by_id.values())  # each sweep's code fingerprint, short
    assert run_ok(home, "status") == listing  # no name: every sweep


def test_list_empty_home(home: Path) -> None:
    assert "no sweeps yet" in run_ok(home, "list")


def test_errors_shows_each_failed_index(home: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:fail_on_multiples_of_7", "--range", "30", "--chunk-size", "8")
    out = run_ok(home, "errors", sweep)
    lines = out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [str(i), "error", f"ValueError: {i} is a multiple of 7"] for i in (0, 7, 14, 21, 28)]
    tb = run_ok(home, "errors", sweep, "--traceback", "--limit", "2")
    assert tb.count("Traceback (most recent call last)") == 2
    assert "in fail_on_multiples_of_7" in tb
    assert "... more; use --limit to see them (total failed: 5)" in tb
    clean = run_sweep(home, "tests.funcs:square", "--range", "10")
    assert run_ok(home, "errors", clean).strip() == f"no failed indices in {clean}"


# -- retry ----------------------------------------------------------------------------------


def test_retry_reruns_only_the_failed_indices(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    sweep = run_sweep(home, "tests.funcs:fail_on_7_unless_fixed", "--range", "40", "--chunk-size", "6", **env)
    bad = [i for i in range(40) if i % 7 == 0]
    assert executions(counter) == dict.fromkeys(range(40), 1)

    # nothing fixed: the failed indices run again, and fail again
    out = run_ok(home, "retry", sweep, "--workers", "2", **env)
    assert f"re-queued {len(bad)} indices of {sweep}" in out
    assert_exactly_once(home, sweep, 40)
    assert executions(counter) == {i: 2 if i in bad else 1 for i in range(40)}
    rows = export(home, sweep, tmp_path / "after1.parquet")
    assert [r["index"] for r in rows if r["status"] == "error"] == bad

    # fixed (the environment the function reads): they succeed now
    out = run_ok(home, "retry", sweep, "--workers", "2", TTG_TEST_FIXED="1", **env)
    assert f"re-queued {len(bad)} indices of {sweep}" in out
    assert ": complete, 40/40" in out
    assert_exactly_once(home, sweep, 40)
    assert executions(counter) == {i: 3 if i in bad else 1 for i in range(40)}
    rows = export(home, sweep, tmp_path / "after2.parquet")
    assert [(r["index"], r["value"], r["status"], r["error"]) for r in rows] == [
        (i, i, "ok", None) for i in range(40)]
    assert run_ok(home, "errors", sweep).strip() == f"no failed indices in {sweep}"

    # nothing left to retry
    out = run_ok(home, "retry", sweep, **env)
    assert f"re-queued 0 indices of {sweep}" in out
    assert sum(executions(counter).values()) == 40 + 2 * len(bad)


def test_retry_no_workers_queues_for_ttg_worker(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    sweep = run_sweep(home, "tests.funcs:fail_on_7_unless_fixed", "--range", "15", "--chunk-size", "4", **env)
    out = run_ok(home, "retry", sweep, "--no-workers", **env)
    assert f"re-queued 3 indices of {sweep}" in out
    assert "queue     3 queued" in run_ok(home, "status", sweep)
    run_ok(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1", TTG_TEST_FIXED="1", **env)
    assert_exactly_once(home, sweep, 15)
    assert executions(counter) == {i: 2 if i % 7 == 0 else 1 for i in range(15)}
    assert "ok 15  error 0" in run_ok(home, "status", sweep)


def test_retry_rejects_an_unknown_status(home: Path) -> None:
    sweep = run_sweep(home, "tests.funcs:square", "--range", "5")
    proc = ttg(home, "retry", sweep, "--status", "error,bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("ttg: error: unknown status bogus")


# -- submit, worker, resume, cancel ------------------------------------------------------------


def test_submit_then_burst_worker(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    out = run_ok(home, "submit", "tests.funcs:counted", "--range", "300", "--chunk-size", "25")
    sweep = sweep_id_from(out)
    assert out.splitlines()[0] == f"submitted {sweep}: 300 points, 12 chunks queued"
    assert "queue     12 queued, 0 leased" in run_ok(home, "status", sweep)
    # submitting again queues nothing new
    again = run_ok(home, "submit", "tests.funcs:counted", "--range", "300", "--chunk-size", "25")
    assert again.splitlines()[0] == f"submitted {sweep}: 300 points, 0 chunks queued"

    run_ok(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "2",
           TTG_TEST_COUNTER=str(counter))
    assert_exactly_once(home, sweep, 300)
    assert executions(counter) == dict.fromkeys(range(300), 1)
    assert "done      300/300 (100.0%)" in run_ok(home, "status", sweep)

    # resubmitting a finished sweep reports it as done and computes nothing
    third = run_ok(home, "submit", "tests.funcs:counted", "--range", "300", "--chunk-size", "25")
    assert third.splitlines()[0] == f"submitted {sweep}: 300 points, 0 chunks queued, 300 points already done"
    out = run_ok(home, "run", "tests.funcs:counted", "--range", "300", "--workers", "2",
                 TTG_TEST_COUNTER=str(counter))
    assert f"sweep {sweep}: complete, 300/300" in out and "300 were already done" in out
    assert executions(counter) == dict.fromkeys(range(300), 1)


def test_named_sweep(home: Path) -> None:
    out = run_ok(home, "run", "tests.funcs:square", "--range", "10", "--name", "my-sweep_1", "--workers", "1")
    assert sweep_id_from(out) == "my-sweep_1"
    assert_exactly_once(home, "my-sweep_1", 10)
    # the same name with other work is refused, and nothing changes
    proc = ttg(home, "run", "tests.funcs:square", "--range", "11", "--name", "my-sweep_1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("ttg: error: a sweep named 'my-sweep_1' already exists")
    assert_exactly_once(home, "my-sweep_1", 10)


def test_cancel_a_queued_sweep_then_resume(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    sweep = sweep_id_from(run_ok(home, "submit", "tests.funcs:counted", "--range", "100",
                                 "--chunk-size", "10"))
    out = run_ok(home, "cancel", sweep)
    assert out.strip() == f"cancelled {sweep}: 10 chunks dropped; run it again to resume"
    status = run_ok(home, "status", sweep)
    assert f"sweep     {sweep} (cancelled)" in status
    assert "queue     0 queued, 0 leased" in status
    assert [line.split()[1] for line in run_ok(home, "list").splitlines()[1:]] == ["cancelled"]
    # a worker finds nothing to do
    run_ok(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1",
           TTG_TEST_COUNTER=str(counter))
    assert records_per_index(home, sweep) == {}
    assert not counter.exists()
    # running it again resumes it
    out = run_ok(home, "run", "tests.funcs:counted", "--range", "100", "--chunk-size", "10", "--workers", "2",
                 TTG_TEST_COUNTER=str(counter))
    assert ": complete, 100/100" in out
    assert_exactly_once(home, sweep, 100)
    assert executions(counter) == dict.fromkeys(range(100), 1)


def test_cancel_a_running_sweep_then_resume(home: Path, tmp_path: Path, procs: Procs) -> None:
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter), "TTG_LEASE_SECONDS": "2"}
    args = ("run", "tests.funcs:counted_slow", "--range", "120", "--chunk-size", "5", "--workers", "2")
    run = procs.start(home, *args, **env)
    sweep = wait_until(lambda: sweep_in(home), 10, "the sweep to be registered")
    wait_until(lambda: len(records_per_index(home, sweep)) >= 20, 20, "20 committed points")
    cancel = ttg(home, "cancel", sweep)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    assert run.wait(15) == 0, run.stderr
    assert f"sweep {sweep}: cancelled," in run.stdout
    done = records_per_index(home, sweep)
    assert 20 <= len(done) < 120
    assert set(done.values()) == {1}
    # what is done can be exported meanwhile, and the export says what is missing
    part = run_ok(home, "results", sweep, "-o", str(tmp_path / "part.csv"))
    assert part.strip() == (f"wrote {len(done)} rows to {tmp_path / 'part.csv'} "
                            f"({120 - len(done)} points not done yet)")
    assert sorted(r["index"] for r in table_rows(tmp_path / "part.csv")) == sorted(done)

    again = procs.start(home, *args, **env)
    assert again.wait(30) == 0, again.stderr
    assert f"sweep {sweep}: complete, 120/120" in again.stdout
    assert f"{len(done)} were already done" in again.stdout
    assert_exactly_once(home, sweep, 120)
    runs = executions(counter)
    assert all(runs[i] == 1 for i in done), "a point committed before the cancel ran again"


# -- Python API --------------------------------------------------------------------------------


def test_python_api_run(home: Path) -> None:
    res = ttg_api.run("tests.funcs:square", ttg_api.Range(60), workers=2, chunk_size=7, home=home)
    assert res.outcome == "complete"
    assert_exactly_once(home, res.name, 60)
    table = res.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["index", "x", "value", *TAIL]
    assert table.column("value").to_pylist() == [i * i for i in range(60)]
    df = res.to_pandas()
    assert list(df.columns) == table.column_names
    assert len(df) == 60 and df["index"].tolist() == list(range(60))
    assert (df["status"] == "ok").all() and (df["attempt"] == 1).all()
    assert df["value"].sum() == sum(i * i for i in range(60))
    # the CLI sees the same sweep
    assert "done      60/60 (100.0%)" in run_ok(home, "status", res.name)


def test_python_api_function_object_and_grid(home: Path) -> None:
    from tests.funcs import add

    grid = ttg_api.Grid(a=[1, 2, 3], b=ttg_api.linspace(0, 1, 3))
    res = ttg_api.run(add, grid, workers=2, chunk_size=2, home=home)
    assert res.outcome == "complete"
    assert_exactly_once(home, res.name, 9)
    df = res.to_pandas()
    assert df[["a", "b"]].values.tolist() == [[a, b] for a in (1, 2, 3) for b in (0.0, 0.5, 1.0)]
    assert (df["value"] == df["a"] + df["b"]).all()
    # reading results imported the table module; ttg.results is still the function
    assert callable(ttg_api.results)
    again = ttg_api.results(res.name, home=home)
    assert again.to_arrow().equals(res.to_arrow())


def test_python_api_errors(home: Path) -> None:
    res = ttg_api.run("tests.funcs:fail_on_multiples_of_7", 20, workers=1, chunk_size=5, home=home)
    assert [(e.index, e.type, e.message) for e in res.errors()] == [
        (i, "ValueError", f"{i} is a multiple of 7") for i in (0, 7, 14)]
    p = res.progress()
    assert (p.ok, p.error, p.done, p.total) == (17, 3, 20, 20)
    assert math.isnan(res.to_pandas()["value"][0])
