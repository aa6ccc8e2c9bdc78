"""Multi-host faults: the broker and the result store on the host side, three worker
"hosts" each in a network namespace of its own (tests/netns.py), a client on the
host side submitting a sweep. For the Redis broker (with the Redis store on the
same private server) and for RabbitMQ (with a private Redis as the store):

- every process of one host SIGKILLed at about 30%: its chunks are taken over and
  every index ends with exactly one record;
- one host's link cut for longer than the lease: its chunks are taken over and
  finished by the others; when the link returns, its late commits change nothing
  (no duplicates, every record committed before it came back unchanged) and it
  goes back to work.

These need root and iproute2 (as here and in CI): they run, they do not skip.
The namespaces, veths and bridge are deleted at teardown whatever happened.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import assert_exactly_once_in, rabbit_vhost
from tests.netns import Host, Network
from tests.processes import Proc, Procs, done_in, executions, reach, submit, wait_until
from ttg import settings as settings_mod
from ttg.core.records import ChunkRecords
from ttg.stores import open_store
from ttg.testing import PrivateRedis, free_port

LEASE = 2.0
#: AMQP heartbeat of the workers (seconds, ``?heartbeat=`` in the URL): RabbitMQ drops a
#: silent connection, and requeues its chunks, after about two missed heartbeats.
HEARTBEAT = 2
SIZE = 25  # points per chunk; tests.funcs:counted_20ms makes a chunk last 0.5 s
CHILDREN = 2  # per host


@dataclass
class Cluster:
    kind: str
    net: Network
    #: broker and store URLs for the client on the host side
    broker: str
    store: str
    #: the same as the hosts in the namespaces reach them
    remote_broker: str
    remote_store: str


@pytest.fixture(params=["redis", "amqp"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path, home: Path, procs: Procs) -> Iterator[Cluster]:
    cleanup: list[Any] = []
    try:
        net = Network().create()
        cleanup.append(net.close)
        server = PrivateRedis(tmp_path / "redis", bind=[net.server])
        cleanup.append(server.kill)
        server.start()
        remote_store = f"redis://{net.server}:{server.port}/0"
        if request.param == "redis":
            yield Cluster("redis", net, server.url, server.url, remote_store, remote_store)
        else:
            home.mkdir(parents=True, exist_ok=True)
            vhost = rabbit_vhost(home)
            vhost.delete()  # a leftover of an interrupted run
            vhost.create()
            cleanup.append(vhost.delete)
            # RabbitMQ listens on loopback only: the hosts reach it through a forwarder on the
            # bridge (its connections to RabbitMQ come from loopback, as the guest user needs)
            port = free_port()
            listen = f"TCP-LISTEN:{port},bind={net.server},reuseaddr,fork"
            forwarder = subprocess.Popen(
                ["socat", listen, f"TCP:127.0.0.1:{vhost.port}"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            cleanup.append(lambda: _kill_group(forwarder))
            wait_until(lambda: _listens(net.server, port), 10, "the AMQP forwarder")
            remote = (f"amqp://guest:guest@{net.server}:{port}/{quote(vhost.name, safe='')}"
                      f"?heartbeat={HEARTBEAT}")
            yield Cluster("amqp", net, vhost.url, server.url, remote, remote_store)
    finally:
        procs.cleanup()
        for step in reversed(cleanup):
            step()


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    try:
        import os

        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(10)


def start_host(procs: Procs, home: Path, c: Cluster, host: Host, sweep: str, counter: Path) -> Proc:
    """A burst worker with two children on ``host`` (its worker ids read ``hK-PID``)."""
    return procs.start(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", str(CHILDREN),
                       "--sweep", sweep, "--lease-seconds", str(LEASE), "--broker", c.remote_broker,
                       "--store", c.remote_store, "-v", prefix=host.command([]),
                       TTG_TEST_COUNTER=str(counter))


def records(url: str, sweep_id: str) -> dict[int, ChunkRecords]:
    """start -> committed record."""
    s = open_store(settings_mod.load(environ={}), url)
    try:
        return {r.start: r for r in s.chunks(sweep_id)}
    finally:
        s.close()


def on(host: Host, rec: ChunkRecords) -> bool:
    return rec.worker.startswith(f"{host.label}-")


def wait_ok(workers: list[Proc], timeout: float) -> None:
    for w in workers:
        assert w.wait(timeout) == 0, w.stderr[-5000:]
        assert "Traceback" not in w.stderr, w.stderr[-5000:]


# -- (a) every process of one host killed at about 30% -------------------------------------------


def test_kill_every_process_of_one_host(cluster: Cluster, home: Path, tmp_path: Path, procs: Procs) -> None:
    c, total = cluster, 1800  # 72 chunks of 0.5 s on 6 children
    sweep = submit(home, "tests.funcs:counted_20ms", "--range", str(total), "--chunk-size", str(SIZE),
                   "--broker", c.broker, "--store", c.store)
    counters = {h.label: tmp_path / f"counter-{h.label}" for h in c.net.hosts}
    workers = {h.label: start_host(procs, home, c, h, sweep, counters[h.label]) for h in c.net.hosts}
    reach(c.store, sweep, total * 0.3, list(workers.values()))

    victim = c.net.hosts[1]
    at = done_in(c.store, sweep)
    killed = victim.kill_all()
    killed_at = time.monotonic()
    assert len(killed) >= 1 + CHILDREN, killed  # the supervisor and its children
    assert workers[victim.label].wait(5) == -signal.SIGKILL
    assert not victim.pids()
    others = [w for label, w in workers.items() if label != victim.label]

    first_seen: dict[int, float] = {}
    end = time.monotonic() + 60
    while time.monotonic() < end:
        running = any(w.popen.poll() is None for w in others)
        for start in records(c.store, sweep):
            first_seen.setdefault(start, time.monotonic() - killed_at)
        if not running:
            break
        time.sleep(0.01)
    wait_ok(others, 5)

    assert_exactly_once_in(c.store, sweep, total)
    recs = records(c.store, sweep)
    assert all(r.status(i) == "ok" for r in recs.values() for i in range(len(r)))
    # the chunks the victim was computing ran again elsewhere, as attempt 2 (a lost lease
    # counts); with RabbitMQ, so did any its supervisor had taken for a child not yet started
    lost = sorted(s for s, r in recs.items() if r.attempt > 1)
    in_flight = {i // SIZE * SIZE for i in executions(counters[victim.label])
                 if not on(victim, recs[i // SIZE * SIZE])}
    assert in_flight and in_flight <= set(lost), (sorted(in_flight), lost)
    assert not any(on(victim, recs[s]) for s in lost)
    takeover = max(first_seen[s] for s in lost)
    print(f"\n[{c.kind}] killed {len(killed)} processes of {victim.label} at {at}/{total} points; its "
          f"chunks {lost} committed by the others {takeover:.2f} s after the kill")
    bound = LEASE + 3.0 if c.kind == "redis" else 3.0  # RabbitMQ sees the connection close at once
    assert takeover < bound, f"taken over only {takeover:.2f} s after the kill"


# -- (b) one host's link cut for longer than the lease, then back ----------------------------------


def test_cut_one_host_longer_than_the_lease(cluster: Cluster, home: Path, tmp_path: Path,
                                            procs: Procs) -> None:
    c, total = cluster, 3600  # 144 chunks of 0.5 s on 6 children
    sweep = submit(home, "tests.funcs:counted_20ms", "--range", str(total), "--chunk-size", str(SIZE),
                   "--broker", c.broker, "--store", c.store)
    counters = {h.label: tmp_path / f"counter-{h.label}" for h in c.net.hosts}
    workers = {h.label: start_host(procs, home, c, h, sweep, counters[h.label]) for h in c.net.hosts}
    reach(c.store, sweep, total * 0.3, list(workers.values()))

    victim = c.net.hosts[0]
    at = done_in(c.store, sweep)
    victim.cut()
    cut_at = time.monotonic()
    in_flight: set[int] = set()

    def taken_over() -> bool:
        """The chunks the victim started and had not committed are all committed by others."""
        recs = records(c.store, sweep)
        started = {i // SIZE * SIZE for i in executions(counters[victim.label])}
        in_flight.clear()
        in_flight.update(s for s in started if s not in recs or not on(victim, recs[s]))
        return bool(in_flight) and all(s in recs for s in in_flight)

    try:
        wait_until(taken_over, 40, "the cut-off host's chunks to be committed by the others", every=0.02)
        takeover = time.monotonic() - cut_at
        time.sleep(max(0.0, cut_at + LEASE + 1.0 - time.monotonic()))  # longer than the lease, whatever
        snapshot = records(c.store, sweep)
        assert done_in(c.store, sweep) < total * 0.85, "too little work left to see the host come back"
    finally:
        victim.restore()
    cut_for = time.monotonic() - cut_at
    assert workers[victim.label].popen.poll() is None, "the cut-off host gave up"

    wait_ok(list(workers.values()), 60)
    assert_exactly_once_in(c.store, sweep, total)
    final = records(c.store, sweep)
    # nothing committed before the link came back changed (values, durations, worker, attempt)...
    changed = sorted(s for s, r in snapshot.items() if final[s] != r)
    assert not changed, f"records overwritten by late commits: {changed}"
    # ...and the chunks the victim was computing stay committed by the hosts that took them over
    assert not any(on(victim, final[s]) for s in in_flight)
    ran = executions(counters[victim.label])
    # the victim computed them to the end (its children kept going, cut off) and tried to commit
    computed = {s for s in in_flight if all(ran[i] for i in range(s, s + SIZE))}
    assert computed, f"{victim.label} finished none of its chunks while cut off: no late commit to test"
    # the victim went back to work: it committed chunks it leased after the link came back
    later = sorted(s for s, r in final.items() if on(victim, r) and s not in snapshot)
    refused = victim_log_count(workers[victim.label], "already committed by another worker")
    lost = victim_log_count(workers[victim.label], "lost its lease")
    print(f"\n[{c.kind}] cut {victim.label} at {at}/{total} points for {cut_for:.1f} s (back at "
          f"{len(snapshot) * SIZE}): its chunks {sorted(in_flight)} (computed to the end: "
          f"{sorted(computed)}) "
          f"committed by the others {takeover:.2f} s after the cut; after the link came back: {refused} "
          f"late commit(s) refused, {lost} child(ren) stopped for a lost lease, {len(later)} new chunk(s) "
          f"committed by {victim.label}")
    assert later, f"{victim.label} did not go back to work:\n{workers[victim.label].stderr[-5000:]}"
    bound = LEASE + 3.0 if c.kind == "redis" else 4 * HEARTBEAT + 3.0
    assert takeover < bound, f"taken over only {takeover:.2f} s after the cut"


def victim_log_count(proc: Proc, text: str) -> int:
    return proc.stderr.count(text)


def test_amqp_heartbeat_given_in_the_url_is_used(home: Path) -> None:
    """The cut test relies on it: ``?heartbeat=S`` in the broker URL sets the connection's
    heartbeat (negotiated with the server); without it the worker asks for 20 s."""
    from ttg.brokers.rabbitmq import RabbitBroker

    home.mkdir(parents=True, exist_ok=True)
    vhost = rabbit_vhost(home)
    vhost.delete()
    with vhost:
        for url, expected in ((f"{vhost.url}?heartbeat={HEARTBEAT}", HEARTBEAT), (vhost.url, 20)):
            broker = RabbitBroker(url)
            try:
                assert broker.link.conn._impl.params.heartbeat == expected
            finally:
                broker.close()
