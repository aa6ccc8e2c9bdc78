"""Redis-specific faults, with real processes and a private redis-server per test
(restarts and CLIENT KILL must not touch the shared one): a whole worker
SIGKILLed (its chunks are re-leased within one lease period), the server
restarted mid-sweep, every connection killed mid-sweep, a wrong password or no
server at all, forged and replayed messages, and an SQLite store that a
worker on another machine must not create. Each time every index ends with
exactly one record in the Redis store."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import assert_exactly_once_in, ttg
from tests.processes import Proc, Procs, children, done_in, executions, reach, submit, wait_until
from ttg import settings as settings_mod
from ttg.brokers import DeadLetter, open_broker
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec
from ttg.stores import open_store
from ttg.testing import PrivateRedis

LEASE = 2.0
#: How long after its worker died a chunk may wait before another worker has it.
TAKEOVER_BOUND = LEASE + 1.5
SECRET = "s3cret"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server that survives a restart with its data (every write
    is in the append-only file before it is acknowledged)."""
    s = PrivateRedis(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    s.start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture
def admin(server: PrivateRedis) -> Iterator[redis.Redis]:
    """The test's own client, to look into the broker's keys."""
    r = redis.Redis(port=server.port)
    yield r
    r.close()


def start_workers(procs: Procs, home: Path, url: str, sizes: list[int], *extra: str,
                  **env: str) -> list[Proc]:
    return [procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", str(n),
                        "--lease-seconds", str(LEASE), "--broker", url, *extra, **env) for n in sizes]


def wait_all(workers: list[Proc], timeout: float) -> None:
    for w in workers:
        assert w.wait(timeout) == 0, w.stderr


def consumer_pid(name: str) -> int:
    """A child's consumer name is HOST-PID (worker/pipe.py)."""
    return int(name.rpartition("-")[2])


def leases_of(admin: redis.Redis, sweep_id: str, pids: set[int]) -> dict[bytes, str]:
    """Entry id -> consumer of the pending entries held by the processes ``pids``."""
    rows = admin.xpending_range(f"ttg:q:{sweep_id}", "w", "-", "+", 1000)
    return {r["message_id"]: r["consumer"].decode() for r in rows
            if consumer_pid(r["consumer"].decode()) in pids}


# -- 1. a whole worker SIGKILLed: its chunks come back within one lease period ------


def test_sigkill_a_whole_worker_chunks_taken_over_within_a_lease(home: Path, procs: Procs,
                                                                  server: PrivateRedis,
                                                                  admin: redis.Redis) -> None:
    """Three burst workers; at 30% one whole worker (supervisor and children) is
    SIGKILLed while it holds chunks. Redis does not notice the dead connection:
    the chunks stay leased until a live worker reclaims them once idle for one
    lease period (XAUTOCLAIM), as attempt 2. A chunk the victim had committed
    (its children commit one chunk while computing the next) and not yet acked
    is acked without computing: its record stays attempt 1."""
    total = 3000
    sweep = submit(home, "tests.funcs:sleep_ms", "--range", str(total), "--chunk-size", "50",
                   "--broker", server.url)
    workers = start_workers(procs, home, server.url, [2, 1, 2])
    reach(server.url, sweep, total * 0.3, workers)

    # freeze a worker that holds chunks (SIGSTOP: nothing moves while we look), then kill it
    victim, held, killed_at = None, {}, 0.0
    for _ in range(50):
        for w in (workers[0], workers[2], workers[1]):
            pids = set(children(w.pid))
            w.signal_group(signal.SIGSTOP)
            held = leases_of(admin, sweep, pids)
            if held:
                killed_at = time.monotonic()
                w.signal_group(signal.SIGKILL)
                victim = w
                break
            w.signal_group(signal.SIGCONT)
        if victim is not None:
            break
        time.sleep(0.01)
    assert victim is not None, "no worker held a lease at 30% progress"
    assert victim.wait(5) == -signal.SIGKILL
    entries = {e[0]: e[1] for e in admin.xrange(f"ttg:q:{sweep}") if e[0] in held}
    lost = [Chunk(int(f[b"s"]), int(f[b"e"])) for f in entries.values()]
    assert len(lost) == len(held)
    with open_store(settings_mod.load(environ={}), server.url) as s:  # committed, not yet acked?
        committed = {c for c in lost if not s.uncommitted(sweep, c)}

    # the dead worker's entries stay pending until a live worker reclaims them
    def taken_over() -> bool:
        still = leases_of(admin, sweep, {consumer_pid(c) for c in held.values()})
        return not set(still) & set(held)

    wait_until(taken_over, TAKEOVER_BOUND + 5, "the dead worker's chunks to be re-leased", every=0.005)
    takeover = time.monotonic() - killed_at
    wait_all([w for w in workers if w is not victim], 30)
    finished = time.monotonic() - killed_at
    print(f"\nkilled a worker holding {len(lost)} chunks ({lost}); re-leased after {takeover:.2f} s, "
          f"sweep complete {finished:.2f} s after the kill (lease {LEASE:g} s)")
    assert takeover <= TAKEOVER_BOUND, f"re-leased only after {takeover:.2f} s"

    assert_exactly_once_in(server.url, sweep, total)
    s = open_store(settings_mod.load(environ={}), server.url)
    try:
        attempts = {(r.start, r.stop): r.attempt for r in s.chunks(sweep)}
        assert s.progress(sweep).ok == total
    finally:
        s.close()
    # the lost chunks ran again as attempt 2 (a lost lease counts as a failed attempt), but for
    # those the victim had committed and not yet acked: they were acked without computing
    assert {c: attempts[(c.start, c.stop)] for c in lost} == {c: 1 if c in committed else 2 for c in lost}
    assert sorted(attempts.values()).count(2) == len(lost) - len(committed)


