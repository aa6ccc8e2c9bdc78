"""A real Prometheus scrapes a running worker (``ttg worker --metrics-port``) and
the exporter (``ttg exporter``) during a sweep; what it stored must match the
results table exactly. The Grafana dashboard's queries and the alert rules
must parse, run, and name only metrics TTG exports."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.observability.prom import Prometheus
from tests.observability.promql import as_query, grafana_exprs, metric_names
from tests.processes import Procs, wait_until
from ttg import settings as settings_mod
from ttg.stores import open_store
from ttg.testing import free_port

DASHBOARD = ROOT / "deploy" / "grafana" / "ttg-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "ttg-alerts.yml"
TOTAL = 4000
CHUNK = 50
SWEEP = "observed"


@dataclass
class Scraped:
    prom: Prometheus
    home: Path
    started: float
    finished: float
    #: the /metrics URLs of the worker and the exporter
    targets: tuple[str, str]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    tmp = tmp_path_factory.mktemp("prom")
    home = tmp / ".ttg"
    worker_port, exporter_port = free_port(), free_port()
    prom = Prometheus(tmp / "prometheus", {"ttg-worker": [f"127.0.0.1:{worker_port}"],
                                           "ttg-exporter": [f"127.0.0.1:{exporter_port}"]}, [ALERTS])
    procs = Procs(tmp / "logs")
    try:
        procs.start(home, "submit", "tests.observability.funcs:fail_on_7_slowly", "--range", str(TOTAL),
                    "--chunk-size", str(CHUNK), "--name", SWEEP).wait(60)
        procs.start(home, "exporter", "--port", str(exporter_port))
        prom.start()
        wait_until(lambda: prom.value(f'ttg_sweep_done_points{{sweep="{SWEEP}"}}') == 0, 30,
                   "Prometheus to scrape the exporter before the sweep starts", every=0.2)
        started = time.time()
        procs.start(home, "worker", "--allow", "tests.observability.funcs", "--workers", "2",
                    "--metrics-port", str(worker_port))
        wait_until(lambda: _progress(home).complete, 60, "the sweep to complete", every=0.2)
        finished = time.time()
        wait_until(lambda: prom.value(f'sum(ttg_worker_points_total{{sweep="{SWEEP}"}})') == TOTAL
                   and prom.value(f'ttg_sweep_done_points{{sweep="{SWEEP}"}}') == TOTAL,
                   30, "Prometheus to scrape the final counts", every=0.2)
        yield Scraped(prom, home, started, finished, (f"http://127.0.0.1:{worker_port}/metrics",
                                                      f"http://127.0.0.1:{exporter_port}/metrics"))
    finally:
        procs.cleanup()
        prom.stop()


def _progress(home: Path) -> object:
    with open_store(settings_mod.load(environ={}, home=home)) as store:
        return store.progress(SWEEP)


def test_counts_scraped_from_the_worker_and_the_exporter_match_the_results(scraped: Scraped) -> None:
    prom = scraped.prom
    with open_store(settings_mod.load(environ={}, home=scraped.home)) as store:
        p = store.progress(SWEEP)
    expected = {k: float(v) for k, v in p.by_status().items() if v}
    assert expected == {"ok": float(TOTAL - TOTAL // 7 - 1), "error": float(TOTAL // 7 + 1)}
    sel = f'sweep="{SWEEP}"'
    assert prom.by(f"sum by (status) (ttg_worker_points_total{{{sel}}})", "status") == expected
    exported = prom.by(f"ttg_sweep_committed_points{{{sel}}}", "status")
    assert {k: v for k, v in exported.items() if v} == expected
    assert prom.value(f"ttg_sweep_size_points{{{sel}}}") == TOTAL
    assert prom.value(f"ttg_sweep_failed_points{{{sel}}}") == p.failed
    assert prom.value(f"ttg_sweep_complete{{{sel}}}") == 1
    assert prom.value(f"ttg_sweep_dead_chunks{{{sel}}}") == 0
    assert prom.value(f"ttg_sweep_eta_seconds{{{sel}}}") == 0
    assert prom.by(f"ttg_worker_errors_total{{{sel}}}", "type") == {"ValueError": float(p.error)}
    chunks = prom.by(f"ttg_worker_chunks_total{{{sel}}}", "outcome")
    assert chunks == {"computed": TOTAL / CHUNK}
    assert prom.value(f"ttg_worker_chunk_duration_seconds_count{{{sel}}}") == TOTAL / CHUNK
    assert prom.value(f"ttg_worker_point_duration_seconds_count{{{sel}}}") == TOTAL
    # 2 ms of sleep per point: the median lies in the (1 ms, 5 ms] bucket
    median = prom.value(f"histogram_quantile(0.5, ttg_worker_point_duration_seconds_bucket{{{sel}}})")
    assert median is not None and 0.001 < median <= 0.005
    assert prom.value("ttg_worker_up") == 1
    assert prom.value("ttg_worker_children") == 2
    assert prom.value("time() - ttg_worker_heartbeat_timestamp_seconds") < 10
    assert prom.value(f"sum(ttg_worker_chunks_in_flight{{{sel}}})") in (None, 0)


def test_progress_rose_while_the_sweep_ran(scraped: Scraped) -> None:
    data = scraped.prom.api("query_range", query=f'ttg_sweep_done_points{{sweep="{SWEEP}"}}',
                            start=scraped.started - 2, end=scraped.finished + 2, step="500ms")
    [series] = data["result"]
    values = [float(v) for _, v in series["values"]]
    assert values == sorted(values), "done points never go down"
    assert values[0] == 0 and values[-1] == TOTAL
    assert any(0 < v < TOTAL for v in values), f"no sample mid-sweep: {values}"
    rate = f'ttg_sweep_throughput_points_per_second{{sweep="{SWEEP}"}}'
    rates = scraped.prom.api("query_range", query=rate, start=scraped.started,
                             end=scraped.finished + 2, step="500ms")["result"]
    assert rates and max(float(v) for _, v in rates[0]["values"]) > 0


def _exported(scraped: Scraped) -> set[str]:
    """Every metric the worker and the exporter declare (``# TYPE`` lines), with
    samples or not yet; a histogram's series get their suffixes."""
    names: set[str] = set()
    for url in scraped.targets:
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith("# TYPE ttg_"):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_dashboard_query_runs_and_names_only_ttg_metrics(scraped: Scraped) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported(scraped)
    exprs = grafana_exprs(dashboard)
    assert len(exprs) >= 20
    empty = []
    for title, expr in exprs:
        names = metric_names(as_query(expr))
        assert names, f"{title}: no metric in {expr}"
        assert names <= exported, f"{title}: {sorted(names - exported)} are not exported by TTG ({expr})"
        if not scraped.prom.query(as_query(expr)):  # parses and runs, or raises
            empty.append(title)
    # rates over the last minute may be empty once the sweep is over; the rest must show data
    assert len(empty) <= len(exprs) // 2, f"queries without data: {empty}"


def test_alert_rules_check_load_and_name_only_ttg_metrics(scraped: Scraped) -> None:
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    groups = scraped.prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"TTGSweepStalled", "TTGSweepDeadLetters",
                                          "TTGSweepBlockedOnDeadLetters"}
    exported = _exported(scraped)
    for rule in rules:
        assert rule["health"] == "ok", rule
        names = metric_names(rule["query"])
        assert names and names <= exported, f"{rule['name']}: {sorted(names - exported)}"
    firing = [r["name"] for r in rules if r["state"] != "inactive"]
    assert not firing, f"alerts fire on a healthy, finished sweep: {firing}"


def test_dashboard_panels_figure(scraped: Scraped) -> None:
    """Draws the main panels from Prometheus' answers (test artifact; docs figure on request)."""
    import os
    import shutil

    from tests.observability.browser import ARTIFACTS, DOCS_IMAGES
    from tests.observability.panels import draw

    path = ARTIFACTS / "grafana-panels.png"
    draw(scraped.prom, json.loads(DASHBOARD.read_text()), scraped.started - 2, scraped.finished + 3, path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    if os.environ.get("TTG_UPDATE_DOCS_IMAGES") == "1":
        shutil.copy(path, DOCS_IMAGES / path.name)
