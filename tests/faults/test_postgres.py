"""PostgreSQL-specific faults, with the real server: backends terminated while two
writers race over the same chunks; a commit the server made whose reply never
arrived; a whole `ttg run` whose backends are terminated again and again; the
server restarted mid-sweep; workers migrating a fresh schema all at once; a child
killed while its previous chunk's commit waits on a lock; wrong password, missing
database, no server; export of a sweep stored in PostgreSQL.
Each time every index ends with exactly one record and the counters are exact.

The shared server (this run's schema, see tests/conftest.py) trusts every
local connection, so the tests that need password authentication or a restart
start a private server (initdb on a free port, scram-sha-256) for this module.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from glob import glob
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.conftest import (
    POSTGRES_SCHEMA,
    POSTGRES_URL,
    assert_exactly_once_in,
    broker_url,
    empty_postgres,
    postgres_url,
    rabbit_vhost,
    store_records_per_index,
    sweep_id_from,
    ttg,
)
from tests.processes import Procs, children, table_rows, wait_until
from tests.proxy import Proxy
from ttg import settings as settings_mod
from ttg.core.chunking import plan
from ttg.core.records import ChunkRecords
from ttg.core.sweep import Options, Sweep
from ttg.errors import ConfigError
from ttg.spaces import RangeSpace
from ttg.stores import Progress, ResultStore, open_store
from ttg.stores.postgres.schema import LATEST
from ttg.testing import free_port

SETTINGS = settings_mod.load(environ={})


def records(a: int, b: int, worker: str) -> ChunkRecords:
    return ChunkRecords(a, b, [i * i for i in range(a, b)], [1000] * (b - a), worker, 1)


def new_sweep(store: ResultStore, total: int) -> Sweep:
    return store.register(Sweep.create("tests.funcs:square", RangeSpace(total), Options(),
                                       name=f"pg-{uuid.uuid4().hex[:8]}"))


def tagged_url(base: str | None = None) -> tuple[str, str]:
    """A URL to this run's schema whose connections carry an application_name of
    their own (so a test terminates only its own backends), and that name."""
    app = f"ttg-test-{uuid.uuid4().hex[:10]}"
    return f"{base or postgres_url()}&application_name={app}", app


def terminate(admin: psycopg.Connection[Any], app: str) -> int:
    """Terminate every backend of ``app``; how many there were."""
    row = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = %s AND pid <> pg_backend_pid()", (app,)).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    """The test's own connection to the shared server, to look and to terminate."""
    empty_postgres()
    with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-csearch_path={POSTGRES_SCHEMA}") as conn:
        yield conn


# -- 1. backends terminated while two writers race over the same chunks ---------------


def test_backends_terminated_during_racing_commits(admin: psycopg.Connection[Any]) -> None:
    url, app = tagged_url()
    with open_store(SETTINGS, url) as s:
        sw = new_sweep(s, 200_000)
    chunks = list(plan(0, sw.total, 250))  # 800 chunks: on a fast machine too, time for many kills
    won: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    failures: list[BaseException] = []

    def write(name: str) -> None:
        try:
            with open_store(SETTINGS, url) as store:
                for c in chunks:  # both writers in the same order: they race on every chunk
                    if store.commit(sw.id, records(c.start, c.stop, name)):
                        won[name].append((c.start, c.stop))
        except BaseException as exc:  # reported below, so the test fails with the reason
            failures.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in won]
    for w in writers:
        w.start()
    kills = 0
    rng = random.Random(7)
    while any(w.is_alive() for w in writers):
        time.sleep(rng.uniform(0.01, 0.05))
        kills += terminate(admin, app)
    for w in writers:
        w.join()
    assert failures == []
    print(f"\nterminated {kills} backends during {len(chunks)} racing commits")
    assert kills >= 5, "too few backends were terminated to show anything"

    # exactly one writer won each chunk, and what is stored is what the winner wrote
    winners = Counter(r for rs in won.values() for r in rs)
    assert sorted(winners) == [(c.start, c.stop) for c in chunks]
    assert set(winners.values()) == {1}
    with open_store(SETTINGS, url) as s:
        stored = {(r.start, r.stop): r.worker for r in s.chunks(sw.id)}
        assert stored == {r: n for n, rs in won.items() for r in rs}
        assert s.progress(sw.id) == Progress(sw.total, ok=sw.total)
    assert_exactly_once_in(url, sw.id, sw.total)


