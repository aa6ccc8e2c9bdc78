"""Per-chunk engine cost of each backend: round trips (requests) and microseconds per chunk.

`ttg worker --workers 1` runs on the backend (bench/_backends.py; the Redis
backends use a private redis-server started here, so that its command
counters hold only our commands). While the worker is stopped (SIGSTOP to its
process group) a sweep of N no-op points is submitted; the worker is then
resumed (SIGCONT) and timed until the store holds every point (polled every
10 ms). Once as N chunks of 1 point ("many"), once as 1 chunk of N points
("one"). The difference divided by N - 1 is the engine's cost of one chunk:

- wall time (one child, so chunks run one after another: this is latency);
- the worker's CPU, supervisor and child, from /proc;
- the servers' CPU, where it can be told apart: the private redis-server, the
  PostgreSQL backends serving this run's database (not the poller's own).
  RabbitMQ runs in one Erlang VM for everyone: not counted;
- requests the worker sent: TCP data segments out of the supervisor's and
  the child's sockets (`ss -ti`), by server. On loopback each request of
  these small messages is one segment, and a pipelined batch is one too, so
  this counts round trips (plus one-way messages such as an AMQP ack).

And the servers' own counters for the "many" run, divided by N:

- Redis: INFO commandstats, every command (those run inside Lua scripts
  included) and the script calls (EVALSHA) among them;
- PostgreSQL: xact_commit + xact_rollback of pg_stat_database for this run's
  database (every store statement is one autocommit transaction). Backends
  publish these counts at most once a second and, when they go idle soon
  after publishing, only 10 s later (PostgreSQL 15's PGSTAT_IDLE_INTERVAL), so
  the script waits 10.5 s before and after that run. pg_stat_statements is
  not loaded on this server, and log_statement would cost more than it counts;
- RabbitMQ: basic.get, ack and publish counts of the run's virtual host from
  the management API (which samples every 5 s: read once at the end, for all
  the chunks of the vhost's life, 5 warm-up and "one" chunks included).

Then the worker's requests per second while idle (3 s, nothing queued), and
the client's cost of submitting: ttg.submit() time per chunk of the "many" sweep.

Run with the project's virtualenv: .venv/bin/python bench/chunk_cost.py [--chunks N]
    [--backends embedded,redis,rabbit+pg,redis+pg]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _backends import Backend, Services, pick, server_versions, vhost_stats
from _common import (
    Row,
    _proc_cpu,
    _tree,
    log,
    machine_info,
    machine_load,
    ref,
    report,
    ttg_worker,
    wait_complete,
    wait_for_quiet,
)

PG_SETTLE = 10.5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1000, help="N, chunks of the \"many\" sweep (default 1000)")
    ap.add_argument("--backends", default="all", help="embedded,redis,rabbit+pg,redis+pg (default all)")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON (used by run_all.py)")
    return ap.parse_args()


# -- counting --------------------------------------------------------------------------------------

_SS_SOCKET = re.compile(r"\s(\S+):(\d+)\s+users:\(\((.*)\)\)")


def tcp_counters(pids: list[int]) -> dict[int, dict[str, int]]:
    """Per remote port: data segments and bytes sent and received by the sockets of ``pids``."""
    text = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                          check=True).stdout
    wanted = {str(p) for p in pids}
    out: dict[int, dict[str, int]] = {}
    lines = text.splitlines()
    for n, line in enumerate(lines[:-1]):
        m = _SS_SOCKET.search(line)
        if not m or not set(re.findall(r"pid=(\d+)", m.group(3))) & wanted:
            continue
        acc = out.setdefault(int(m.group(2)), {"segs_out": 0, "segs_in": 0, "bytes_out": 0, "bytes_in": 0})
        for key, name in (("segs_out", "data_segs_out"), ("segs_in", "data_segs_in"),
                          ("bytes_out", "bytes_sent"), ("bytes_in", "bytes_received")):
            f = re.search(rf"\b{name}:(\d+)", lines[n + 1])
            acc[key] += int(f.group(1)) if f else 0
    return out


def _minus(a: dict[int, dict[str, int]], b: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    out = {port: {k: v - b.get(port, {}).get(k, 0) for k, v in c.items()} for port, c in a.items()}
    return {port: c for port, c in out.items() if any(c.values())}


class ServerSide:
    """A backend's server counters and server CPU, for before/after differences."""

    def __init__(self, backend: Backend, svc: Services, redis_url: str | None, redis_pid: int | None) -> None:
        self.backend, self.svc, self.redis_pid = backend, svc, redis_pid
        self.r: Any = None
        if redis_url is not None:
            import redis

            self.r = redis.Redis.from_url(redis_url)
        #: backends not to count: this process's own connection
        self.pg_exclude: set[int] = set()

    def settle(self) -> None:
        """Wait until what PostgreSQL's backends did so far is in pg_stat_database."""
        if self.backend.store == "postgres":
            time.sleep(PG_SETTLE)

    def counters(self, pg: bool = True) -> dict[str, int]:
        """Redis's counters are exact at once; PostgreSQL's only after settle()."""
        out: dict[str, int] = {}
        if self.r is not None:
            stats = self.r.info("commandstats")
            calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
            out["redis_commands"] = sum(v for k, v in calls.items() if k != "info")
            out["redis_scripts"] = calls.get("evalsha", 0) + calls.get("eval", 0)
        if pg and self.backend.store == "postgres":
            out["pg_transactions"] = self.svc.pg_transactions()
        return out

    def cpu(self) -> float:
        total = _proc_cpu(self.redis_pid) if self.redis_pid is not None else 0.0
        if self.backend.store == "postgres":
            with self.svc.pg_admin() as db:
                rows = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                  (self.svc.pg_db,)).fetchall()
            total += sum(_proc_cpu(int(p)) for (p,) in rows if int(p) not in self.pg_exclude)
        return total

    def close(self) -> None:
        if self.r is not None:
            self.r.close()


