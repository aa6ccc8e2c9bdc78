"""The worker's metrics from the events its supervisor and children report (in process)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ttg.brokers.base import Lease
from ttg.core.chunking import Chunk
from ttg.core.records import ChunkRecords
from ttg.core.retry import Failure
from ttg.worker.events import POINT_BUCKETS, ChunkReport, Tally, bucket_counts
from ttg.worker.metrics import WorkerMetrics, registry


def _lease(failures: int = 0, kind: str | None = None) -> Lease:
    last = Failure(kind, "why") if kind else None
    return Lease("s1", Chunk(0, 4), b"", "tok", 0.0, failures, last)


def _values(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry(metrics)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_bucket_counts_use_le_bounds() -> None:
    counts = bucket_counts([500, 1000, 1001, 10**12], POINT_BUCKETS)  # ns; 1e-6 s is the first bound
    assert counts[0] == 2 and counts[1] == 1 and counts[-1] == 1 and sum(counts) == 4


def test_a_tally_sums_a_chunk_into_one_report() -> None:
    sent: list[ChunkReport] = []
    clock = iter([10.0, 12.5])
    tally = Tally(sent.append, clock=lambda: next(clock))
    lease = _lease(failures=2, kind="crashed")
    tally.chunk_leased(lease)
    tally.committed("s1", ChunkRecords(0, 2, [1, None], [2_000_000, 3_000_000], "w", 3, ["ok", "error"],
                                       {1: ("KeyError", "k", "")}))
    tally.committed("s1", ChunkRecords(2, 4, [1, 1], [2_000_000, 2_000_000], "w", 3))
    tally.chunk_finished(lease, "computed")
    [report] = sent
    assert report.outcome == "computed" and report.seconds == 2.5
    assert report.statuses == {"ok": 3, "error": 1}
    assert report.error_types == {"KeyError": 1}
    assert report.failures == 2 and report.last_failure == "crashed"
    assert sum(report.point_buckets) == 4 and abs(report.point_seconds - 0.009) < 1e-12


def test_supervisor_events_become_metrics() -> None:
    m = WorkerMetrics("host-1", max_error_types=2)
    m.chunk_report(ChunkReport("s1", "computed", 0.3, 1, "lost", {"ok": 3, "error": 3},
                               [0] * (len(POINT_BUCKETS) + 1), 0.0, {"A": 1, "B": 1, "C": 1}))
    m.chunk_report(ChunkReport("s1", "split", 0.01))
    m.chunk_failed(_lease(failures=1, kind="timeout"), Failure("crashed", "SIGSEGV"))
    m.lease_extended(_lease())
    m.lease_extended(_lease())
    m.lease_lost(_lease())
    v = _values(m)
    s = ("sweep", "s1")
    assert v["ttg_worker_points_total", (("status", "ok"), s)] == 3
    assert v["ttg_worker_chunks_total", (("outcome", "computed"), s)] == 1
    assert v["ttg_worker_chunks_total", (("outcome", "split"), s)] == 1
    assert v["ttg_worker_chunks_total", (("outcome", "crashed"), s)] == 1
    assert v["ttg_worker_chunks_total", (("outcome", "lost"), s)] == 1
    assert v["ttg_worker_redeliveries_total", (("reason", "lost"), s)] == 1
    assert v["ttg_worker_redeliveries_total", (("reason", "timeout"), s)] == 1
    assert v["ttg_worker_lease_extensions_total", (s,)] == 2
    assert v["ttg_worker_leases_lost_total", (s,)] == 1
    # two exception types per worker at most: the rest count as "other"
    assert {k[1][1][1]: n for k, n in v.items() if k[0] == "ttg_worker_errors_total"} == {
        "A": 1, "B": 1, "other": 1}
    assert v["ttg_worker_chunk_duration_seconds_count", (s,)] == 1  # computed chunks only
    assert v["ttg_worker_chunk_duration_seconds_bucket", (("le", "0.25"), s)] == 0
    assert v["ttg_worker_chunk_duration_seconds_bucket", (("le", "0.5"), s)] == 1
    assert v["ttg_worker_up", ()] == 1
    assert v["ttg_worker_info", (("version", "0.1.0"), ("worker", "host-1"))] == 1
