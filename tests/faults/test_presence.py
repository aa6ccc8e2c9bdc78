"""Worker presence with real processes: a `ttg worker` on each broker (and so each
result store) beats while it runs, saying what it holds; SIGKILLed with its whole
process group it stops beating and turns stale; stopped with SIGTERM it says
"stopped" on its way out. `ttg workers` lists them so. A store that cannot be
reached costs only a warning; the beats resume when it is back."""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, empty_postgres, postgres_url, rabbit_vhost, redis_url, ttg
from tests.processes import Proc, Procs, submit, wait_until
from ttg import settings as settings_mod
from ttg.brokers import open_broker
from ttg.observe.monitor import SweepMonitor, WorkerPresence
from ttg.stores import open_presence, open_store
from ttg.stores.presence import WorkerBeat, liveness
from ttg.testing import PrivateRedis
from ttg.worker.beats import BeatWriter

#: Beat every half second, so "stale" (no beat for three intervals) comes in 1.5 s.
INTERVAL = 0.5


@dataclass
class Backend:
    broker: str
    store: str

    def args(self) -> tuple[str, ...]:
        return ("--broker", self.broker, "--store", self.store)


@pytest.fixture(params=["local", "redis", "amqp"])
def backend(request: pytest.FixtureRequest, home: Path, procs: Procs) -> Iterator[Backend]:
    """Each broker with one of the stores: embedded SQLite, Redis, PostgreSQL."""
    home.mkdir(parents=True, exist_ok=True)
    if request.param == "local":
        yield Backend(f"local://{home / 'broker.db'}", f"sqlite://{home / 'results.db'}")
        return
    if request.param == "redis":
        url = redis_url(home)
        yield Backend(url, url)
        return
    assert POSTGRES_URL
    empty_postgres()
    vhost = rabbit_vhost(home)
    vhost.delete()
    vhost.create()
    try:
        yield Backend(vhost.url, postgres_url())
    finally:
        procs.cleanup()
        vhost.delete()


def beat_of(b: Backend, proc: Proc) -> WorkerBeat | None:
    with open_presence(settings_mod.load(environ={}), b.store) as presence:
        return next((w for w in presence.workers() if w.pid == proc.pid), None)


def presence_of(b: Backend, proc: Proc, sweep: str) -> WorkerPresence | None:
    s = settings_mod.load(environ={})
    with open_broker(s, b.broker) as broker, open_store(s, b.store) as store, \
            open_presence(s, b.store) as presence:
        return next((p for p in SweepMonitor(broker, store, presence).presence(sweep)
                     if p.beat is not None and p.beat.pid == proc.pid), None)


def start(procs: Procs, home: Path, b: Backend, *extra: str) -> Proc:
    return procs.start(home, "worker", "--allow", "tests.funcs", "--workers", "2", *b.args(), *extra,
                       TTG_PRESENCE_SECONDS=str(INTERVAL))