def _poll_until_complete(store: Any, sweep_id: str, total: int, worker: subprocess.Popen[bytes],
                         timeout: float = 120.0) -> int:
    """Poll the store every 10 ms until the sweep is complete; returns the number of polls."""
    polls = 0
    end = time.monotonic() + timeout
    while True:
        polls += 1
        p = store.progress(sweep_id)
        if p.complete:
            if p.ok != total:
                raise RuntimeError(f"{sweep_id}: expected {total} ok points, got {p}")
            return polls
        if worker.poll() is not None:
            raise RuntimeError(f"`ttg worker` exited with status {worker.returncode}")
        if time.monotonic() > end:
            raise RuntimeError(f"{sweep_id} not complete after {timeout} s: {p}")
        time.sleep(0.01)


# -- one backend -------------------------------------------------------------------------------------


def _window(label: str, size: int, n: int, target: Any, proc: subprocess.Popen[bytes], pids: list[int],
            store: Any, server: ServerSide, count: bool) -> dict[str, Any]:
    """Submit while the worker is stopped, resume it, time it to the end of the sweep."""
    import ttg

    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        t = time.perf_counter()
        ttg.submit(ref("noop"), n, chunk_size=size, name=label, **target.api())
        submit_s = time.perf_counter() - t
        if count:
            server.settle()
        c0 = server.counters(pg=count)
        me0, tcp0 = tcp_counters([os.getpid()]), tcp_counters(pids)
        cpu0, srv0 = [_proc_cpu(p) for p in pids], server.cpu()
        t0 = time.perf_counter()
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    polls = _poll_until_complete(store, label, n, proc)
    wall = time.perf_counter() - t0
    cpu1, srv1 = [_proc_cpu(p) for p in pids], server.cpu()
    tcp1, me1 = tcp_counters(pids), tcp_counters([os.getpid()])
    c1 = server.counters(pg=False)  # now: an idle worker keeps polling Redis during settle()
    if count:
        server.settle()
        c1.update((k, v) for k, v in server.counters().items() if k.startswith("pg_"))
    mine = _minus(me1, me0)
    return {"wall": wall, "submit": submit_s, "polls": polls,
            "cpu_supervisor": cpu1[0] - cpu0[0], "cpu_child": cpu1[1] - cpu0[1], "cpu_server": srv1 - srv0,
            "server": {k: c1[k] - c0[k] for k in c1 if k in c0}, "tcp": _minus(tcp1, tcp0),
            "poller_requests": sum(c["segs_out"] for c in mine.values())}