# -- 2. the server committed, the reply was lost: the retry reports it, counts it once ---


class LossyProxy(Proxy):
    """A TCP proxy to PostgreSQL that can lose one reply: once ``lose_reply_to`` is
    set, the first client message containing it goes to the server, and the
    connection is cut as soon as the server answers (it has done the work; the
    client never hears of it). While ``hold`` is clear, new connections wait."""

    def __init__(self, host: str, port: int) -> None:
        self.lose_reply_to: bytes | None = None
        self.lost = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        super().__init__(host, port)

    def before_connect(self) -> None:
        self.hold.wait()

    def connection(self) -> threading.Event:
        return threading.Event()  # armed: the message whose reply is lost went up

    def up(self, src: socket.socket, dst: socket.socket, armed: object) -> None:
        assert isinstance(armed, threading.Event)
        while data := src.recv(65536):
            if self.lose_reply_to is not None and self.lose_reply_to in data:
                self.lose_reply_to = None
                armed.set()
            dst.sendall(data)

    def down(self, src: socket.socket, dst: socket.socket, armed: object) -> None:
        assert isinstance(armed, threading.Event)
        while data := src.recv(65536):
            if armed.is_set():
                self.lost.set()
                return  # the server's answer: dropped, and the connection with it
            dst.sendall(data)


def via(port: int) -> str:
    """This run's schema URL, through 127.0.0.1:port."""
    parts = urlsplit(postgres_url())
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def test_commit_whose_reply_is_lost_is_retried_and_counted_once(admin: psycopg.Connection[Any]) -> None:
    target = urlsplit(POSTGRES_URL)
    proxy = LossyProxy(target.hostname or "127.0.0.1", target.port or 5432)
    try:
        with open_store(SETTINGS, via(proxy.port)) as store:
            sw = new_sweep(store, 1000)
            assert store.commit(sw.id, records(0, 100, "w"))
            proxy.lose_reply_to = b"INSERT INTO ttg_chunks"
            proxy.hold.clear()  # the retry's reconnection waits until we have looked
            result: list[bool] = []
            t = threading.Thread(target=lambda: result.append(store.commit(sw.id, records(100, 200, "w"))))
            t.start()
            assert proxy.lost.wait(10), "the proxy never saw the commit"
            # the lost try is committed, counters and all, though the writer does not know it
            rows = admin.execute("SELECT start, stop, worker FROM ttg_chunks WHERE sweep = %s ORDER BY start",
                                 (sw.id,)).fetchall()
            assert rows == [(0, 100, "w"), (100, 200, "w")]
            proxy.hold.set()
            t.join(20)
            assert result == [True]  # the retry found its own commit: reported as won
            assert store.progress(sw.id) == Progress(1000, ok=200)  # counted once
            assert not store.commit(sw.id, records(150, 250, "late"))
            assert store.commit(sw.id, records(200, 300, "w"))
            assert store.progress(sw.id) == Progress(1000, ok=300)
        assert store_records_per_index(postgres_url(), sw.id) == {i: 1 for i in range(300)}
    finally:
        proxy.hold.set()
        proxy.close()


# -- 3. a whole sweep through the CLI while its backends are terminated -----------------