def test_a_worker_beats_until_it_is_killed(backend: Backend, home: Path, procs: Procs) -> None:
    sweep = submit(home, "tests.funcs:slow", "--range", "4000", "--chunk-size", "20", *backend.args())
    worker = start(procs, home, backend)

    def working() -> WorkerBeat | None:
        got = beat_of(backend, worker)
        return got if got is not None and got.leases and got.chunks > 0 else None

    beat = wait_until(working, 30, f"a beat with leases and chunks done:\n{worker.stderr}", every=0.1)
    assert beat.worker == f"{socket.gethostname()}-{worker.pid}"
    assert (beat.host, beat.state, beat.children, beat.interval) == (socket.gethostname(), "running", 2,
                                                                     INTERVAL)
    # 2 children, each with the chunk it computes and, on a network store, the one it
    # commits; on RabbitMQ also the one it leased ahead
    assert {s for s, _, _ in beat.leases} == {sweep} and len(beat.leases) <= 6
    assert all(z - a == 20 for _, a, z in beat.leases)
    assert beat.started <= beat.beat and time.time() - beat.beat < 3 * INTERVAL
    assert liveness(beat, time.time()) == "alive"
    later = wait_until(lambda: (b := beat_of(backend, worker)) is not None and b.beat > beat.beat and b,
                       5, "the next beat", every=0.1)
    assert later.chunks >= beat.chunks

    seen = wait_until(lambda: presence_of(backend, worker, sweep), 5, "the worker on the sweep's monitor")
    assert seen.status == "alive" and seen.age is not None and seen.age < 3 * INTERVAL
    listed = ttg(home, "workers", *backend.args(), check=True).stdout
    assert any(line.split()[:2] == [beat.worker, "alive"] for line in listed.splitlines()), listed

    worker.kill_group()  # SIGKILL: no last beat
    last = beat_of(backend, worker)
    assert last is not None and last.state == "running"
    gone = wait_until(lambda: (p := presence_of(backend, worker, sweep)) is not None and p.status == "stale"
                      and p, 3 * INTERVAL + 5, "the killed worker to turn stale", every=0.1)
    assert gone.beat == beat_of(backend, worker)  # no beat since the kill
    assert gone.age is not None and gone.age > 3 * INTERVAL
    listed = ttg(home, "workers", *backend.args(), check=True).stdout
    assert any(line.split()[:2] == [beat.worker, "stale"] for line in listed.splitlines()), listed


def test_a_stopped_worker_says_so(home: Path, procs: Procs) -> None:
    b = Backend(f"local://{home / 'broker.db'}", f"sqlite://{home / 'results.db'}")
    home.mkdir(parents=True, exist_ok=True)
    submit(home, "tests.funcs:slow", "--range", "2000", "--chunk-size", "20", *b.args())
    worker = start(procs, home, b, "--grace", "5")
    wait_until(lambda: (w := beat_of(b, worker)) is not None and w.chunks > 0, 30,
               f"the worker to work:\n{worker.stderr}", every=0.1)
    worker.signal_group(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.stderr
    last = beat_of(b, worker)
    assert last is not None and last.state == "stopped" and last.leases == () and last.children == 0
    assert liveness(last, time.time() + 3600) == "stopped"
    assert "no live workers" in ttg(home, "workers", *b.args(), check=True).stdout
    listed = ttg(home, "workers", "--all", *b.args(), check=True).stdout
    assert any(line.split()[:2] == [last.worker, "stopped"] for line in listed.splitlines()), listed


def test_beats_survive_an_unreachable_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = PrivateRedis(tmp_path / "redis")  # not started yet: nothing listens on its port
    s = settings_mod.load(environ={})
    first = WorkerBeat("h-1", "h", 1, time.time(), 0.0, 0.1, 2)
    presence = BeatWriter(lambda: open_presence(s, server.url), first)
    caplog.set_level(logging.DEBUG, "ttg.worker.beats")
    presence.start()
    try:
        time.sleep(0.5)  # about five failed beats
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "cannot reach Redis" in warned[0].getMessage(), caplog.text
        assert sum(r.levelno == logging.DEBUG for r in caplog.records) >= 2
        with presence.quiet():  # a fork now would wait for no store call: there is none
            pass
        server.start()
        presence.update(WorkerBeat("h-1", "h", 1, first.started, 0.0, 0.1, 2, 7))

        def beat() -> WorkerBeat | None:
            with open_presence(s, server.url) as store:
                return next(iter(store.workers()), None)

        # (the first beat written may still be the one from before the update)
        got = wait_until(lambda: (b := beat()) is not None and b.chunks == 7 and b, 5,
                         "the updated beat once the store is back", every=0.05)
        assert (got.worker, got.state) == ("h-1", "running")
        assert time.time() - got.beat < 1
        assert "presence beats written again" in caplog.text
        presence.stop(WorkerBeat("h-1", "h", 1, first.started, 0.0, 0.1, 0, 7, (), "stopped"))
        last = beat()
        assert last is not None and last.state == "stopped"
    finally:
        presence.stop(first)
        server.kill()