def chunk_cost(svc: Services, backend: Backend, n: int, private_redis: str | None,
               redis_pid: int | None) -> dict[str, Any]:
    import ttg
    from ttg.stores import open_store

    uses_redis = backend.broker == "redis" or backend.store == "redis"
    with svc.namespace(backend, redis_url=private_redis if uses_redis else None) as target, \
            ttg_worker(target.home, 1, target=target, session=True) as proc:
        ttg.submit(ref("noop"), 4, chunk_size=1, name="warmup", **target.api())
        wait_complete(target.home, "warmup", 4, every=0.02, timeout=60, worker=proc, target=target)
        time.sleep(0.3)
        pids = _tree(proc.pid)
        if len(pids) != 2:
            raise RuntimeError(f"expected a supervisor and one child, found {pids}")
        server = ServerSide(backend, svc, private_redis if uses_redis else None,
                            redis_pid if uses_redis else None)
        store = open_store(target.settings())
        try:
            if backend.store == "postgres":
                server.pg_exclude.add(int(store.session.run(lambda db: db.info.backend_pid)))  # type: ignore[attr-defined]
            # what one poll of the store costs Redis, to take it out below (PostgreSQL: one
            # statement per poll, counted from this process's own requests)
            c0 = server.counters()
            for _ in range(20):
                store.progress("warmup")
            per_poll = {k: (v - c0[k]) / 20 for k, v in server.counters().items() if k.startswith("redis")}
            runs = {"many": _window("many", 1, n, target, proc, pids, store, server, count=True),
                    "one": _window("one", n, n, target, proc, pids, store, server, count=False)}
            # an idle worker: what it asks the servers for while there is nothing to do
            time.sleep(0.5)
            tcp0, t0, cpu0 = tcp_counters(pids), time.perf_counter(), [_proc_cpu(p) for p in pids]
            time.sleep(3.0)
            idle_s = time.perf_counter() - t0
            tcp1, cpu1 = tcp_counters(pids), [_proc_cpu(p) for p in pids]
            idle = {"seconds": idle_s, "tcp": _minus(tcp1, tcp0), "cpu": sum(cpu1) - sum(cpu0)}
        finally:
            store.close()
            server.close()
        amqp = _settled_vhost_stats(target.broker, n + 5) if backend.broker == "amqp" else {}
    ports = {6379: "redis", 5432: "postgresql", 5672: "amqp"}
    if private_redis:
        ports[int(private_redis.rsplit(":", 1)[1].split("/")[0])] = "redis"
    return {"runs": runs, "idle": idle, "per_poll": per_poll, "amqp": amqp, "n": n, "ports": ports}


def _settled_vhost_stats(url: str, expect_gets: int, timeout: float = 20.0) -> dict[str, int]:
    """The vhost's counters once the management plugin has caught up (it samples every 5 s)."""
    end = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < end:
        last = vhost_stats(url)
        if last.get("get", 0) >= expect_gets:
            return last
        time.sleep(1.0)
    log(f"  (the management API's counters did not reach {expect_gets} gets in {timeout:g} s: {last})")
    return last


# -- figures -------------------------------------------------------------------------------------------


def figures(r: dict[str, Any]) -> dict[str, Any]:
    """Per-chunk figures of one backend from chunk_cost()'s measurements."""
    n = r["n"]
    many, one = r["runs"]["many"], r["runs"]["one"]
    ports = {int(k): v for k, v in r["ports"].items()}

    def per(field: str) -> float:
        return (many[field] - one[field]) / (n - 1) * 1e6

    requests = {}
    for port, c in many["tcp"].items():
        name = ports.get(int(port), str(port))
        base = one["tcp"].get(port, {}).get("segs_out", 0)
        requests[name] = requests.get(name, 0.0) + (c["segs_out"] - base) / (n - 1)
    server: dict[str, float] = {}
    s = many["server"]
    if "redis_commands" in s:
        server["redis_commands"] = (s["redis_commands"] - many["polls"] * r["per_poll"]["redis_commands"]) / n
        server["redis_scripts"] = (s["redis_scripts"] - many["polls"] * r["per_poll"]["redis_scripts"]) / n
    if "pg_transactions" in s:
        server["pg_transactions"] = (s["pg_transactions"] - many["poller_requests"]) / n
    amqp = {}
    if r["amqp"]:
        chunks = n + 5
        amqp = {k: r["amqp"][k] / chunks for k in ("get", "ack")}
        amqp["publish_by_workers"] = (r["amqp"]["publish"] - chunks) / chunks  # submits published one each
    idle = r["idle"]
    return {
        "wall_us": per("wall"), "cpu_supervisor_us": per("cpu_supervisor"), "cpu_child_us": per("cpu_child"),
        "cpu_server_us": per("cpu_server"), "requests": requests, "server": server, "amqp": amqp,
        "submit_us": many["submit"] / n * 1e6,
        "idle_requests_per_s": sum(c["segs_out"] for c in idle["tcp"].values()) / idle["seconds"],
        "idle_cpu_share": idle["cpu"] / idle["seconds"],
    }


