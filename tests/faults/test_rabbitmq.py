"""RabbitMQ-specific faults, with real processes and a virtual host of its own per
test (deleted at teardown, whatever happened): a whole worker SIGKILLed (its
chunks come back at once, not after a lease period), a worker's connection
closed by the server mid-chunk, a parameter that crashes every time, messages
that are not TTG's or are signed with another secret, a wrong password or no
server, `ttg run` killed and run again, a worker moving to another sweep, and a
chunk that outlives the server's ``consumer_timeout``. Each time every index ends
with exactly one record (or, moving sweeps, no chunk is counted an attempt)."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.conftest import (
    assert_exactly_once_in,
    empty_postgres,
    postgres_url,
    rabbit_vhost,
    sweep_id_from,
    ttg,
)
from tests.processes import Proc, Procs, children, executions, submit, sweep_in, wait_until
from tests.processes import reach as reach_in
from tests.proxy import Proxy
from ttg import settings as settings_mod
from ttg.brokers import open_broker
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec
from ttg.stores import open_store
from ttg.testing import RabbitVhost

#: Long on purpose: with RabbitMQ nothing should wait for a lease to expire.
LONG_LEASE = 30.0
#: How long after its worker died a chunk may wait before another worker has committed it.
TAKEOVER_BOUND = 3.0
SECRET = "s3cret"


@pytest.fixture
def vhost(home: Path, procs: Procs) -> Iterator[RabbitVhost]:
    """The test's own virtual host; at teardown its processes are killed first, then it is deleted."""
    home.mkdir(parents=True, exist_ok=True)
    v = rabbit_vhost(home)
    v.delete()  # a leftover of an interrupted run
    v.create()
    try:
        yield v
    finally:
        procs.cleanup()
        v.delete()


@pytest.fixture
def admin(vhost: RabbitVhost) -> Iterator[Any]:
    """The test's own AMQP connection to its virtual host (to look into and write to queues)."""
    conn = pika.BlockingConnection(pika.URLParameters(vhost.url))
    yield conn
    if conn.is_open:
        conn.close()


def store_url(home: Path) -> str:
    return f"sqlite://{home / 'results.db'}"


def start_workers(procs: Procs, home: Path, url: str, sizes: list[int], *extra: str,
                  **env: str) -> list[Proc]:
    return [procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", str(n),
                        "--broker", url, "--store", store_url(home), *extra, **env) for n in sizes]


def wait_all(workers: list[Proc], timeout: float) -> None:
    for w in workers:
        assert w.wait(timeout) == 0, w.stderr
        assert "Traceback" not in w.stderr, w.stderr


def done(home: Path, sweep_id: str) -> int:
    s = open_store(settings_mod.load(environ={}), store_url(home))
    try:
        return s.progress(sweep_id).done
    finally:
        s.close()


def records(home: Path, sweep_id: str) -> dict[tuple[int, int], Any]:
    """(start, stop) -> committed record."""
    s = open_store(settings_mod.load(environ={}), store_url(home))
    try:
        return {(r.start, r.stop): r for r in s.chunks(sweep_id)}
    finally:
        s.close()


def reach(home: Path, sweep_id: str, points: float, running: list[Proc], timeout: float = 30) -> None:
    """Wait until ``points`` points are done; fail at once if every process that should do them exited."""
    def check() -> bool:
        if done(home, sweep_id) >= points:
            return True
        if all(p.popen.poll() is not None for p in running):
            raise AssertionError("every process exited before the sweep got going:\n"
                                 + "\n".join(f"{p.args}: {p.popen.returncode}\n{p.stderr}" for p in running))
        return False

    wait_until(check, timeout, f"{points:g} points of {sweep_id}", every=0.01)


def rabbitmqctl(*args: str) -> str:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def connections(vhost: str) -> dict[int, str]:
    """Client port -> connection pid of the virtual host's AMQP connections (read from the server)."""
    out = rabbitmqctl("list_connections", "pid", "peer_port", "vhost", "-q", "--no-table-headers")
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return {int(port): pid for pid, port, v in rows if v == vhost}


