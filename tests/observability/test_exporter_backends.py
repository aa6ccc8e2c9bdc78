"""The sweep exporter reads every broker and store through their interfaces:
the same numbers from each backend pair."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ttg.brokers.base import Broker
from ttg.chunking import Chunk
from ttg.client import submit
from ttg.codec import Codec
from ttg.exporter import SweepCollector
from ttg.metrics import registry
from ttg.monitor import SweepMonitor
from ttg.records import ChunkRecords
from ttg.space import RangeSpace
from ttg.stores.base import ResultStore
from ttg.sweep import Options, Sweep


def _samples(monitor: SweepMonitor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry(SweepCollector(monitor))).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_exporter_reads_any_backend(broker: Broker, store: ResultStore) -> None:
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
    got = _samples(SweepMonitor(broker, store))
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