def test_cli_sweep_while_backends_are_terminated(home: Path, procs: Procs,
                                                admin: psycopg.Connection[Any]) -> None:
    url, app = tagged_url()
    total = 20_000
    run = procs.start(home, "run", "tests.funcs:square", "--range", str(total), "--workers", "2",
                      "--chunk-size", "500", "--store", url)
    rounds = kills = 0
    while run.popen.poll() is None:
        n = terminate(admin, app)
        rounds += n > 0
        kills += n
        time.sleep(0.06)
    assert run.wait(5) == 0, run.stderr
    print(f"\nterminated {kills} backends in {rounds} rounds during the sweep")
    assert rounds >= 3, f"only {rounds} rounds terminated a backend"
    sweep = sweep_id_from(run.stdout)
    assert f"sweep {sweep}: complete, {total}/{total} points" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr
    assert_exactly_once_in(url, sweep, total)
    with open_store(SETTINGS, url) as s:
        assert s.progress(sweep) == Progress(total, ok=total)
        values = {i: v for r in s.chunks(sweep) for i, v in zip(range(r.start, r.stop), r.values,
                                                                 strict=True)}
    assert values == {i: i * i for i in range(total)}


# -- 4. workers starting together migrate a fresh schema once -------------------------------


def _open_and_commit(url: str, sweep_id: str, k: int, out: Any) -> None:
    try:
        with open_store(SETTINGS, url) as s:
            out.put((k, s.commit(sweep_id, records(k * 10, k * 10 + 10, f"p{k}")), None))
    except BaseException as exc:
        out.put((k, False, repr(exc)))


def test_concurrent_first_connections_migrate_once(admin: psycopg.Connection[Any]) -> None:
    import multiprocessing

    schema = f"{POSTGRES_SCHEMA}_fresh"
    empty_postgres(schema)
    admin.execute(f"DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}")
    url = postgres_url(schema)
    ctx = multiprocessing.get_context("fork")
    out: Any = ctx.Queue()
    sweep_id = "fresh"
    procs = [ctx.Process(target=_open_and_commit, args=(url, sweep_id, k, out)) for k in range(6)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(10)
    assert got == [(k, True, None) for k in range(6)]
    versions = admin.execute(f"SELECT version FROM {schema}.ttg_schema_version").fetchall()
    assert versions == [(v,) for v in range(1, LATEST + 1)]
    # migration 2: result blobs are compressed with lz4 (this server has it), and they are
    # read back as written
    compression = admin.execute(
        "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'data'",
        (f"{schema}.ttg_chunks",)).fetchone()
    assert compression == ("l",)
    with open_store(SETTINGS, url) as s:
        big = records(1000, 11_000, "big")
        big.values = [i * i + 1 for i in range(10_000)]
        assert s.commit(sweep_id, big)
        assert next(iter(s.chunks(sweep_id)), None) is not None
        back = [c for c in s.chunks(sweep_id) if c.start == 1000]
        assert back[0].values == big.values
    methods = admin.execute(f"SELECT pg_column_compression(data) FROM {schema}.ttg_chunks "
                            "WHERE start = 1000").fetchall()
    assert methods == [("lz4",)]

    # a schema migrated by a newer TTG is refused, not written to
    admin.execute(f"INSERT INTO {schema}.ttg_schema_version (version) VALUES ({LATEST + 1})")
    with pytest.raises(ConfigError, match="newer than this TTG knows"):
        open_store(SETTINGS, url)


# -- 5. a child killed while its last chunk's commit waits on the server --------------------


@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_child_killed_while_its_previous_chunk_commits(kind: str, home: Path, procs: Procs,
                                                       admin: psycopg.Connection[Any]) -> None:
    """A child commits a chunk in a thread while it computes the next one. Killed with
    a commit held up by a lock, its supervisor releases both chunks at once: the
    computing one counts a failed attempt ("died on" names it alone), the committing
    one does not. Every index ends with exactly one record."""
    schema = f"ttg_commit_{uuid.uuid4().hex[:8]}"
    empty_postgres(schema)
    store = postgres_url(schema)
    if kind != "redis":
        rabbit_vhost(home).create()
    broker = broker_url(kind, home)
    total, size = 200, 25  # chunks of 0.5 s (tests.funcs:slow, 20 ms a point): short (pace.py)
    out = ttg(home, "submit", "tests.funcs:slow", "--range", str(total), "--chunk-size", str(size),
              "--broker", broker, "--store", store, check=True)
    sweep = sweep_id_from(out.stdout)
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as locker:
            locker.execute("BEGIN")
            locker.execute(f"LOCK TABLE {schema}.ttg_progress IN SHARE MODE")  # commits wait
            worker = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "1", "--burst",
                                 "--broker", broker, "--store", store, TTG_LEASE_SECONDS="60")
            wait_until(lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                "'%INSERT INTO ttg_chunks%'").fetchone()[0] == 1, 15, "the first chunk's commit to wait")
            time.sleep(0.2)  # the second chunk is computing (or waits, computed, for that commit)
            os.kill(children(worker.pid)[0], signal.SIGKILL)
            wait_until(lambda: "died on" in worker.stderr, 5, "the supervisor to see the child die")
            terminate_waiting = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                 "wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ttg_chunks%'")
            admin.execute(terminate_waiting)  # the dead child's commit: it never happened
            locker.execute("ROLLBACK")
        assert worker.wait(60) == 0, worker.stderr
        died = [ln for ln in worker.stderr.splitlines() if "died on" in ln]
        assert len(died) == 1 and f"{sweep} [25, 50)" in died[0], died  # the computing chunk only
        assert_exactly_once_in(store, sweep, total)
        with open_store(SETTINGS, store) as s:  # both ran again; the kill was no fault of theirs
            assert s.progress(sweep) == Progress(total, ok=total)
    finally:
        if kind == "amqp":
            procs.cleanup()
            rabbit_vhost(home).delete()


