"""Soak: sweeps run for a set time on each backend pair while a chaos loop
injects faults, and every record is checked.

For each backend pair of bench/_backends.py, for --seconds (default 600):

- three ``ttg worker --workers 2`` processes, each in a session of its own, and
  one worker in this process (two thread children) whose clock the chaos
  steps: ttg.testing.SteppedClock, the host's monotonic clock with a wall
  clock that jumps, as NTP or a laptop resuming makes it;
- a feeder that keeps two sweeps of ``sleep_square`` queued (2 ms a point,
  value x*x; 3,000 points in chunks of 30) and submits the next as one
  completes;
- a chaos loop that every 0.5 to 2 s strikes with one fault the pair has:

  kill-child       SIGKILL a child of a worker (its supervisor replaces it)
  kill-supervisor  SIGKILL a worker's supervisor (its children follow it),
                   then start that worker again
  restart-redis    SIGKILL the pair's private Redis (appendfsync always, so an
                   acknowledged write survives) and start it again 0 to 2 s later
  terminate-pg     pg_terminate_backend() every connection to the run's database
  close-amqp       close every AMQP connection of the run's virtual host
  clock-step       step the in-process worker's wall clock by +-1 hour
  disk-full        (embedded) fill the home's 256 MB tmpfs for 2 s, then free it

Checked for each completed sweep: exactly one record per index (the committed
ranges are disjoint and cover it), and every record ok with the value x*x (the
function never fails, so an index recorded crashed, timeout or error was
charged for a fault of the infrastructure). At the end: no process the soak
started is left. Reported besides: how many chunks were committed by a later
delivery than their first (a chunk whose worker was killed, or whose lease
lapsed or whose connection closed, is delivered again; never recorded
against its points: core/retry.py).

Run with the project's virtualenv, as root (the tmpfs):
    .venv/bin/python bench/soak.py [--seconds 600] [--pairs embedded,redis,rabbit+pg,redis+pg]
Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from _backends import Backend, Services, pick, rabbit_api, server_versions
from _common import TTG, WORKLOADS, Target, _tree, log, machine_info, machine_load, ref

TOTAL, CHUNK, WORKERS, LEASE = 3_000, 30, 3, 5.0


class Soak:
    """One backend pair under chaos for ``seconds``."""

    def __init__(self, svc: Services, backend: Backend, seconds: float, tmp: Path, logs: Path,
                 only: set[str] | None = None) -> None:
        self.svc, self.backend, self.seconds, self.tmp, self.logs = svc, backend, seconds, tmp, logs
        self.only = only
        self.faults: Counter[str] = Counter()
        self.problems: list[str] = []
        self.sweeps = self.records = self.redelivered = 0
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * WORKERS
        self.seen: set[int] = set()  # every worker process (supervisors and children) seen
        self.redis: Any = None
        self.disk: Path | None = None
        self.stopping = threading.Event()

    # -- the pair's servers and home ---------------------------------------------------

    @contextmanager
    def target(self) -> Iterator[Target]:
        b = self.backend
        if b.broker == "redis" or b.store == "redis":
            from ttg.testing import PrivateRedis

            self.redis = PrivateRedis(self.tmp / "redis", "--appendonly", "yes", "--appendfsync", "always")
            self.redis.start()
        try:
            if b.key == "embedded":
                with self._small_disk() as home:
                    yield Target(home)
            else:
                with self.svc.namespace(b, redis_url=self.redis.url if self.redis else None) as t:
                    yield t
        finally:
            if self.redis is not None:
                self.redis.kill()

    @contextmanager
    def _small_disk(self) -> Iterator[Path]:
        mount = self.tmp / "disk"
        mount.mkdir()
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)],
                              capture_output=True, text=True)
        if made.returncode == 0:
            self.disk = mount
        else:
            log(f"  (no tmpfs: {made.stderr.strip()}; the disk-full fault is left out)")
        try:
            yield mount / "home"
        finally:
            if made.returncode == 0:
                subprocess.run(["umount", "-l", str(mount)], check=False)

    # -- workers -----------------------------------------------------------------------

    def start_worker(self, i: int, t: Target) -> None:
        cmd = [TTG, "worker", "--workers", "2", "--allow", str(WORKLOADS), *t.cli(),
               "--lease-seconds", str(LEASE), "--grace", "5"]
        with open(self.logs / f"{self.backend.key}-worker{i}.stderr", "ab") as err:
            self.workers[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                               start_new_session=True)

    def tend(self, t: Target) -> None:
        """Start again any worker that exited (killed, or stopped by a full disk)."""
        for i, w in enumerate(self.workers):
            if w is None or w.poll() is not None:
                self.start_worker(i, t)
            else:
                self.seen.update(_tree(w.pid))

    # -- the chaos ---------------------------------------------------------------------

    def kinds(self) -> list[str]:
        b = self.backend
        out = ["kill-child", "kill-supervisor", "clock-step"]
        out += ["restart-redis"] if self.redis is not None else []
        out += ["terminate-pg"] if b.store == "postgres" else []
        out += ["close-amqp"] if b.broker == "amqp" else []
        out += ["disk-full"] if self.disk is not None else []
        return [k for k in out if self.only is None or k in self.only]

    def strike(self, kind: str, t: Target, clock: Any) -> bool:
        """Inject one fault; False when there was nothing to strike."""
        live = [w for w in self.workers if w is not None and w.poll() is None]
        if kind == "kill-child":
            kids = [k for w in live for k in _tree(w.pid)[1:]]
            if not kids:
                return False
            with suppress(ProcessLookupError):
                os.kill(random.choice(kids), signal.SIGKILL)
        elif kind == "kill-supervisor":
            if not live:
                return False
            victim = random.choice(live)
            with suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        elif kind == "restart-redis":
            self.redis.kill()
            time.sleep(random.uniform(0, 2))
            self.redis.start(timeout=30)
        elif kind == "terminate-pg":
            with self.svc.pg_admin() as db:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (self.svc.pg_db,))
        elif kind == "close-amqp":
            vhost = quote(unquote(urlsplit(t.broker).path[1:]), safe="")
            names = [c["name"] for c in rabbit_api(f"/api/vhosts/{vhost}/connections")]
            if not names:
                return False
            for name in names:
                with suppress(OSError):
                    rabbit_api(f"/api/connections/{quote(name, safe='')}", "DELETE")
        elif kind == "clock-step":
            clock.step(random.choice([3600.0, -3600.0]))
        elif kind == "disk-full":
            assert self.disk is not None
            ballast = self.disk / "ballast"
            free = os.statvfs(self.disk).f_bavail * os.statvfs(self.disk).f_frsize
            with open(ballast, "wb") as fh:
                with suppress(OSError):
                    os.posix_fallocate(fh.fileno(), 0, max(free, 1))
            time.sleep(2)
            ballast.unlink()
        return True

    # -- the sweeps --------------------------------------------------------------------

    def feed(self, t: Target, active: list[str], n: int) -> int:
        """Keep two sweeps queued: submit the next ones (retrying through faults)."""
        import ttg

        while len(active) < 2 and not self.stopping.is_set():
            name = f"soak-{n}"
            try:
                ttg.submit(ref("sleep_square"), TOTAL, chunk_size=CHUNK, name=name, **t.api())
            except ttg.TtgError as exc:
                log(f"  (submit {name}: {exc}; trying again)")
                time.sleep(0.5)
                continue
            active.append(name)
            n += 1
        return n

    def check_done(self, t: Target, active: list[str]) -> None:
        """Check, and drop from ``active``, the sweeps that completed."""
        import ttg
        from ttg.stores import open_store

        try:
            with open_store(t.settings()) as store:
                for name in list(active):
                    if store.progress(name).complete:
                        self.check(store, name)
                        active.remove(name)
        except ttg.TtgError:
            pass  # a fault struck the store meanwhile: look again next time

    def check(self, store: Any, name: str) -> None:
        at = 0
        for rec in store.chunks(name):
            if rec.start != at:
                kind = "a duplicated result" if rec.start < at else "a lost result"
                self.problems.append(f"{name}: {kind} at index {min(at, rec.start)}")
            bad = [rec.start + k for k, v in enumerate(rec.values)
                   if rec.status(k) != "ok" or v != (rec.start + k) ** 2]
            if bad:
                i = bad[0] - rec.start
                self.problems.append(f"{name}: {len(bad)} wrong record(s), first index {bad[0]}: "
                                     f"{rec.status(i)} {rec.values[i]!r}")
            self.redelivered += rec.attempt > 1
            at = max(at, rec.stop)
        if at != TOTAL:
            self.problems.append(f"{name}: records end at index {at}, not {TOTAL}")
        self.sweeps += 1
        self.records += at

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from ttg.testing import SteppedClock

        clock = SteppedClock()
        started = time.monotonic()
        with self.target() as t:
            try:
                self.chaos(t, clock, started)
            finally:  # whatever ends the run, an error of this harness too, no worker is left
                self.stop_workers()
        return {"pair": self.backend.key, "seconds": round(time.monotonic() - started), "sweeps": self.sweeps,
                "records": self.records, "faults": dict(self.faults), "redelivered": self.redelivered,
                "problems": self.problems}

    def chaos(self, t: Target, clock: Any, started: float) -> None:
        t.home.mkdir(parents=True, exist_ok=True)
        active: list[str] = []
        n = self.feed(t, active, 0)  # (creates the store before any worker opens it)
        inproc = InProcessWorker(t, clock)
        try:
            self.tend(t)
            next_strike = time.monotonic() + random.uniform(0.5, 2)
            while time.monotonic() - started < self.seconds:
                if time.monotonic() >= next_strike and self.kinds():
                    kind = random.choice(self.kinds())
                    if self.strike(kind, t, clock):
                        self.faults[kind] += 1
                    next_strike = time.monotonic() + random.uniform(0.5, 2)
                inproc.tend()
                self.tend(t)
                self.check_done(t, active)
                n = self.feed(t, active, n)
                time.sleep(0.25)
            self.stopping.set()  # no new sweeps; the faults stop; the last sweeps finish
            end = time.monotonic() + 180
            while active and time.monotonic() < end:
                inproc.tend()
                self.tend(t)
                self.check_done(t, active)
                time.sleep(0.1)
            if active:
                self.problems.append(f"sweeps {active} did not complete within 180 s after the chaos stopped")
        finally:
            inproc.stop()
        self.stop_workers()
        left = leftovers(t.home, self.seen)
        if left:
            self.problems.append(f"processes left: {left}")

    def stop_workers(self) -> None:
        for w in self.workers:
            if w is not None and w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in self.workers:
            if w is not None:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    self.problems.append(f"worker {w.pid} did not stop within 30 s of SIGTERM")
                    os.killpg(w.pid, signal.SIGKILL)
                    w.wait()


class InProcessWorker:
    """A supervisor with two thread children in this process, on the pair's
    broker and store, reading time from ``clock`` (which the chaos steps)."""

    def __init__(self, t: Target, clock: Any) -> None:
        self.t, self.clock = t, clock
        self.start()

    def start(self) -> None:
        from ttg.brokers import open_broker
        from ttg.core.funcref import AllowList
        from ttg.stores import open_store
        from ttg.testing import ThreadLauncher
        from ttg.worker.child import ChildOptions
        from ttg.worker.supervisor import Supervisor

        settings = self.t.settings(lease_seconds=LEASE, grace_seconds=5)
        options = ChildOptions(f"soak-in-process-{os.getpid()}", AllowList([str(WORKLOADS)]),
                               poll_seconds=0.1)
        self.broker = open_broker(settings, clock=self.clock)
        launcher = ThreadLauncher(lambda: open_broker(settings, clock=self.clock),
                                  lambda: open_store(settings, create=False), options)
        self.sup = Supervisor(settings, options, self.broker, processes=2, launcher=launcher,
                              clock=self.clock)
        self.thread = threading.Thread(target=self._loop, name="soak-in-process-worker", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            self.sup.start()
            while self.sup.slots:
                self.sup.step()
        except Exception as exc:  # a fault it did not survive: tend() starts another
            log(f"  (in-process worker stopped: {type(exc).__name__}: {exc})")
        finally:
            with suppress(Exception):
                self.sup.close()
            with suppress(Exception):
                self.broker.close()

    def tend(self) -> None:
        if not self.thread.is_alive():
            self.start()

    def stop(self) -> None:
        self.sup.request_stop()
        self.thread.join(60)


def leftovers(home: Path, seen: set[int]) -> list[int]:
    """Processes of the soak still alive: any seen worker process, or any process
    whose command line names the pair's home."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and ((int(entry.name) in seen and "ttg" in cmd) or str(home) in cmd):
            left.append(int(entry.name))
    return left


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| pair | seconds | faults injected | sweeps checked | records checked | lost or duplicated "
             "| wrongly failed | processes left | chunks committed by a later delivery |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))
        lost = sum("lost" in p or "duplicated" in p or "records end" in p for p in r["problems"])
        wrong = sum("wrong record" in p for p in r["problems"])
        left = sum("processes left" in p for p in r["problems"])
        lines.append(f"| {r['pair']} | {r['seconds']} | {sum(r['faults'].values())}: {faults} "
                     f"| {r['sweeps']} | {r['records']:,} | {lost} | {wrong} | {left} "
                     f"| {r['redelivered']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600, help="chaos time per pair (default 600)")
    ap.add_argument("--pairs", default="all", help="embedded,redis,rabbit+pg,redis+pg (default all)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the chaos (default: random, printed)")
    ap.add_argument("--faults", default=None, help="only these faults (comma-separated; default every one "
                    "the pair has)")
    ap.add_argument("--logs", type=Path, default=None,
                    help="keep the workers' stderr here (default: a temporary directory, removed)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    random.seed(seed)
    backends = pick(args.pairs)
    log(f"soak: {', '.join(b.key for b in backends)}; {args.seconds:g} s each; seed {seed}; "
        f"{machine_load()}; {machine_info()['ttg']}; {server_versions(backends)}")
    results = []
    with Services(backends) as svc, tempfile.TemporaryDirectory(prefix="ttg-soak-logs-") as default_logs:
        logs = args.logs or Path(default_logs)
        logs.mkdir(parents=True, exist_ok=True)
        for b in backends:
            with tempfile.TemporaryDirectory(prefix="ttg-soak-") as d:
                only = set(args.faults.split(",")) if args.faults else None
                r = Soak(svc, b, args.seconds, Path(d), logs, only).run()
            results.append(r)
            log(f"  {b.key}: {r['sweeps']} sweeps, {r['records']:,} records checked; faults {r['faults']}; "
                f"{r['redelivered']} chunks committed by a later delivery; "
                f"problems: {r['problems'] or 'none'}")
    print("\n## Soak\n")
    print(report(results))
    if any(r["problems"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