def row(key: str, f: dict[str, Any]) -> Row:
    counted = []
    s = f["server"]
    if "redis_commands" in s:
        counted.append(f"Redis {s['redis_commands']:.2f} commands, of them "
                       f"{s['redis_scripts']:.2f} script calls")
    if "pg_transactions" in s:
        counted.append(f"PostgreSQL {s['pg_transactions']:.2f} transactions")
    if f["amqp"]:
        a = f["amqp"]
        counted.append(f"RabbitMQ basic.get {a['get']:.2f}, ack {a['ack']:.2f}, "
                       f"publish by workers {a['publish_by_workers']:.2f}")
    req = ", ".join(f"{k} {v:.2f}" for k, v in f["requests"].items()) or "none (no network)"
    return Row("chunk", f"{key}: one chunk", f"{f['wall_us']:.0f} µs wall", "", None, "", None,
               f"requests {sum(f['requests'].values()):.2f} ({req}); server counters: "
               f"{'; '.join(counted) or '—'}; worker CPU {f['cpu_supervisor_us'] + f['cpu_child_us']:.0f} µs "
               f"(supervisor {f['cpu_supervisor_us']:.0f}, child {f['cpu_child_us']:.0f}); server CPU "
               f"{f['cpu_server_us']:.0f} µs; submit {f['submit_us']:.0f} µs per chunk; idle worker "
               f"{f['idle_requests_per_s']:.0f} requests/s, {f['idle_cpu_share']:.1%} of a CPU", f)


def summary(backends: list[Backend], figs: dict[str, dict[str, Any]]) -> str:
    head = ["backend", "requests per chunk", "server counters per chunk", "wall µs per chunk",
            "worker CPU µs per chunk", "server CPU µs per chunk", "submit µs per chunk",
            "idle worker, requests/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in backends:
        f = figs[b.key]
        s, a = f["server"], f["amqp"]
        counted = []
        if "redis_commands" in s:
            counted.append(f"Redis: {s['redis_commands']:.1f} commands ({s['redis_scripts']:.1f} scripts)")
        if "pg_transactions" in s:
            counted.append(f"PostgreSQL: {s['pg_transactions']:.2f} transactions")
        if a:
            counted.append(f"AMQP: get {a['get']:.2f}, ack {a['ack']:.2f}")
        req = " + ".join(f"{v:.2f} {k}" for k, v in f["requests"].items()) or "0 (no server)"
        lines.append("| " + " | ".join([
            b.label, req, "; ".join(counted) or "—", f"{f['wall_us']:.0f}",
            f"{f['cpu_supervisor_us'] + f['cpu_child_us']:.0f}",
            f"{f['cpu_server_us']:.0f}" if b.key != "embedded" else "—", f"{f['submit_us']:.0f}",
            f"{f['idle_requests_per_s']:.0f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    from ttg.testing import PrivateRedis

    args = parse_args()
    backends = pick(args.backends)
    info = machine_info()
    log(f"per-chunk cost: {', '.join(b.key for b in backends)}; {args.chunks} chunks; {machine_load()}; "
        f"{info['ttg']}; {server_versions(backends)}")
    started = time.monotonic()
    figs: dict[str, dict[str, Any]] = {}
    with Services(backends) as svc, tempfile.TemporaryDirectory(prefix="ttg-bench-redis-") as d:
        need_redis = any(b.broker == "redis" or b.store == "redis" for b in backends)
        private = PrivateRedis(Path(d)).start() if need_redis else None
        try:
            for b in backends:
                busy = wait_for_quiet()
                r = chunk_cost(svc, b, args.chunks, private.url if private else None,
                               private.proc.pid if private and private.proc else None)
                figs[b.key] = figures(r)
                many, one = r["runs"]["many"], r["runs"]["one"]
                log(f"  {b.key:<9} (busy before {busy:.0%}; {machine_load()}): {args.chunks} chunks "
                    f"{many['wall']:.3f} s, 1 chunk {one['wall']:.3f} s; CPU supervisor/child "
                    f"{many['cpu_supervisor']:.3f}/{many['cpu_child']:.3f} s vs "
                    f"{one['cpu_supervisor']:.3f}/{one['cpu_child']:.3f} s; server CPU "
                    f"{many['cpu_server']:.3f} vs {one['cpu_server']:.3f} s; server counters "
                    f"{many['server']} (polls {many['polls']}, "
                    f"poller requests {many['poller_requests']}, Redis per poll {r['per_poll']}); "
                    f"worker TCP {many['tcp']} vs {one['tcp']}; vhost {r['amqp']}; idle {r['idle']}")
        finally:
            if private is not None:
                private.stop()
    rows = [row(b.key, figs[b.key]) for b in backends]
    report(f"Per-chunk engine cost ({args.chunks} no-op chunks of 1 point vs 1 chunk of {args.chunks})",
           rows, args)
    print("\n### One line per backend\n")
    print(summary(backends, figs))
    print(f"\n({time.monotonic() - started:.0f} s; {machine_load()})")


if __name__ == "__main__":
    main()
