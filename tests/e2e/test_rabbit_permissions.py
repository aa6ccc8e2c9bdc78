"""The minimum-rights RabbitMQ user documented in docs/backends/rabbitmq.md can run a
whole sweep: the permissions are read from the docs, so docs and code agree."""

from __future__ import annotations

import base64
import json
import re
import shlex
import urllib.request
from pathlib import Path

from tests.conftest import RABBIT_API, ROOT, sweep_id_from, ttg
from ttg.testing import RabbitVhost


def documented_permissions() -> tuple[str, str, str]:
    text = (ROOT / "docs" / "backends" / "rabbitmq.md").read_text()
    line = re.search(r"^rabbitmqctl set_permissions .*$", text, re.MULTILINE)
    assert line, "docs/backends/rabbitmq.md lost its set_permissions line"
    words = shlex.split(line.group(0))
    configure, write, read = words[-3:]
    return configure, write, read


def api(method: str, path: str, body: dict[str, str] | None = None) -> None:
    req = urllib.request.Request(RABBIT_API + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10):
        pass


def test_documented_user_runs_a_sweep(tmp_path: Path, home: Path) -> None:
    configure, write, read = documented_permissions()
    user = f"ttg-perm-{tmp_path.name[-12:]}"
    with RabbitVhost(f"ttg-perm-{tmp_path.name[-12:]}", api=RABBIT_API) as vhost:
        api("PUT", f"/api/users/{user}", {"password": "pw", "tags": "monitoring"})
        try:
            api("PUT", f"/api/permissions/{vhost.name}/{user}",
                {"configure": configure, "write": write, "read": read})
            url = f"amqp://{user}:pw@127.0.0.1:5672/{vhost.name}"
            store = f"sqlite://{home / 'results.db'}"
            sub = ttg(home, "submit", "tests.funcs:fail_on_multiples_of_7", "--range", "200",
                      "--chunk-size", "20", "--broker", url, "--store", store, "--priority", "3")
            assert sub.returncode == 0, sub.stderr
            sweep = sweep_id_from(sub.stdout)
            work = ttg(home, "worker", "--allow", "tests.funcs", "--burst", "--workers", "2",
                       "--broker", url, "--store", store)
            assert work.returncode == 0, work.stderr
            status = ttg(home, "status", sweep, "--broker", url, "--store", store)
            assert status.returncode == 0, status.stderr
            assert "done      200/200" in status.stdout
            assert "ok 171  error 29" in status.stdout
            for cmd in (["list"], ["errors", sweep], ["cancel", sweep]):
                out = ttg(home, *cmd, "--broker", url, "--store", store)
                assert out.returncode == 0, out.stderr
        finally:
            api("DELETE", f"/api/users/{user}")
