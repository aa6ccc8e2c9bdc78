"""Private servers on free ports, for tests that restart, kill or reconfigure one.

A test that restarts, kills or reconfigures a server starts its own, in a
temporary directory, instead of touching the shared one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM a server, wait up to ``grace`` seconds, then SIGKILL it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrivateRedis:
    """A redis-server on a free loopback port, its files in ``directory``.

    ``start()`` waits until it answers; ``stop()`` shuts it down (SIGTERM: with
    ``appendonly yes`` its data survives a later ``start()``); ``kill()`` is SIGKILL.
    ``bind`` adds addresses to listen on besides loopback (e.g. the host end of a
    test's veth pairs), with protected mode off so clients there may connect
    without a password; ``url`` stays the loopback one.
    """

    def __init__(self, directory: Path, *extra: str, port: int | None = None,
                 bind: Sequence[str] = ()) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed; run scripts/services")
        self.directory = directory
        self.port = port or free_port()
        self.extra: Sequence[str] = extra
        self.bind: Sequence[str] = tuple(bind)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", *self.bind,
                *(("--protected-mode", "no") if self.bind else ()),
                "--dir", str(self.directory), "--save", "", "--logfile", str(self.directory / "redis.log"),
                *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):  # not -LOADING: still reading its AOF
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        log = self.directory / "redis.log"
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {log}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class RabbitVhost:
    """A RabbitMQ virtual host of its own (created and deleted through the
    management API), so a test starts from an empty broker without touching
    anyone else's queues."""

    def __init__(self, name: str, api: str = "http://127.0.0.1:15672", user: str = "guest",
                 password: str = "guest", host: str = "127.0.0.1", port: int = 5672) -> None:
        self.name, self.api, self.user, self.password = name, api.rstrip("/"), user, password
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        from urllib.parse import quote

        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quote(self.name, safe='')}"

    def _request(self, method: str, path: str, body: dict[str, str] | None = None) -> None:
        import base64
        import json
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{self.user}:{self.password}".encode()).decode())
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def create(self) -> RabbitVhost:
        from urllib.parse import quote

        v = quote(self.name, safe="")
        self._request("PUT", f"/api/vhosts/{v}", {})
        self._request("PUT", f"/api/permissions/{v}/{quote(self.user, safe='')}",
                      {"configure": ".*", "write": ".*", "read": ".*"})
        return self

    def delete(self) -> None:
        import urllib.error
        from urllib.parse import quote

        try:
            self._request("DELETE", f"/api/vhosts/{quote(self.name, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def __enter__(self) -> RabbitVhost:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()