# -- 6. a private server: wrong password, restart mid-sweep ----------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb) on a free port, password auth only.
    As root, the server runs as the ``postgres`` user, as it must."""

    PASSWORD = "right-password"

    def __init__(self) -> None:
        found = sorted(glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
        if not found[-1]:
            raise RuntimeError("initdb is not installed; run scripts/services")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ttg-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
                 f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("ttg: error: "), proc.stderr
    return lines[0]


def test_wrong_password_missing_database_no_server(home: Path, private_pg: PrivatePostgres) -> None:
    wrong = private_pg.url.replace(PrivatePostgres.PASSWORD, "wrong-password")
    line = one_error_line(ttg(home, "list", "--store", wrong, timeout=30))
    assert "refused the credentials" in line and "password" in line
    assert "wrong-password" not in line  # never print the password

    parts = urlsplit(POSTGRES_URL)
    missing = urlunsplit(parts._replace(path="/ttg_no_such_db"))
    line = one_error_line(ttg(home, "list", "--store", missing, timeout=30))
    assert "database ttg_no_such_db does not exist" in line
    assert "create it (createdb ttg_no_such_db) or fix the URL" in line

    port = free_port()
    started = time.monotonic()
    line = one_error_line(ttg(home, "list", "--store", f"postgresql://postgres@127.0.0.1:{port}/test",
                              timeout=30))
    assert time.monotonic() - started < 10, "an unreachable server must fail fast"
    assert f"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}/test" in line

    line = one_error_line(ttg(home, "list", "--store", f"{POSTGRES_URL}?sql_view=maybe"))
    assert "sql_view" in line
    # with the right password it works, and the schema is created on first use
    proc = ttg(home, "list", "--store", private_pg.url, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_server_restart_mid_sweep(home: Path, procs: Procs, private_pg: PrivatePostgres) -> None:
    """pg_ctl stop -m fast (every session terminated), down for a moment, started
    again: the running `ttg run` and its workers reconnect and finish on their own."""
    total = 3000
    url = private_pg.url
    run = procs.start(home, "run", "tests.funcs:sleep_ms", "--range", str(total), "--workers", "2",
                      "--chunk-size", "50", "--store", url, "--name", "restart")

    def done() -> int:
        try:
            with psycopg.connect(url, autocommit=True) as c:
                row = c.execute("SELECT coalesce(sum(n_ok), 0) FROM ttg_progress WHERE sweep = 'restart'"
                                ).fetchone()
            return int(row[0]) if row else 0
        except psycopg.Error:
            return 0

    wait_until(lambda: done() >= total * 0.25, 30, "25% of the sweep")
    before = done()
    assert before < total, "the sweep ended before the restart"
    private_pg.stop("fast")
    time.sleep(0.7)
    private_pg.start()
    assert done() >= before  # nothing committed was lost
    assert run.wait(60) == 0, run.stderr
    assert f"sweep restart: complete, {total}/{total} points" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr
    assert_exactly_once_in(url, "restart", total)
    with open_store(SETTINGS, url) as s:
        assert s.progress("restart") == Progress(total, ok=total)


# -- 7. export of a sweep stored in PostgreSQL, and the SQL view ----------------------------


def test_export_and_sql_view(home: Path, admin: psycopg.Connection[Any], tmp_path: Path) -> None:
    url = postgres_url() + "&sql_view=1"
    total = 300
    ttg(home, "run", "tests.funcs:fail_on_multiples_of_7", "--range", str(total), "--workers", "2",
        "--chunk-size", "40", "--store", url, "--name", "exported", check=True)
    expected = {i: (None if i % 7 == 0 else i, "error" if i % 7 == 0 else "ok") for i in range(total)}
    for suffix in (".parquet", ".csv", ".jsonl"):
        out = tmp_path / f"results{suffix}"
        proc = ttg(home, "results", "exported", "-o", str(out), "--store", url, check=True)
        assert f"wrote {total} rows" in proc.stdout
        rows = table_rows(out)
        assert {r["index"]: (r["value"], r["status"]) for r in rows} == expected, suffix

    # the same results in SQL, one row per index
    view = admin.execute("SELECT index, value, status, error, duration_s >= 0, worker <> '', attempt "
                         "FROM ttg_results WHERE sweep = 'exported' ORDER BY index").fetchall()
    assert [(i, v, s) for i, v, s, *_ in view] == [(i, *expected[i]) for i in range(total)]
    assert all(ok_d and ok_w and a == 1 for *_, ok_d, ok_w, a in view)
    errors = {i: e for i, _, s, e, *_ in view if s == "error"}
    assert errors[14] == "ValueError: 14 is a multiple of 7"
    assert all(e is None for i, _, s, e, *_ in view if s == "ok")
    # values JSON cannot hold still commit, as JSON that it can; the blob keeps them exactly
    odd = [float("nan"), float("-inf"), b"\x00\xff", "nul\x00here", {1: (2, 3)}, 2**63 - 1]
    with open_store(SETTINGS, url) as s:
        sw = new_sweep(s, len(odd))
        assert s.commit(sw.id, ChunkRecords(0, len(odd), odd, [5] * len(odd), "w", 1))
        (back,) = list(s.chunks(sw.id))
    assert back.values[1:] == [float("-inf"), b"\x00\xff", "nul\x00here", {1: [2, 3]}, 2**63 - 1]
    assert admin.execute("SELECT value FROM ttg_results WHERE sweep = %s ORDER BY index", (sw.id,)
                         ).fetchall() == [("NaN",), ("-Infinity",), ("\\x00ff",), ("nul\ufffdhere",),
                                          ({"1": [2, 3]},), (2**63 - 1,)]
    # a commit without sql_view stores no SQL copy: those chunks are not in the view
    with open_store(SETTINGS, postgres_url()) as s:
        sw = new_sweep(s, 10)
        assert s.commit(sw.id, records(0, 10, "w"))
    assert admin.execute("SELECT count(*) FROM ttg_results WHERE sweep = %s", (sw.id,)).fetchone() == (0,)
