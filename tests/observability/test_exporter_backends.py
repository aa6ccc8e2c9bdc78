"""The sweep exporter reads every broker and store through their interfaces:
the same numbers from each backend pair, and the same workers by presence."""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ttg.brokers.base import Broker
from ttg.client.submit import submit
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec
from ttg.core.records import ChunkRecords
from ttg.core.sweep import Options, Sweep
from ttg.observe.exporter import SweepCollector
from ttg.observe.monitor import SweepMonitor
from ttg.spaces import RangeSpace
from ttg.stores.base import ResultStore
from ttg.stores.presence import PresenceStore, WorkerBeat
from ttg.worker.metrics import registry


def _samples(monitor: SweepMonitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry(SweepCollector(monitor))).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exporter_reads_any_backend(broker: Broker, store: ResultStore, presence: PresenceStore) -> None:
    space = RangeSpace(100)
    sweep = Sweep.create("tests.funcs:square", space, Options(chunk_size=10), "exported")
    submit(sweep, space, broker, store, Codec(""))
    lease = broker.lease("w", timeout=5, sweep_id=sweep.id)
    assert lease is not None
    chunk: Chunk = lease.chunk
    n = len(chunk)
    statuses = ["ok"] * (n - 1) + ["error"]
    errors = {n - 1: ("ValueError", "bad", "")}
    store.commit(sweep.id, ChunkRecords(chunk.start, chunk.stop, [1] * n, [1000] * n, "w", 1,
                                        statuses, errors))
    broker.ack(lease)
    got = _samples(SweepMonitor(broker, store, presence))
    s = (("sweep", "exported"),)
    assert got["ttg_sweep_size_points", s] == 100
    assert got["ttg_sweep_done_points", s] == 10
    assert got["ttg_sweep_failed_points", s] == 1
    assert got["ttg_sweep_committed_points", (("status", "error"), *s)] == 1
    assert got["ttg_sweep_queued_chunks", s] == 9
    assert got["ttg_sweep_leased_chunks", s] == 0
    assert got["ttg_sweep_dead_chunks", s] == 0
    assert got["ttg_sweep_complete", s] == 0
    assert got["ttg_sweep_active", s] == 1
    assert got["ttg_exporter_backend_up", ()] == 1


def test_workers_by_presence_on_any_backend(broker: Broker, store: ResultStore,
                                            presence: PresenceStore) -> None:
    space = RangeSpace(100)
    sweep = Sweep.create("tests.funcs:square", space, Options(chunk_size=10), "watched")
    submit(sweep, space, broker, store, Codec(""))
    store.commit(sweep.id, ChunkRecords(0, 10, [1] * 10, [1000] * 10, "old-7-8", 1))
    now = time.time()
    presence.beat(WorkerBeat("h-1", "h", 1, now - 60, now, 2.0, 2, 5, ((sweep.id, 10, 20), ("other", 0, 5))))
    presence.beat(WorkerBeat("h-2", "h", 2, now - 60, now - 30, 2.0, 1, 3, ((sweep.id, 20, 30),)))  # stale
    presence.beat(WorkerBeat("h-3", "h", 3, now - 60, now - 5, 2.0, state="stopped"))
    presence.beat(WorkerBeat("h-4", "h", 4, now - 60, now - 1, 2.0, 1, 0, (("other", 5, 10),)))
    monitor = SweepMonitor(broker, store, presence)
    got = _samples(monitor)
    assert {k: got["ttg_workers", (("status", k),)] for k in ("alive", "stale", "stopped")} == {
        "alive": 2, "stale": 1, "stopped": 1}
    every = [(p.worker, p.status) for p in monitor.presence()]
    assert every == [("h-1", "alive"), ("h-4", "alive"), ("h-2", "stale"), ("h-3", "stopped")]
    # on one sweep: who holds its chunks, and (once the records were read) who committed to it
    assert [(p.worker, p.status) for p in monitor.presence(sweep.id)] == [("h-1", "alive"), ("h-2", "stale")]
    for _ in monitor.column_chunks(sweep.id):
        pass
    here = monitor.presence(sweep.id)
    assert [(p.worker, p.status, p.points) for p in here] == [
        ("h-1", "alive", 0), ("h-2", "stale", 0), ("old-7", "unknown", 10)]
    assert here[0].to_json()["leases"] == [{"sweep": sweep.id, "start": 10, "stop": 20},
                                           {"sweep": "other", "start": 0, "stop": 5}]