# -- 2. the server restarted mid-sweep ------------------------------------------------


def test_server_restart_mid_sweep(home: Path, procs: Procs, server: PrivateRedis) -> None:
    """SIGTERM (Redis shuts down cleanly, its AOF complete), start it again on the
    same port and directory: the running `ttg run` and `ttg worker` reconnect
    (redis-py backs off for about 15 s) and finish the sweep on their own."""
    total = 400
    url = server.url
    run = procs.start(home, "run", "tests.funcs:slow", "--range", str(total), "--chunk-size", "10",
                      "--workers", "2", "--broker", url, TTG_LEASE_SECONDS=str(LEASE))
    sweep = wait_until(lambda: _only_sweep(url), 20, "the sweep in the store")
    (extra,) = start_workers(procs, home, url, [1])
    reach(url, sweep, total * 0.3, [run, extra])

    before = done_in(url, sweep)
    down = time.monotonic()
    server.stop()
    time.sleep(0.8)
    server.start()
    outage = time.monotonic() - down
    assert done_in(url, sweep) >= before  # nothing committed was lost

    assert run.wait(60) == 0, run.stderr
    assert extra.wait(30) == 0, extra.stderr
    print(f"\nserver down for {outage:.2f} s at {before}/{total}; run and worker finished on their own")
    assert f"sweep {sweep}: complete, {total}/{total} points" in run.stdout, run.stdout
    assert_exactly_once_in(url, sweep, total)
    assert "Traceback" not in run.stderr + extra.stderr


def test_sigterm_while_the_server_is_down_stops_within_one_reconnect_wait(home: Path, procs: Procs,
                                                                         server: PrivateRedis) -> None:
    """The server goes down while a worker's two children compute, and the worker is
    told to stop (SIGTERM, grace 1 s). Releasing what the children held cannot work:
    the first try waits out the client's reconnect backoff (about 15 s), then the
    worker gives up on the others, which would each wait as long; their leases expire.
    Once the server is back, another worker completes the sweep exactly once."""
    total = 400
    url = server.url
    sweep = submit(home, "tests.funcs:slow", "--range", str(total), "--chunk-size", "20", "--broker", url)
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--lease-seconds",
                         str(LEASE), "--broker", url, TTG_GRACE_SECONDS="1")
    reach(url, sweep, 60, [worker])
    server.stop()
    asked = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0, worker.stderr
    took = time.monotonic() - asked
    print(f"\nstopped {took:.1f} s after SIGTERM with the server down")
    assert took < 25, worker.stderr
    assert "not released: the broker cannot be reached" in worker.stderr, worker.stderr

    server.start()
    (finisher,) = start_workers(procs, home, url, [2])
    wait_all([finisher], 60)
    assert_exactly_once_in(url, sweep, total)


