"""A private Prometheus server (Debian's ``prometheus``) on a free loopback port,
scraping the targets a test gives it, and a client for its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ttg.testing import free_port, stop_process


class Prometheus:
    def __init__(self, directory: Path, targets: dict[str, list[str]], rule_files: list[Path],
                 interval: str = "1s") -> None:
        if shutil.which("prometheus") is None:
            raise RuntimeError("prometheus is not installed; run scripts/services "
                               "(apt-get install prometheus)")
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "prometheus.yml"
        self.proc: subprocess.Popen[bytes] | None = None
        scrape = [{"job_name": job, "static_configs": [{"targets": hosts}]} for job, hosts in targets.items()]
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "rule_files": [str(p) for p in rule_files], "scrape_configs": scrape}
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config, indent=1))  # YAML is a superset of JSON

    def start(self, timeout: float = 30.0) -> Prometheus:
        with (self.directory / "prometheus.log").open("wb") as log:
            self._popen(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc is None or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not start; see {self.directory / 'prometheus.log'}")

    def _popen(self, log: Any) -> None:
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/PATH; returns ``data``, raises AssertionError with Prometheus' error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [data]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it has no result."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}
