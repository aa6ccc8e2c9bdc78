"""Clear errors, nothing lost: bad input gives one line on stderr, "ttg: error: "
and a sentence naming the problem and the fix, exit status 2, and leaves the
store exactly as it was. Chunks a worker must not run (not on its allow-list,
wrongly signed) are dead-lettered with the reason, never executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_exactly_once, records_per_index, sweep_id_from, ttg
from tests.processes import db_snapshot, executions

# name -> (file, content) written next to the home
FILES = {
    "bad.yaml": "kind: range\nstop: [1, 2\n",
    "bad.toml": "kind = range\n",
    "bad.json": '{"kind": "range", "stop": 10,}',
    "wrong-field.yaml": "kind: range\nstopp: 10\n",
    "wrong-kind.yaml": "kind: cube\nside: 3\n",
    "wrong-type.yaml": "kind: grid\naxes:\n  a: {linspace: [0, one, 5]}\n",
    "not-a-mapping.yaml": "- 1\n- 2\n",
    "empty-grid.json": json.dumps({"kind": "grid", "axes": {"a": []}}),
    "empty.csv": "a,b\n",
    "spec.txt": "kind: range\nstop: 10\n",
    "dates.yaml": "kind: grid\naxes:\n  day: [2024-01-01, 2024-01-02]\n",
    "dates.toml": "kind = 'grid'\n[axes]\nday = [2024-01-01, 2024-01-02]\n",
}
#: a JSONL file with a byte that is not UTF-8 (written as bytes)
BINARY_FILES = {"latin1.jsonl": b'{"name": "caf\xe9"}\n'}

SQ = "tests.funcs:square"

# (id, arguments with {dir} for the files' directory and {done} for an existing sweep,
#  what the message must contain: the problem, then the fix)
CASES = [
    ("unknown-module", ["run", "nosuchmod:f", "--range", "10"],
     ["cannot import module 'nosuchmod'", "install it"]),
    ("unknown-function", ["run", "tests.funcs:nosuch", "--range", "10"],
     ["has no function 'nosuch'", "check the spelling"]),
    ("not-a-reference", ["run", "tests.funcs", "--range", "10"],
     ["is not a function reference", "package.module:function"]),
    ("missing-file-function", ["run", "/nonexistent/f.py:g", "--range", "10"],
     ["does not exist", "check the path"]),
    ("bad-yaml", ["run", SQ, "--space", "{dir}/bad.yaml"],
     ["'bad.yaml' is not valid YAML", "fix the syntax"]),
    ("bad-toml", ["run", SQ, "--space", "{dir}/bad.toml"],
     ["'bad.toml' is not valid TOML", "fix the syntax"]),
    ("bad-json", ["run", SQ, "--space", "{dir}/bad.json"],
     ["'bad.json' is not valid JSON", "fix the syntax"]),
    ("wrong-field", ["submit", SQ, "--space", "{dir}/wrong-field.yaml"],
     ["unknown field(s) stopp", "allowed: kind, name, start, step, stop"]),
    ("wrong-kind", ["run", SQ, "--space", "{dir}/wrong-kind.yaml"],
     ["space.kind", "expected one of range, grid, random, file, got 'cube'"]),
    ("wrong-type", ["run", SQ, "--space", "{dir}/wrong-type.yaml"],
     ["space.axes.a.linspace: expected a", "got 'one'"]),
    ("not-a-mapping", ["run", SQ, "--space", "{dir}/not-a-mapping.yaml"],
     ["not-a-mapping.yaml", "expected a mapping with a 'kind' field"]),
    ("missing-space-file", ["run", SQ, "--space", "{dir}/nope.yaml"], ["nope.yaml", "does not exist"]),
    ("missing-rows-file", ["run", SQ, "--space", "{dir}/nope.csv"], ["nope.csv", "does not exist"]),
    ("unknown-space-extension", ["run", SQ, "--space", "{dir}/spec.txt"],
     ["unknown extension '.txt'", "use .yaml, .toml, .json, .csv, .jsonl or .parquet"]),
    ("empty-range", ["run", SQ, "--range", "0"], ["the space is empty (0 points)", "at least one point"]),
    ("empty-grid-axis", ["run", SQ, "--space", "{dir}/empty-grid.json"],
     ["space.axes.a", "at least one value"]),
    ("empty-rows-file", ["run", SQ, "--space", "{dir}/empty.csv"],
     ["the space is empty", "at least one point"]),
    ("no-space", ["run", SQ], ["give exactly one space", "--range N"]),
    ("two-spaces", ["run", SQ, "--range", "10", "--grid", "a=1,2"], ["give exactly one space", "--range N"]),
    ("bad-range", ["run", SQ, "--range", "ten"], ["--range 'ten'", "expected N or START:STOP[:STEP]"]),
    ("zero-step", ["run", SQ, "--range", "0:10:0"], ["step", "must not be 0"]),
    ("bad-grid", ["run", SQ, "--grid", "a"], ["--grid 'a'", "expected NAME=VALUES"]),
    ("random-without-param", ["run", SQ, "--random", "10"],
     ["--random needs at least one --param", "x=uniform"]),
    ("unknown-distribution", ["run", SQ, "--random", "10", "--param", "x=gauss:0:1"],
     ["unknown distribution 'gauss'", "use one of uniform"]),
    ("bad-retry-on", ["run", SQ, "--range", "10", "--retries", "2", "--retry-on", "Connection Error"],
     ["'Connection Error' is not an exception class name", "ConnectionError"]),
    ("retry-on-without-retries", ["run", SQ, "--range", "10", "--retry-on", "ConnectionError"],
     ["retries is 0", "give --retries N"]),
    ("negative-retries", ["submit", SQ, "--range", "10", "--retries", "-1"],
     ["retries must be an integer from 0 to 100"]),
    ("bad-backoff", ["run", SQ, "--range", "10", "--retries", "1", "--retry-backoff", "-2"],
     ["back-off must be from 0 to 3600 seconds"]),
    ("zero-max-failures", ["run", SQ, "--range", "10", "--max-failures", "0"],
     ["max failures must be a number of points (at least 1) or a percentage", "5%"]),
    ("bad-max-failures", ["submit", SQ, "--range", "10", "--max-failures", "ten%"],
     ["max failures must be", "'ten%'"]),
    ("bad-chunk-size-text", ["run", SQ, "--range", "10", "--chunk-size", "abc"],
     ["chunk size must be a positive integer or 'auto'", "'abc'"]),
    ("bad-chunk-size-zero", ["submit", SQ, "--range", "10", "--chunk-size", "0"],
     ["chunk size must be a positive integer or 'auto'", "'0'"]),
    ("bad-max-attempts", ["run", SQ, "--range", "10", "--max-attempts", "0"],
     ["max attempts must be at least 1"]),
    ("bad-timeout", ["run", SQ, "--range", "10", "--timeout", "0"],
     ["timeout must be a positive number"]),
    ("bad-workers", ["run", SQ, "--range", "10", "--workers", "-1"],
     ["--workers", "-1 is not in the range x>=1"]),
    ("zero-workers", ["run", SQ, "--range", "10", "--workers", "0"],
     ["--workers", "0 is not in the range x>=1"]),
    ("huge-range", ["run", SQ, "--range", "100000000000000000000"],
     ["has 100,000,000,000,000,000,000 points, more than TTG can index exactly", "split it"]),
    ("too-many-chunks", ["submit", SQ, "--range", "1000000000000", "--chunk-size", "1"],
     ["make 1,000,000,000,000 chunks, more than 10,000,000", "use a larger --chunk-size, or auto"]),
    ("chunk-too-big", ["submit", SQ, "--range", "100", "--chunk-size", "100000000"],
     ["chunk size must be 'auto' or an integer from 1 to 10,000,000", "not 100000000"]),
    ("dates-in-yaml", ["run", SQ, "--space", "{dir}/dates.yaml"],
     ["space.axes.day[0]: datetime.date(2024, 1, 1) is a date", "write it as a string (in quotes)"]),
    ("dates-in-toml", ["run", SQ, "--space", "{dir}/dates.toml"],
     ["space.axes.day[0]: datetime.date(2024, 1, 1) is a date", "write it as a string (in quotes)"]),
    ("jsonl-not-utf8", ["run", SQ, "--space", "{dir}/latin1.jsonl"],
     ["'latin1.jsonl' line 1 is not valid UTF-8", "save the file as UTF-8"]),
    ("huge-priority", ["run", SQ, "--range", "10", "--priority", "100000000000000000000"],
     ["priority must be an integer from -2147483648 to 2147483647"]),
    ("nan-timeout", ["run", SQ, "--range", "10", "--timeout", "nan"],
     ["timeout must be a positive number of seconds, not nan", "leave it out for none"]),
    ("inf-timeout", ["run", SQ, "--range", "10", "--timeout", "inf"],
     ["timeout must be a positive number of seconds, not inf"]),
    ("nan-target", ["run", SQ, "--range", "10", "--target-chunk-seconds", "nan"],
     ["target chunk seconds must be a positive number, not nan"]),
    ("redis-bad-port", ["run", SQ, "--range", "10", "--broker", "redis://h:notaport"],
     ["the Redis URL redis://h:notaport is malformed", "redis://[user:password@]host:port/db"]),
    ("redis-bad-prefix", ["run", SQ, "--range", "10", "--broker", "redis://127.0.0.1:6379/15?prefix=a b"],
     ["has prefix='a b'", "e.g. ?prefix=team-a"]),
    ("amqp-bad-port", ["run", SQ, "--range", "10", "--broker", "amqp://u:p@h:notaport/v",
                       "--store", "sqlite://{dir}/s.db"],
     ["the RabbitMQ URL amqp://u@h:notaport/v is malformed", "amqp://user:password@host:port/vhost"]),
    ("bad-name", ["run", SQ, "--range", "10", "--name", "no spaces!"],
     ["sweep name 'no spaces!' is not valid", "use letters, digits"]),
    ("name-taken", ["run", SQ, "--range", "31", "--name", "{done}"],
     ["a sweep named '{done}' already exists with another function or space", "choose another --name"]),
    ("results-unknown-sweep", ["results", "nosuchname", "-o", "{dir}/x.csv"],
     ["no sweep named 'nosuchname'", "run `ttg list`"]),
    ("results-unknown-format", ["results", "{done}", "-o", "{dir}/x.xlsx"],
     ["cannot tell the output format of 'x.xlsx'", ".parquet, .csv or .jsonl"]),
    ("status-unknown-sweep", ["status", "nosuchname"], ["no sweep named 'nosuchname'", "run `ttg list`"]),
    ("retry-unknown-sweep", ["retry", "nosuchname"], ["no sweep named 'nosuchname'", "run `ttg list`"]),
    ("retry-unknown-status", ["retry", "{done}", "--status", "lost"],
     ["unknown status lost", "use ok, error"]),
    ("worker-allows-nothing", ["worker", "--burst"], ["this worker may run nothing", "give --allow MODULE"]),
    ("unknown-broker-scheme", ["run", SQ, "--range", "10", "--broker", "foo://host"],
     ["unknown broker URL scheme 'foo://'", "use one of local://"]),
    ("unusable-home", ["run", SQ, "--range", "10", "--home", "/dev/null/ttg"],
     ["cannot open /dev/null/ttg/broker.db", "set --home / TTG_HOME to one that is"]),
    ("unknown-store-scheme", ["list", "--store", "bar://host"],
     ["unknown result store URL scheme 'bar://'", "use one of sqlite://"]),
]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A home holding one finished sweep and one queued sweep, and the bad files."""
    base = tmp_path_factory.mktemp("bad-input")
    home = base / ".ttg"
    done = sweep_id_from(ttg(home, "run", SQ, "--range", "30", "--workers", "1", check=True).stdout)
    ttg(home, "submit", "tests.funcs:noop", "--range", "50", "--chunk-size", "10", check=True)
    for name, text in FILES.items():
        (base / name).write_text(text)
    for name, data in BINARY_FILES.items():
        (base / name).write_bytes(data)
    return home, base, done