def test_server_down_and_everything_killed_same_command_completes(home: Path, tmp_path: Path, procs: Procs,
                                                                  server: PrivateRedis) -> None:
    """The server goes down and the user gives up (every process SIGKILLed while it
    is down, with chunks in flight); once it is back, the same command again
    completes the sweep exactly once, without recomputing finished chunks."""
    total = 2000
    url = server.url
    counter = tmp_path / "counter"
    args = ("run", "tests.funcs:counted", "--range", str(total), "--chunk-size", "50", "--workers", "2",
            "--broker", url)
    env = {"TTG_LEASE_SECONDS": str(LEASE), "TTG_TEST_COUNTER": str(counter)}
    run = procs.start(home, *args, **env)
    sweep = wait_until(lambda: _only_sweep(url), 20, "the sweep in the store")
    reach(url, sweep, total * 0.3, [run])
    server.stop()
    run.kill_group()
    server.start()
    assert done_in(url, sweep) < total

    again = ttg(home, *args, timeout=60, **env)
    assert again.returncode == 0, again.stderr
    assert f"sweep {sweep}: complete, {total}/{total} points" in again.stdout
    assert_exactly_once_in(url, sweep, total)
    runs = executions(counter)
    assert set(runs) == set(range(total))
    twice = sorted(i for i, n in runs.items() if n > 1)
    # only the two chunks in flight when the server went down ran again
    assert len(twice) <= 2 * 50 and max(runs.values()) <= 2, twice


# -- 3. every client connection killed, several times ------------------------------------