def unacked(vhost: str) -> dict[str, int]:
    """Connection pid -> deliveries it holds unacknowledged (its leases), in the virtual host."""
    out = rabbitmqctl("list_channels", "connection", "messages_unacknowledged", "vhost", "-q",
                      "--no-table-headers")
    held: dict[str, int] = {}
    for line in out.splitlines():
        if line.strip():
            conn, n, v = line.split("\t")
            if v == vhost:
                held[conn] = held.get(conn, 0) + int(n)
    return held


def amqp_ports(pid: int) -> set[int]:
    """Local ports of the process's TCP connections to port 5672 (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == 5672:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def ready(admin: Any, queue: str) -> int:
    ch = admin.channel()
    try:
        return int(ch.queue_declare(queue, passive=True).method.message_count)
    finally:
        ch.close()


def dead(url: str, sweep_id: str) -> dict[tuple[int, int], str]:
    with open_broker(settings_mod.load(environ={}), url) as broker:
        return {(d.chunk.start, d.chunk.stop): d.reason for d in broker.dead_letters(sweep_id)}


# -- 1. a whole worker SIGKILLed: RabbitMQ gives its chunks back at once ---------------------


def test_sigkill_a_whole_worker_its_chunks_come_back_at_once(home: Path, procs: Procs, vhost: RabbitVhost,
                                                             admin: Any) -> None:
    """Leases live with the connection: when the kernel closes a killed worker's socket,
    RabbitMQ requeues its deliveries at once, whatever the lease period (30 s here)."""
    total, url = 3000, vhost.url
    sweep = submit(home, "tests.funcs:sleep_ms", "--range", str(total), "--chunk-size", "50",
                   "--broker", url, "--store", store_url(home))
    workers = start_workers(procs, home, url, [2, 1, 2], "--lease-seconds", str(LONG_LEASE))
    reach(home, sweep, total * 0.3, workers)

    # freeze every worker (nothing moves while we look), find the one holding the most
    # chunks, kill it, and let the others go on once its chunks are back in the queue
    queue = f"ttg.q.{sweep}"
    for w in workers:
        w.signal_group(signal.SIGSTOP)
    victim: Proc | None = None
    try:
        held, ports = unacked(vhost.name), connections(vhost.name)
        per_worker = {w.pid: sum(held.get(ports.get(p, ""), 0) for p in amqp_ports(w.pid)) for w in workers}
        victim = max(workers, key=lambda w: per_worker[w.pid])
        in_flight = per_worker[victim.pid]
        assert in_flight > 0, f"no worker held a chunk at 30%: {per_worker}"
        queued = ready(admin, queue)
        killed_at = time.monotonic()
        victim.signal_group(signal.SIGKILL)
        wait_until(lambda: ready(admin, queue) == queued + in_flight, 5, "the chunks back in the queue",
                   every=0.002)
        requeued = time.monotonic() - killed_at
    finally:
        for w in workers:
            if w is not victim:
                w.signal_group(signal.SIGCONT)
    assert victim is not None and victim.wait(5) == -signal.SIGKILL
    others = [w for w in workers if w is not victim]

    # when did each chunk first appear in the store (seconds after the kill)?
    first_seen: dict[tuple[int, int], float] = {}
    end = time.monotonic() + 30
    while time.monotonic() < end:
        running = any(w.popen.poll() is None for w in others)
        for key in records(home, sweep):
            first_seen.setdefault(key, time.monotonic() - killed_at)
        if not running:
            break
        time.sleep(0.01)
    wait_all(others, 5)

    assert_exactly_once_in(store_url(home), sweep, total)
    recs = records(home, sweep)
    # a chunk that came back unacknowledged runs again as attempt 2 (a lost lease counts)...
    lost = sorted(k for k, r in recs.items() if r.attempt == 2)
    # ...unless the victim committed it just before dying: then it is acked without running again
    assert 0 < len(lost) <= in_flight and set(r.attempt for r in recs.values()) == {1, 2}
    takeover = max(first_seen[k] for k in lost)
    print(f"\nkilled a worker holding {in_flight} chunk(s): back in the queue after {requeued * 1000:.0f} "
          f"ms, {lost} committed by the others {takeover:.2f} s after the kill (lease {LONG_LEASE:g} s)")
    assert requeued < 1.0, f"RabbitMQ requeued the chunks only after {requeued:.2f} s"
    assert takeover < TAKEOVER_BOUND < LONG_LEASE, f"committed only {takeover:.2f} s after the kill"


def test_prefetched_chunks_survive_a_dead_child_and_go_back_uncounted_at_sigterm(
        home: Path, tmp_path: Path, procs: Procs, vhost: RabbitVhost, admin: Any) -> None:
    """The supervisor consumes with a prefetch of four chunks per child, so while its
    children compute it (or the child, which leases one ahead) already holds their
    next chunks. A child killed then loses only its running chunk (attempt 2
    elsewhere); the one it held ahead goes back uncounted, the prefetched ones go to
    the other child. At SIGTERM the chunks nobody started go back to the queue
    without an attempt counted. Every index ends with exactly one record."""
    total, url = 6000, vhost.url  # ~3 s of work on 2 children: plenty is left at the SIGTERM
    sweep = submit(home, "tests.funcs:sleep_ms", "--range", str(total), "--chunk-size", "20",
                   "--broker", url, "--store", store_url(home))
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--grace", "30",
                         "--broker", url, "--store", store_url(home))
    reach(home, sweep, total * 0.3, [worker])
    held = wait_until(lambda: (n := sum(unacked(vhost.name).values())) >= 8 and n, 5,
                      "two running chunks and six waiting")
    assert held == 8, f"the worker held {held} deliveries (2 children: 2 running + 6 waiting)"
    for _ in range(5):  # killed between two chunks (committing one) it counts no attempt: again
        os.kill(children(worker.pid)[0], signal.SIGKILL)
        deadline = time.monotonic() + 2
        while "died on" not in worker.stderr and time.monotonic() < deadline:
            time.sleep(0.02)
        if "died on" in worker.stderr:
            break
    assert "died on" in worker.stderr, f"no child died mid-chunk in 5 tries:\n{worker.stderr}"

    worker.signal_group(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    # nothing is held any more; the prefetched chunks went back without an attempt counted,
    # which the next worker's attempts show
    assert sum(unacked(vhost.name).values()) == 0
    assert ready(admin, f"ttg.q.{sweep}") > 0

    finisher = procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", "--burst",
                           "--broker", url, "--store", store_url(home))
    assert finisher.wait(60) == 0, finisher.stderr
    assert_exactly_once_in(store_url(home), sweep, total)
    recs = records(home, sweep)
    tries = sorted(r.attempt for r in recs.values())
    again = sorted((r.start, r.stop, r.worker) for r in recs.values() if r.attempt > 1)
    # only the killed child's chunk
    assert tries.count(2) == 1 and set(tries) == {1, 2}, (again, worker.stderr, finisher.stderr)


def test_long_chunks_wait_in_the_queue_not_at_a_busy_worker(home: Path, procs: Procs,
                                                          vhost: RabbitVhost, admin: Any) -> None:
    """Chunks of 1.5 s: once one has run past pace.LONG_SECONDS, the worker stops
    consuming (the chunks pushed to it go back uncounted), its child takes one chunk
    at a time, when it asks, and commits a long chunk before asking (on PostgreSQL,
    where short chunks commit beside the next one), so that it is acked at once. So
    no chunk waits at a busy worker that another could start: a second worker
    started later gets its share, and every index ends with one record, each got at
    its first attempt."""
    size, n = 75, 8  # tests.funcs:slow sleeps 20 ms per point: 1.5 s per chunk
    schema = f"ttg_long_{uuid.uuid4().hex[:8]}"
    empty_postgres(schema)
    url, store = vhost.url, postgres_url(schema)
    sweep = submit(home, "tests.funcs:slow", "--range", str(size * n), "--chunk-size", str(size),
                   "--broker", url, "--store", store)

    def worker(**env: str) -> Proc:
        return procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "1",
                           "--broker", url, "--store", store, **env)

    first = worker(TTG_LOG_LEVEL="INFO")
    reach_in(store, sweep, size, [first])  # its first chunk is committed: chunks are long
    counts: list[int] = []  # (acked a moment after its commit: read until then, a few times at most)
    wait_until(lambda: counts.append(sum(unacked(vhost.name).values())) or counts[-1] <= 1 or len(counts) > 3,
               30, "the worker's deliveries")
    held, queued = counts[-1], ready(admin, f"ttg.q.{sweep}")
    assert held <= 1, f"a worker with one child held {counts} chunks (computing, committed and not acked)"
    assert queued >= n - 2 - held, f"only {queued} chunks left in the queue"
    assert "leasing one at a time" in first.stderr, first.stderr
    second = worker()
    wait_all([first, second], 60)
    assert_exactly_once_in(store, sweep, size * n)
    with open_store(settings_mod.load(environ={}), store) as s:
        recs = list(s.chunks(sweep))
    by_second = sum(1 for r in recs if f"-{second.pid}-" in r.worker)
    assert by_second >= 2, f"the second worker computed {by_second} of {n} chunks:\n{second.stderr}"
    assert {r.attempt for r in recs} == {1}, sorted((r.start, r.attempt) for r in recs)


# -- 2. the server closes a worker's connection mid-chunk ----------------------------------------


def test_connection_closed_by_the_server_mid_chunk(home: Path, tmp_path: Path, procs: Procs,
                                                   vhost: RabbitVhost) -> None:
    """`rabbitmqctl close_connection`: the supervisor reconnects; the chunks its children were
    computing went back to the queue with the connection, so the heartbeat finds their leases
    lost and stops those children (or a child that finished first has its ack ignored), and
    the sweep completes with one record per index."""
    # 24 chunks of 1 s: more than the other worker can hold (4 per child), so the victim
    # finds work after reconnecting
    total, size, url = 480, 20, vhost.url
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted_slow", "--range", str(total), "--chunk-size", str(size),
                   "--broker", url, "--store", store_url(home))
    workers = start_workers(procs, home, url, [2, 2], "--lease-seconds", "1.5",
                            TTG_TEST_COUNTER=str(counter))
    victim = workers[0]
    (port,) = wait_until(lambda: amqp_ports(victim.pid), 10, "the worker's connection")
    conn = wait_until(lambda: connections(vhost.name).get(port), 10, "the connection on the server")
    assert conn is not None
    # four children a quarter into their first chunks (rabbitmqctl takes about half a second more)
    wait_until(lambda: sum(executions(counter).values()) >= size, 30, "the first chunks to start")
    rabbitmqctl("close_connection", conn, "closed by test_rabbitmq")
    ran = executions(counter)
    kids = set(children(victim.pid))
    reconnected = wait_until(lambda: amqp_ports(victim.pid) - {port}, 10, "a new connection")
    assert set(connections(vhost.name)) & reconnected, "the new connection is not in the virtual host"
    while victim.popen.poll() is None:
        kids.update(children(victim.pid))
        time.sleep(0.02)
    wait_all(workers, 30)

    assert "RabbitMQ connection lost" in victim.stderr, victim.stderr
    assert_exactly_once_in(store_url(home), sweep, total)
    recs = records(home, sweep)
    stopped = re.findall(r"lost its lease on \S+ \[(\d+), \d+\)", victim.stderr)
    runs = executions(counter)
    twice = sorted(i for i, n in runs.items() if n == 2)
    again = sorted({i // size * size for i in twice})
    print(f"\nclosed a worker's connection at {sum(ran.values())}/{total} points: children stopped for a "
          f"lost lease on chunks {stopped}; chunks that ran twice: {again}; "
          f"attempts > 1: {sorted((k[0], r.attempt) for k, r in recs.items() if r.attempt > 1)}")
    assert set(runs) == set(range(total)) and max(runs.values()) <= 2
    # only the victim's chunks in flight at the close (two children: two chunks) ran twice
    assert len({i // size for i in twice}) <= 2, twice
    # the victim went on working on its new connection: it committed chunks nobody had started at the close
    later = [k for k, r in recs.items()
             if not ran.keys() & set(range(*k)) and int(r.worker.rpartition("-")[2]) in kids]
    assert later, f"the worker did nothing after reconnecting: {victim.stderr}"


# -- 3. a parameter that crashes every time --------------------------------------------------------


def test_segfault_isolated_and_dead_lettered(home: Path, vhost: RabbitVhost) -> None:
    url, store = vhost.url, store_url(home)
    run = ttg(home, "run", "tests.funcs:segfault_on_13", "--range", "40", "--chunk-size", "10",
              "--max-attempts", "2", "--workers", "2", "--broker", url, "--store", store, timeout=60)
    assert run.returncode == 0, run.stderr
    sweep = sweep_id_from(run.stdout)
    assert f"sweep {sweep}: complete, 40/40 points" in run.stdout
    assert "ok 39  error 0  crashed 1  timeout 0" in run.stdout
    assert_exactly_once_in(store, sweep, 40)
    statuses = {i: r.status(i - r.start) for r in records(home, sweep).values()
                for i in range(r.start, r.stop)}
    assert statuses == {i: "crashed" if i == 13 else "ok" for i in range(40)}

    errors = ttg(home, "errors", sweep, "--broker", url, "--store", store, check=True).stdout
    reason = "the process was killed by SIGSEGV (segmentation fault) at index 13 (after 2 attempts)"
    assert f"13\tcrashed\tcrashed: {reason}" in errors, errors
    assert f"dead-letter [13, 14): {reason}" in errors, errors
    assert dead(url, sweep) == {(13, 14): reason}


# -- 4. messages that are not TTG's, or signed with another secret ----------------------------------


def test_foreign_and_wrongly_signed_messages_are_dead_lettered(home: Path, tmp_path: Path, procs: Procs,
                                                               vhost: RabbitVhost, admin: Any) -> None:
    url, store = vhost.url, store_url(home)
    counter = tmp_path / "counter"
    env = {"TTG_SECRET": SECRET, "TTG_TEST_COUNTER": str(counter)}
    sweep_id = submit(home, "tests.funcs:counted", "--range", "100", "--chunk-size", "25", "--broker", url,
                      "--store", store, **env)
    s = open_store(settings_mod.load(environ={}), store)
    sweep = s.sweep(sweep_id)
    s.close()
    queue = f"ttg.q.{sweep_id}"
    ch = admin.channel()

    def inject(body: bytes, headers: dict[str, Any] | None) -> None:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, headers=headers))

    inject(b"\xc1 not from TTG at all", {"ttg-start": 0, "ttg-stop": 5})
    inject(Codec("another").encode(sweep.task(Chunk(5, 10))), {"ttg-start": 5, "ttg-stop": 10})
    inject(b"no headers either", None)  # no chunk at all: must not stop the worker
    ch.close()

    workers = start_workers(procs, home, url, [1, 1], **env)
    wait_all(workers, 30)

    assert executions(counter) == dict.fromkeys(range(100), 1)  # nothing foreign ran
    assert_exactly_once_in(store, sweep_id, 100)
    reasons = dead(url, sweep_id)
    assert set(reasons) == {(0, 5), (5, 10)}, reasons
    assert reasons[(0, 5)].startswith("malformed message"), reasons
    assert reasons[(5, 10)].startswith("message signature does not match"), reasons
    assert ready(admin, f"ttg.dead.{sweep_id}") == 3  # the one with no range is set aside too
    stderr = "".join(w.stderr for w in workers)
    assert "not a TTG chunk message: no valid ttg-start/ttg-stop headers" in stderr
    errors = ttg(home, "errors", sweep_id, "--broker", url, "--store", store, check=True).stdout
    assert "dead-letter [0, 5): malformed message" in errors
    assert "dead-letter [5, 10): message signature does not match" in errors


def test_a_child_asking_for_work_while_its_worker_stops_is_answered_at_once(vhost: RabbitVhost) -> None:
    """A child's ack and request for its next chunk can reach the supervisor after
    SIGTERM: the ack is done and the request answered with no chunk at once (the
    child then sees "stop" and exits), instead of waiting for work until the grace
    period ends. Driven here on the supervisor's proxy server over a real broker, with
    a real pipe."""
    import mmap
    from multiprocessing import Pipe

    from ttg.worker.protocol import Call, Reply
    from ttg.worker.proxy import AckAndLeaseCall, ProxyServer
    from ttg.worker.slots import Slot

    settings = settings_mod.load(environ={}, broker=vhost.url)
    with open_broker(settings, vhost.url) as broker:
        broker.submit("s", [(Chunk(i, i + 1), b"x") for i in range(3)])
        done = broker.lease("w", timeout=1, sweep_id="s")
        assert done is not None
        server = ProxyServer(broker)
        ours, childs = Pipe()
        slot = Slot(0, None, ours, memoryview(mmap.mmap(-1, 16)).cast("q"), lease=done)  # type: ignore[arg-type]
        server.handle(slot, Call(7, AckAndLeaseCall(done, "w", "s", 0.0)), {0: slot}, stopping=True)
        assert childs.poll(1), "the child's request was left unanswered"
        assert childs.recv() == Reply(7, True, None)
        assert slot.lease is None
        assert broker.stats("s").queued == 2  # acked: gone for good; the other two still queued


def test_switching_sweeps_counts_no_attempt_for_chunks_on_their_way(vhost: RabbitVhost) -> None:
    """A worker consuming sweep A moves to sweep B right after acking A's chunks, which
    makes RabbitMQ push more of A. Those pushes must go back to A's queue uncounted:
    a delivery that arrives while its consumer is being cancelled is rejected by
    pika, and RabbitMQ counts every rejected delivery as redelivered, which TTG would
    read as a lost attempt (and, repeated, dead-letter a chunk that never failed)."""
    settings = settings_mod.load(environ={})
    for _ in range(3):  # the race, when not prevented, is lost nearly every time
        with open_broker(settings, vhost.url) as broker:
            broker.set_capacity(2)  # a prefetch of 8
            broker.submit("a", [(Chunk(i, i + 1), b"x") for i in range(40)])
            broker.submit("b", [(Chunk(0, 1), b"y")])
            first = broker.lease("w", timeout=1, sweep_id="a")  # basic.get, then consume from A
            assert first is not None
            broker.service()
            held = [first] + [broker.lease("w", timeout=1, sweep_id="a") for _ in range(8)]
            assert all(lease is not None for lease in held)
            other = broker.lease("w", timeout=1, sweep_id="b")  # basic.get on B: move there next
            assert other is not None
            for lease in held:
                broker.ack(lease)  # buffered: sent with the next read, then A pushes 8 more
            broker.service()  # the switch: stop consuming from A (and the acks go out)
            broker.ack(other)
        with open_broker(settings, vhost.url) as broker:
            rest = []
            while (lease := broker.lease("w", timeout=0.2, sweep_id="a")) is not None:
                rest.append(lease)
            assert sorted(lease.chunk.start for lease in rest) == list(range(9, 40))
            counted = sorted(lease.chunk.start for lease in rest if lease.failures)
            assert counted == [], f"chunks of A counted as a lost attempt by the switch: {counted}"
        vhost.delete()
        vhost.create()


# -- 4b. a submit waits for every publisher confirm, all at once ---------------------------------


def test_bulk_submit_returns_only_when_every_chunk_is_confirmed(vhost: RabbitVhost, admin: Any) -> None:
    """A submit of many chunks publishes them on a connection of its own and waits for
    all their confirms at once; when it returns, every chunk is in the queue. When
    RabbitMQ cannot take them (the queue is gone), it raises instead of returning."""
    import pika as pika_mod

    from ttg.brokers.rabbitmq.broker import BULK_PUBLISH
    from ttg.brokers.rabbitmq.publish import publish_confirmed
    from ttg.errors import BrokerUnavailable

    with open_broker(settings_mod.load(environ={}), vhost.url) as broker:
        n = 5 * BULK_PUBLISH
        assert broker.submit("bulk", [(Chunk(i, i + 1), b"x") for i in range(n)]) == n
        assert ready(admin, "ttg.q.bulk") == n
        got = [broker.lease("w", timeout=1, sweep_id="bulk") for _ in range(n)]
        assert sorted(lease.chunk.start for lease in got if lease is not None) == list(range(n))

    params = pika_mod.URLParameters(vhost.url)
    props = pika_mod.BasicProperties(delivery_mode=2)
    with pytest.raises(BrokerUnavailable, match=r"could not be routed to ttg\.q\.nowhere"):
        publish_confirmed(params, "ttg.q.nowhere", [(b"x", props)] * 3)
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        publish_confirmed(pika_mod.URLParameters("amqp://guest:guest@127.0.0.1:1/%2F"), "q", [(b"x", props)])


# -- 5. wrong password, nothing listening, no such virtual host ---------------------------------------


@pytest.mark.parametrize("case", ["wrong password", "nothing listens", "no such vhost"])
def test_refused_or_unreachable_fails_fast(home: Path, case: str) -> None:
    home.mkdir(parents=True)
    v = rabbit_vhost(home)  # never created
    url, expected = {
        "wrong password": ("amqp://guest:wrong@127.0.0.1:5672/%2F",
                           "RabbitMQ at amqp://guest@127.0.0.1:5672/%2F refused the credentials; check the "
                           "user and password in the URL."),
        "nothing listens": ("amqp://guest:guest@127.0.0.1:1/%2F",
                            "cannot reach RabbitMQ at amqp://guest@127.0.0.1:1/%2F"),
        "no such vhost": (v.url, f"refused access to virtual host '{v.name}'; create it or give the user "
                                 "permissions on it"),
    }[case]
    for cmd in (("submit", "tests.funcs:square", "--range", "10"),
                ("worker", "--allow", "tests.funcs", "--burst")):
        started = time.monotonic()
        proc = ttg(home, *cmd, "--broker", url, "--store", store_url(home), timeout=60)
        took = time.monotonic() - started
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("ttg: error: "), proc.stderr
        assert expected in lines[0], lines[0]
        assert "wrong" not in lines[0], "the password leaked into the message"
        assert took < 5, f"{cmd[0]} took {took:.1f} s to fail"
        if case == "nothing listens":
            assert "check that the server runs and the URL (host, port, vhost)" in lines[0]
    assert not (home / "results.db").exists()  # nothing written


# -- 6. `ttg run` killed and run again ---------------------------------------------------------------


def test_run_killed_and_run_again_recomputes_nothing_committed(home: Path, tmp_path: Path, procs: Procs,
                                                                vhost: RabbitVhost) -> None:
    total = 3000
    counter = tmp_path / "counter"
    args = ("run", "tests.funcs:counted", "--range", str(total), "--chunk-size", "50", "--workers", "2",
            "--broker", vhost.url, "--store", store_url(home))
    first = procs.start(home, *args, TTG_TEST_COUNTER=str(counter))
    sweep = wait_until(lambda: sweep_in(home), 20, "the sweep in the store")
    assert sweep is not None
    reach(home, sweep, total * 0.5, [first])
    first.kill_group()
    committed = {i for a, b in records(home, sweep) for i in range(a, b)}
    assert total * 0.5 <= len(committed) < total

    again = ttg(home, *args, timeout=60, TTG_TEST_COUNTER=str(counter))
    assert again.returncode == 0, again.stderr
    assert f"sweep {sweep}: complete, {total}/{total} points" in again.stdout, again.stdout
    assert_exactly_once_in(store_url(home), sweep, total)
    runs = executions(counter)
    assert set(runs) == set(range(total))
    assert all(runs[i] == 1 for i in committed), "an index committed before the kill ran again"
    twice = sorted(i for i, n in runs.items() if n > 1)
    print(f"\nkilled at {len(committed)}/{total}; {len(twice)} uncommitted indices ran twice")
    assert max(runs.values()) <= 2


# -- 7. a chunk that outlives the server's consumer_timeout -------------------------------------------


@pytest.fixture
def short_consumer_timeout() -> Iterator[int]:
    """consumer_timeout 2 s, checked every 0.5 s (channel_tick_interval, 60 s by default); both
    are read back first and restored at teardown. (A channel reads consumer_timeout when it opens.)"""
    keys = ("consumer_timeout", "channel_tick_interval")
    got = rabbitmqctl("eval", "{" + ", ".join(f"application:get_env(rabbit, {k})" for k in keys) + "}.")
    before = re.findall(r"\{ok,(\d+)\}|undefined", got)
    assert len(before) == 2, got
    try:
        rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 2000), "
                            "application:set_env(rabbit, channel_tick_interval, 500).")
        yield 2000
    finally:
        rabbitmqctl("eval", ", ".join(f"application:set_env(rabbit, {k}, {v})" if v
                                      else f"application:unset_env(rabbit, {k})"
                                      for k, v in zip(keys, before, strict=True)) + ".")


def test_chunks_longer_than_the_consumer_timeout(home: Path, tmp_path: Path, procs: Procs,
                                                 vhost: RabbitVhost, short_consumer_timeout: int) -> None:
    """RabbitMQ closes the channel of a delivery unacknowledged past consumer_timeout, which
    requeues every chunk the worker holds. The supervisor notices within a tick, logs an error
    naming the setting, takes its chunks back on a new channel and lets them finish: the idle
    third child does not run them again, and nothing is recorded twice."""
    counter = tmp_path / "counter"
    url = vhost.url
    # two chunks of 60 x 50 ms = 3 s, longer than the 2 s timeout; a third child waits for work
    sweep = submit(home, "tests.funcs:counted_slow", "--range", "120", "--chunk-size", "60", "--broker", url,
                   "--store", store_url(home))
    (worker,) = start_workers(procs, home, url, [3], TTG_TEST_COUNTER=str(counter))
    wait_all([worker], 30)
    errors = [line for line in worker.stderr.splitlines() if " ERROR " in line]
    print("\n" + "\n".join(errors))
    assert errors and all("consumer_timeout (2 s)" in e and "Set consumer_timeout in rabbitmq.conf above "
                          "the longest chunk duration" in e for e in errors), worker.stderr
    assert "unknown delivery tag" not in worker.stderr and "worker child stopped" not in worker.stderr
    assert_exactly_once_in(store_url(home), sweep, 120)
    assert {r.attempt for r in records(home, sweep).values()} == {1}
    assert executions(counter) == dict.fromkeys(range(120), 1)  # taken back: nobody ran them twice

    # the advice works: chunks of 1 s, under the timeout, run without a word
    counter.unlink()
    short = submit(home, "tests.funcs:counted_slow", "--range", "120:240", "--chunk-size", "20",
                   "--broker", url, "--store", store_url(home))
    (worker,) = start_workers(procs, home, url, [3], TTG_TEST_COUNTER=str(counter))
    wait_all([worker], 30)
    assert "consumer_timeout" not in worker.stderr, worker.stderr
    assert_exactly_once_in(store_url(home), short, 120)
    assert executions(counter) == dict.fromkeys(range(120, 240), 1)




# -- 7. a server that keeps the connection alive and never answers a call -------------------------


class SwallowingProxy(Proxy):
    """A TCP proxy to RabbitMQ that passes every frame on, but can swallow the server's
    answer to one call (``swallow``: its AMQP class and method ids). Heartbeats keep
    flowing, so the connection looks alive: only the call's answer never comes."""

    def __init__(self, port: int = 5672) -> None:
        self.swallow: tuple[int, int] | None = None
        self.swallowed = threading.Event()
        super().__init__("127.0.0.1", port)

    def down(self, src: socket.socket, dst: socket.socket, state: object) -> None:
        """The server's side is frames only: type (1 byte), channel (2), size (4),
        payload, end byte; a method frame's payload starts with class and method ids."""
        buf = b""
        while data := src.recv(65536):
            buf += data
            out = b""
            while len(buf) >= 7 and len(buf) >= 8 + struct.unpack(">I", buf[3:7])[0]:
                size = struct.unpack(">I", buf[3:7])[0]
                frame, buf = buf[:8 + size], buf[8 + size:]
                if frame[0] == 1 and self.swallow == struct.unpack(">HH", frame[7:11]):
                    self.swallow = None
                    self.swallowed.set()
                    continue
                out += frame
            dst.sendall(out)


@pytest.mark.timeout(60)
def test_a_call_the_server_never_answers_is_given_up_and_made_again(vhost: RabbitVhost,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in the soak: a queue.declare whose answer never came held `ttg submit`
    (and would hold a worker's child) forever, the connection's heartbeats going on.
    The connection is dropped after ANSWER_SECONDS and the call made again."""
    from ttg.brokers.rabbitmq import link

    monkeypatch.setattr(link, "ANSWER_SECONDS", 1.0)
    proxy = SwallowingProxy()
    url = vhost.url.replace(":5672/", f":{proxy.port}/")
    with open_broker(settings_mod.load(environ={}), url) as broker:
        assert broker.submit("first", [(Chunk(0, 1), b"x")]) == 1  # connected, answered
        proxy.swallow = (50, 11)  # the next Queue.DeclareOk
        started = time.monotonic()
        assert broker.submit("second", [(Chunk(i, i + 1), b"x") for i in range(3)]) == 3
        took = time.monotonic() - started
        assert proxy.swallowed.is_set() and 1.0 <= took < 15, took
        got = [broker.lease("w", timeout=1, sweep_id="second") for _ in range(3)]
        assert sorted(lease.chunk.start for lease in got if lease is not None) == [0, 1, 2]