def assert_one_error_line(stderr: str, *parts: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("ttg: error: "), line
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    return line


@pytest.mark.parametrize(("args", "parts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(args: list[str], parts: list[str], populated: tuple[Path, Path, str]) -> None:
    home, base, done = populated
    args = [a.format(dir=base, done=done) for a in args]
    before = db_snapshot(home)
    proc = ttg(home, *args)
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == ""
    assert_one_error_line(proc.stderr, *[p.format(done=done) for p in parts])
    assert db_snapshot(home) == before
    assert not list(base.glob("x.*")), "a failed export left a file behind"


@pytest.mark.parametrize(("env", "parts"), [
    ({"TTG_WORKERS": "many"}, ["TTG_WORKERS='many' is not a number", "set it to a number or unset it"]),
    ({"TTG_LEASE_SECONDS": "inf"}, ["lease seconds must be a positive number of seconds, at most a day",
                                    "not inf (TTG_LEASE_SECONDS"]),
    ({"TTG_LEASE_SECONDS": "nan"}, ["lease seconds must be a positive number", "not nan"]),
    ({"TTG_GRACE_SECONDS": "inf"}, ["grace seconds must be from 0 to a day", "not inf"]),
    ({"TTG_PRESENCE_SECONDS": "-1"}, ["presence seconds must be from 0 (off) to a day", "not -1.0"]),
])
def test_bad_environment_variable(env: dict[str, str], parts: list[str],
                                  populated: tuple[Path, Path, str]) -> None:
    home, _, _ = populated
    before = db_snapshot(home)
    proc = ttg(home, "run", SQ, "--range", "10", **env)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, *parts)
    assert db_snapshot(home) == before


def test_usage_errors_exit_2_and_change_nothing(populated: tuple[Path, Path, str]) -> None:
    home, _, _ = populated
    before = db_snapshot(home)
    cases = [(["run", SQ, "--range", "10", "--max-attempts", "many"], "'many' is not a valid integer",
              "`ttg run --help`"),
             (["run", SQ, "--bogus"], "No such option '--bogus'", "`ttg run --help`"),
             (["results", "x"], "Missing option '-o'", "`ttg results --help`"),
             (["frobnicate"], "No such command 'frobnicate'", "`ttg --help`")]
    for args, problem, fix in cases:
        proc = ttg(home, *args)
        assert proc.returncode == 2, args
        assert_one_error_line(proc.stderr, problem, fix)
    assert db_snapshot(home) == before


def test_bad_input_on_an_empty_home_creates_nothing(home: Path, tmp_path: Path) -> None:
    for args in (["run", "nosuchmod:f", "--range", "10"], ["run", SQ, "--range", "0"], ["run", SQ]):
        proc = ttg(home, *args)
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr)
    assert not home.exists()


def test_bad_input_while_a_sweep_is_queued_keeps_it_resumable(populated: tuple[Path, Path, str],
                                                              tmp_path: Path) -> None:
    """After all the failed commands above, the store still holds exactly what it held."""
    home, _, done = populated
    assert_exactly_once(home, done, 30)
    listing = ttg(home, "list", check=True).stdout
    states = sorted(line.split()[1:3] for line in listing.splitlines()[1:])
    assert states == [["active", "0/50"], ["done", "30/30"]]


# -- chunks a worker refuses ----------------------------------------------------------------


def test_function_not_on_the_allow_list(home: Path, tmp_path: Path) -> None:
    """A worker not allowed to run a sweep leaves its chunks to other workers: back in
    the queue uncounted, never dead-lettered (another worker may be allowed); a
    burst worker leaves once every chunk it sees is one it cannot run."""
    counter = tmp_path / "counter"
    env = {"TTG_TEST_COUNTER": str(counter)}
    sweep = sweep_id_from(ttg(home, "submit", "tests.funcs:counted", "--range", "50", "--chunk-size", "10",
                              check=True).stdout)
    worker = ttg(home, "worker", "--burst", "--allow", "othermod", "--workers", "2", timeout=30, **env)
    assert worker.returncode == 0, worker.stderr  # nothing left it may run: it exited
    assert not counter.exists(), "a function not on the allow-list was executed"
    assert records_per_index(home, sweep) == {}
    reason = ("function 'tests.funcs:counted' is not on this worker's allow-list (othermod); "
              "start the worker with --allow for its module.")
    assert f"leaving the chunks of {sweep} to other workers: {reason}" in worker.stderr
    assert "dead-letter" not in ttg(home, "errors", sweep, check=True).stdout
    status = ttg(home, "status", sweep, check=True).stdout
    assert "queue     5 queued, 0 leased chunks\n" in status, status

    # the fix: a worker that allows it computes every chunk, each at its first attempt
    ttg(home, "worker", "--burst", "--allow", "tests.funcs:counted", "--workers", "2", check=True, **env)
    assert_exactly_once(home, sweep, 50)
    assert executions(counter) == dict.fromkeys(range(50), 1)


@pytest.mark.parametrize(("client_secret", "worker_secret", "reason"), [
    ("right", "wrong", "message signature does not match (tampered, or signed with another secret); "
                       "submit with the same TTG_SECRET as the workers."),
    ("", "right", "unsigned message while this worker requires signatures; "
                  "submit with the same TTG_SECRET as the workers."),
], ids=["wrong-secret", "unsigned"])
def test_messages_with_a_bad_signature_are_never_run(client_secret: str, worker_secret: str, reason: str,
                                                     home: Path, tmp_path: Path) -> None:
    """A worker whose secret verifies no message of a sweep cannot tell tampering from
    its own misconfiguration: it runs nothing and leaves the chunks to others (not
    dead-lettered); a worker with the sweep's secret then computes them."""
    counter = tmp_path / "counter"
    sweep = sweep_id_from(ttg(home, "submit", "tests.funcs:counted", "--range", "20", "--chunk-size", "10",
                              check=True, TTG_SECRET=client_secret).stdout)
    worker = ttg(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1", check=True,
                 TTG_SECRET=worker_secret, TTG_TEST_COUNTER=str(counter))
    assert not counter.exists()
    assert records_per_index(home, sweep) == {}
    assert f"leaving the chunks of {sweep} to other workers: {reason}" in worker.stderr
    assert "dead-letter" not in ttg(home, "errors", sweep, check=True).stdout

    ttg(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1", check=True,
        TTG_SECRET=client_secret, TTG_TEST_COUNTER=str(counter))
    assert_exactly_once(home, sweep, 20)
    assert executions(counter) == dict.fromkeys(range(20), 1)