def test_client_kill_mid_sweep(home: Path, procs: Procs, server: PrivateRedis, admin: redis.Redis) -> None:
    total = 600
    url = server.url
    sweep = submit(home, "tests.funcs:slow", "--range", str(total), "--chunk-size", "10", "--broker", url)
    workers = start_workers(procs, home, url, [2, 1])
    reach(url, sweep, total * 0.15, workers)
    kills = []
    for _ in range(5):
        kills.append(int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")))
        time.sleep(0.3)
    assert done_in(url, sweep) < total, "the sweep ended before the last kill; make it longer"
    wait_all(workers, 60)
    print(f"\nCLIENT KILL closed {kills} connections")
    assert all(k >= 2 for k in kills), kills  # each kill hit the workers (3 children, 2 clients each)
    assert_exactly_once_in(url, sweep, total)


# -- 4. wrong password, no password, no server ----------------------------------------------


@pytest.mark.parametrize("case", ["wrong password", "no password", "nothing listens"])
def test_unreachable_or_refused_fails_fast(home: Path, tmp_path: Path, case: str) -> None:
    with PrivateRedis(tmp_path / "redis", "--requirepass", "secret") as server:
        url = {"wrong password": f"redis://:wrong@127.0.0.1:{server.port}/0",
               "no password": f"redis://127.0.0.1:{server.port}/0",
               "nothing listens": "redis://127.0.0.1:1/0"}[case]
        for cmd in (("submit", "tests.funcs:square", "--range", "10"),
                    ("worker", "--allow", "tests.funcs", "--burst")):
            started = time.monotonic()
            proc = ttg(home, *cmd, "--broker", url, timeout=60)
            took = time.monotonic() - started
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, proc.stderr
            assert len(lines) == 1 and lines[0].startswith("ttg: error: "), proc.stderr
            assert took < 10, f"{cmd[0]} took {took:.1f} s to fail"
            assert "wrong" not in lines[0], "the password leaked into the message"
            if case == "nothing listens":
                assert "cannot reach Redis at redis://127.0.0.1:1/0" in lines[0]
                assert "check that the server runs" in lines[0]
            else:
                assert f"Redis at redis://127.0.0.1:{server.port}/0 refused the credentials" in lines[0]
                assert "check the user and password in the URL" in lines[0]
        with redis.Redis(port=server.port, password="secret") as r:
            assert not r.keys("*")  # nothing written


# -- 5. signed messages: forged, tampered, replayed, not allowed, garbage ---------------------


def test_forged_and_replayed_messages_are_dead_lettered(home: Path, tmp_path: Path, procs: Procs,
                                                        server: PrivateRedis, admin: redis.Redis) -> None:
    url = server.url
    counter = tmp_path / "counter"
    env = {"TTG_SECRET": SECRET, "TTG_TEST_COUNTER": str(counter)}
    a = submit(home, "tests.funcs:counted", "--range", "100", "--chunk-size", "25", "--broker", url, **env)
    b = submit(home, "tests.funcs:counted", "--range", "1000:1050", "--chunk-size", "10", "--broker", url,
               **env)
    store = open_store(settings_mod.load(environ={}), url)
    sweep_a = store.sweep(a)
    store.close()
    signed, unsigned = Codec(SECRET), Codec("")

    tampered = bytearray(signed.encode(sweep_a.task(Chunk(5, 10))))
    at = tampered.index(b"counted")
    tampered[at + 6] ^= 0x01  # "counted" -> "countee": still a well-formed message
    not_allowed = dict(sweep_a.task(Chunk(10, 15)), fn="tests.funcs:counted_slow")
    (replayed,) = [f[b"b"] for _, f in admin.xrange(f"ttg:q:{a}") if f[b"s"] == b"0" and f[b"e"] == b"25"]
    forged: list[tuple[str, Chunk, bytes, str]] = [
        (a, Chunk(0, 5), unsigned.encode(sweep_a.task(Chunk(0, 5))), "unsigned message"),
        (a, Chunk(5, 10), bytes(tampered), "signature does not match"),
        (a, Chunk(15, 20), b"\xc1 not msgpack at all", "malformed message"),
        (b, Chunk(0, 25), replayed, f"message names sweep {a} [0, 25) but was queued as {b} [0, 25)"),
    ]
    for sweep, chunk, body, _ in forged:
        _inject(admin, sweep, chunk, body)
    # signed, but naming a function these workers may not run: left for another worker
    _inject(admin, a, Chunk(10, 15), signed.encode(not_allowed))

    workers = [procs.start(home, "worker", "--allow", "tests.funcs:counted", "--burst", "--workers", "1",
                           "--broker", url, **env) for _ in range(2)]
    wait_all(workers, 60)

    # nothing forged ran: each legitimate index ran once, and nothing else did
    assert executions(counter) == dict.fromkeys([*range(100), *range(1000, 1050)], 1)
    assert_exactly_once_in(url, a, 100)
    assert_exactly_once_in(url, b, 50)
    dead = {s: {(d.chunk.start, d.chunk.stop): d.reason for d in _dead(url, s)} for s in (a, b)}
    for sweep, chunk, _, reason in forged:
        assert reason in dead[sweep].pop((chunk.start, chunk.stop)), dead
    assert dead == {a: {}, b: {}}
    assert {s: _stats(url, s) for s in (a, b)} == {a: (1, 0, 3), b: (0, 0, 1)}  # (queued, leased, dead)


def test_signing_is_checked_only_by_workers_that_have_the_secret(home: Path, tmp_path: Path, procs: Procs,
                                                                 server: PrivateRedis) -> None:
    """A worker with another secret leaves every signed chunk to other workers (it
    may be the misconfigured one); a worker with no secret does not check
    signatures at all and runs them."""
    url = server.url
    counter = tmp_path / "counter"
    args = ("tests.funcs:counted", "--range", "60", "--chunk-size", "20", "--broker", url)
    sweep = submit(home, *args, TTG_SECRET=SECRET)
    other = start_workers(procs, home, url, [1], TTG_SECRET="another", TTG_TEST_COUNTER=str(counter))
    wait_all(other, 60)
    assert not counter.exists()
    assert not _dead(url, sweep) and _stats(url, sweep) == (3, 0, 0)
    plain = start_workers(procs, home, url, [1], TTG_TEST_COUNTER=str(counter))
    wait_all(plain, 30)
    assert executions(counter) == dict.fromkeys(range(60), 1)
    assert_exactly_once_in(url, sweep, 60)


# -- 6. the embedded SQLite store with a networked broker ---------------------------------------


def test_worker_does_not_create_an_sqlite_store_beside_a_redis_broker(home: Path, tmp_path: Path,
                                                                      procs: Procs,
                                                                      server: PrivateRedis) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "results.db"
    proc = ttg(home, "worker", "--allow", "tests.funcs", "--burst", "--broker", server.url,
               "--store", f"sqlite://{missing}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttg: error: "), proc.stderr
    assert "serves one machine only; use a networked store (redis://...)" in lines[0]
    assert not (tmp_path / "nonexistent").exists()

    # on the machine that submitted (the file exists) a Redis broker and an SQLite store work
    store = f"sqlite://{home / 'results.db'}"
    sweep = submit(home, "tests.funcs:square", "--range", "200", "--chunk-size", "20",
                   "--broker", server.url, "--store", store)
    workers = start_workers(procs, home, server.url, [2], "--store", store)
    wait_all(workers, 30)
    assert_exactly_once_in(store, sweep, 200)


# -- helpers ---------------------------------------------------------------------------------


def _inject(admin: redis.Redis, sweep_id: str, chunk: Chunk, body: bytes) -> None:
    """Queue ``body`` straight into a sweep's stream, as the broker's submit would."""
    member = f"{chunk.start}:{chunk.stop}"
    assert admin.sadd(f"ttg:k:{sweep_id}", member) == 1, f"{member} collides with a real chunk"
    admin.xadd(f"ttg:q:{sweep_id}", {"s": chunk.start, "e": chunk.stop, "b": body, "f": 0, "l": "", "p": 0})


def _dead(url: str, sweep_id: str) -> list[DeadLetter]:
    with open_broker(settings_mod.load(environ={}), url) as broker:
        return broker.dead_letters(sweep_id)


def _stats(url: str, sweep_id: str) -> tuple[int, int, int]:
    with open_broker(settings_mod.load(environ={}), url) as broker:
        q = broker.stats(sweep_id)
    return q.queued, q.leased, q.dead


def _only_sweep(url: str) -> str | None:
    r = redis.Redis.from_url(url)
    try:
        ids = r.zrange("ttg:sweeps", 0, -1)
    except redis.ConnectionError:
        return None
    finally:
        r.close()
    return ids[0].decode() if len(ids) == 1 else None


def test_broker_that_lost_everything_is_refilled_by_the_running_client(home: Path, tmp_path: Path,
                                                                       procs: Procs) -> None:
    """A Redis without persistence restarts empty mid-sweep: the queue is gone.
    The running `ttg run` sees results missing with nothing queued or leased,
    queues those ranges again, and finishes: every index exactly once."""
    volatile = PrivateRedis(tmp_path / "volatile", "--appendonly", "no")
    volatile.start()
    try:
        total = 600
        store = f"sqlite://{home / 'results.db'}"
        run = procs.start(home, "run", "tests.funcs:slow", "--range", str(total), "--chunk-size", "10",
                          "--workers", "2", "--broker", volatile.url, "--store", store,
                          TTG_LEASE_SECONDS=str(LEASE))
        def registered() -> str | None:
            if not (home / "results.db").exists():
                return None
            s = open_store(settings_mod.load(environ={}), store)
            try:
                infos = s.sweeps()
            finally:
                s.close()
            return infos[0].sweep.id if infos else None

        sweep = wait_until(registered, 20, "the sweep in the store")
        reach(store, sweep, total * 0.3, [run])
        volatile.kill()
        volatile.start()  # same port, nothing in it
        assert run.wait(90) == 0, run.stderr
        assert f"sweep {sweep}: complete, {total}/{total} points" in run.stdout, run.stdout
        assert "queueing them again" in run.stderr
        assert_exactly_once_in(store, sweep, total)
    finally:
        volatile.kill()
