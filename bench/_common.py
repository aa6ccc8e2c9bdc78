"""Shared plumbing of the benchmark scripts: fresh TTG homes, a `ttg worker`
running in the background, timed subprocesses, paired repetitions, the table.

Every comparison is paired: in each repetition TTG and multiprocessing.Pool
run back to back (alternating which goes first), the ratio is taken inside
the repetition, and the median of those ratios is reported. Absolute times
drift on a shared machine; a ratio measured seconds apart drifts much less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")

BENCH = Path(__file__).resolve().parent
WORKLOADS = BENCH / "workloads.py"
PYTHON = sys.executable
TTG = shutil.which("ttg", path=str(Path(sys.executable).parent)) or "ttg"
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


def ref(name: str) -> str:
    """The function reference TTG workers import (a file path, so no install is needed)."""
    return f"{WORKLOADS}:{name}"


# -- results table ---------------------------------------------------------------------


@dataclass
class Row:
    bench: str
    metric: str
    ttg: str
    pool: str
    #: TTG throughput / Pool throughput (= Pool time / TTG time); None when not a comparison
    ratio: float | None
    target: str
    #: True / False, or None when the row has no target
    met: bool | None
    note: str = ""
    samples: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.3f}"
        met = "" if self.met is None else ("met" if self.met else "MISSED")
        return [self.bench, self.metric, self.ttg, self.pool, ratio, self.target, met, self.note]


HEADER = ["benchmark", "metric", "TTG", "Pool", "TTG/Pool", "target", "met", "note"]


def table(rows: list[Row]) -> str:
    """A Markdown table, so the printed figures can go into docs/benchmarks.md as they are."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def ratio_row(bench: str, metric: str, pairs: list[tuple[float, float]], target: float | None,
              unit: Callable[[float], str] = lambda s: f"{s:.3f} s", note: str = "") -> Row:
    """A row from paired (ttg_seconds, pool_seconds) samples: medians and the median ratio.
    With ``target`` None the row is reported without a target."""
    ratios = [p / t for t, p in pairs]
    r = statistics.median(ratios)
    t_med = statistics.median(t for t, _ in pairs)
    p_med = statistics.median(p for _, p in pairs)
    met = None if target is None else r >= target
    if met is False:
        assert target is not None
        note = (note + "; " if note else "") + f"missed by {target - r:.3f} ({r / target - 1:+.1%})"
    return Row(bench, metric, unit(t_med), unit(p_med), r, "—" if target is None else f"≥ {target:g}",
               met, note, {"ttg_seconds": [t for t, _ in pairs], "pool_seconds": [p for _, p in pairs],
                           "ratios": ratios})


def report(name: str, rows: list[Row], args: argparse.Namespace) -> None:
    sys.stderr.flush()
    print(f"\n## {name}\n")
    print(table(rows))
    for row in rows:
        if row.samples.get("ratios"):
            shown = ", ".join(f"{x:.3f}" for x in row.samples["ratios"])
            print(f"  {row.bench} {row.metric}: per-repetition ratios {shown}")
    sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))


def parse_args(description: str, reps: int) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--reps", type=int, default=reps, help=f"repetitions (default {reps}); medians reported")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON (used by run_all.py)")
    return ap.parse_args()


def paired(rep: int, ttg_side: Callable[[], T], pool_side: Callable[[], U]) -> tuple[T, U]:
    """Run both sides of one repetition back to back, Pool first on odd repetitions,
    so neither side always runs on a warmer (or busier) machine."""
    if rep % 2:
        p = pool_side()
        return ttg_side(), p
    t = ttg_side()
    return t, pool_side()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


@dataclass
class Timed:
    seconds: float
    #: peak resident set of the command (its largest process), MB (10^6 bytes)
    peak_rss_mb: float
    stdout: str


def run_timed(cmd: list[str], *, cwd: Path | None = None) -> Timed:
    """Run ``cmd`` to completion; wall time by perf_counter around it, peak RSS by
    GNU time (or the kernel's rusage of the child when GNU time is missing)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = [GNU_TIME, "-f", "%M", "-o", tf.name, *cmd] if GNU_TIME else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate()
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{out}\n{err}")
        if GNU_TIME:
            kb = int(tf.read().strip().splitlines()[-1])
        else:  # pragma: no cover - fallback
            import resource

            kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return Timed(seconds, kb * 1024 / 1e6, out)


@contextmanager
def fresh_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ttg-bench-") as d:
        yield Path(d) / "home"


@contextmanager
def _home_target() -> Iterator[Target]:
    with fresh_home() as home:
        yield Target(home)


@dataclass(frozen=True)
class Target:
    """Where a measurement's sweeps go: a TTG home and, for a networked backend,
    broker and store URLs (empty: the embedded SQLite files under the home)."""

    home: Path
    broker: str = ""
    store: str = ""

    def settings(self, **overrides: Any) -> Any:
        from ttg.settings import Settings

        return Settings(home=self.home, broker=self.broker, store=self.store, **overrides)

    def cli(self) -> list[str]:
        """The command-line options that point a `ttg` command here."""
        out = ["--home", str(self.home)]
        out += ["--broker", self.broker] if self.broker else []
        out += ["--store", self.store] if self.store else []
        return out

    def api(self) -> dict[str, Any]:
        """The keyword arguments that point ttg.submit() here."""
        return {"home": self.home, "broker": self.broker or None, "store": self.store or None}


@contextmanager
def ttg_worker(home: Path, workers: int, *, target: Target | None = None, extra: tuple[str, ...] = (),
               session: bool = False,
               stderr_name: str = "worker.stderr") -> Iterator[subprocess.Popen[bytes]]:
    """``ttg worker`` on ``home`` (or on ``target``'s backend) in the background (not
    --burst: a burst worker exits as soon as the queue is empty, i.e. between the
    warm-up and the measured sweep); stopped with SIGTERM afterwards. ``session``:
    in a process group of its own, so that it can be stopped or killed whole."""
    home.mkdir(parents=True, exist_ok=True)
    errlog = open(home / stderr_name, "w+b")
    where = target.cli() if target is not None else ["--home", str(home)]
    proc = subprocess.Popen([TTG, "worker", "--workers", str(workers), "--allow", str(WORKLOADS),
                             *where, "--grace", "5", *extra],
                            stdout=subprocess.DEVNULL, stderr=errlog, start_new_session=session)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errlog.seek(0)
        text = errlog.read().decode(errors="replace")
        errlog.close()
        unexpected = [ln for ln in text.splitlines() if "received SIGTERM" not in ln and ln.strip()]
        if unexpected:
            log("worker stderr:\n" + "\n".join(unexpected))


def wait_complete(home: Path, sweep_id: str, total: int, *, every: float = 0.01,
                  timeout: float = 600.0, worker: subprocess.Popen[bytes] | None = None,
                  target: Target | None = None) -> float:
    """Poll the store (of ``home``, or of ``target``) until the sweep is complete,
    check every point is ok, and return the time of its last commit (epoch seconds,
    as the worker that committed it read its clock: every store keeps it as the
    sweep's ``updated``).

    One store connection, opened once: ttg.results(...).progress() would open
    (and write-lock, to apply the schema) the SQLite file on every call.
    """
    from ttg.settings import Settings
    from ttg.stores import open_store

    with open_store(target.settings() if target is not None else Settings(home=home)) as store:
        end = time.monotonic() + timeout
        while True:
            p = store.progress(sweep_id)
            if p.complete:
                break
            if time.monotonic() > end:
                raise RuntimeError(f"sweep {sweep_id} not complete after {timeout} s: {p}")
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"`ttg worker` exited with status {worker.returncode} before sweep "
                                   f"{sweep_id} was complete ({p}); its stderr is printed above")
            time.sleep(every)
        last = next(i.updated for i in store.sweeps() if i.sweep.id == sweep_id)
    if p.ok != total:
        raise RuntimeError(f"sweep {sweep_id}: expected {total} ok points, got {p}")
    return last


def check_all_ok(home: Path, total: int, output: str = "") -> None:
    """The home holds exactly one sweep and every one of its ``total`` points is ok."""
    from ttg.settings import Settings
    from ttg.stores import open_store

    with open_store(Settings(home=home)) as store:
        infos = store.sweeps()
    if len(infos) != 1 or infos[0].progress.ok != total:
        raise RuntimeError(f"expected one sweep with {total} ok points, found "
                           f"{[(i.sweep.id, i.progress) for i in infos]}\n{output}")


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one live process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(x) for x in fh.read().split()]
    except OSError:
        kids = []
    for k in kids:
        out += _tree(k)
    return out


_SERVERS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ", "redis-server": "Redis"}


def server_cpu() -> dict[int, tuple[str, float]]:
    """{pid: (server, CPU seconds so far)} of every local PostgreSQL, RabbitMQ and
    Redis process (PostgreSQL: the postmaster, its helpers and every backend)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                name = _SERVERS.get(fh.read().strip())
        except OSError:
            continue
        if name:
            out[int(entry)] = (name, _proc_cpu(int(entry)))
    return out


def server_split(before: dict[int, tuple[str, float]]) -> str:
    """CPU seconds each server used since ``before`` (a backend that ended meanwhile
    is not counted; one that started is counted whole)."""
    used: dict[str, float] = {}
    for pid, (name, cpu) in server_cpu().items():
        used[name] = used.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return ", ".join(f"{k} {v:.2f} s" for k, v in sorted(used.items()) if v >= 0.005)


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` and by this process (all its threads)."""
    return sum(_proc_cpu(p) for p in pids) + time.process_time()


@dataclass
class Measured:
    seconds: float
    #: CPU seconds of every process of that side during the measured window
    #: (TTG: supervisor, children, this polling process; Pool: workers, this process)
    cpu: float
    #: the same, process by process
    split: str = ""


#: How often ttg_throughput polls the store for completion. The end time is the last
#: commit's, as the store records it, so polling less often loses no precision; it
#: only keeps this process and the store server from taking CPU from the workers.
POLL = 0.1


def ttg_throughput(fn: str, total: int, chunk: int, workers: int, *,
                   namespace: Callable[[], Any] | None = None) -> Measured:
    """From submitting a sweep to its last commit, with `ttg worker` already running
    (its children warmed up on a small sweep first). ``namespace``: a context
    manager factory yielding a fresh Target (default: a fresh embedded home)."""
    import ttg

    fresh = namespace or (lambda: _home_target())
    with fresh() as target, ttg_worker(target.home, workers, target=target) as proc:
        ttg.submit(ref(fn), workers * 4, chunk_size=1, name="warmup", **target.api())
        wait_complete(target.home, "warmup", workers * 4, every=0.02, timeout=60, worker=proc, target=target)
        time.sleep(0.2)
        pids = _tree(proc.pid)
        if len(pids) != workers + 1:
            raise RuntimeError(f"expected a supervisor and {workers} children, found processes {pids}")
        each0, self0, servers0 = [_proc_cpu(p) for p in pids], time.process_time(), server_cpu()
        t0 = time.time()
        ttg.submit(ref(fn), total, chunk_size=chunk, name="measured", **target.api())
        seconds = wait_complete(target.home, "measured", total, every=POLL, worker=proc, target=target) - t0
        each = [_proc_cpu(p) - c for p, c in zip(pids, each0, strict=True)]
        own = time.process_time() - self0
        split = (f"supervisor {each[0]:.2f} s, children {', '.join(f'{c:.2f}' for c in each[1:])} s, "
                 f"this process {own:.2f} s; servers (not counted): {server_split(servers0) or 'none'}")
        return Measured(seconds, sum(each) + own, split)


def pool_throughput(fn: Callable[[int], Any], total: int, chunk: int, workers: int, *,
                    ordered_list: bool) -> Measured:
    """The map alone, on a Pool that is already started and warmed up."""
    with multiprocessing.Pool(workers) as pool:
        list(pool.imap_unordered(fn, range(workers * 4), chunksize=1))
        pids = [p.pid for p in pool._pool]  # type: ignore[attr-defined]
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        if ordered_list:
            out = list(pool.imap(fn, range(total), chunksize=chunk))
            n = len(out)
        else:
            n = sum(1 for _ in pool.imap_unordered(fn, range(total), chunksize=chunk))
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - c0
        if ordered_list:
            del out
    assert n == total, n
    return Measured(seconds, cpu)


def ttg_run_cmd(fn: str, total: int, workers: int, chunk: int | str, home: Path) -> list[str]:
    return [TTG, "run", ref(fn), "--range", str(total), "--workers", str(workers),
            "--chunk-size", str(chunk), "--home", str(home)]


def pool_script_cmd(fn: str, total: int, workers: int, chunk: int, *, ordered_list: bool) -> list[str]:
    """`python -c` doing what a user without TTG would write: import, start a Pool, map."""
    if ordered_list:
        body = (f"        out = list(pool.imap({fn}, range({total}), chunksize={chunk}))\n"
                f"    assert len(out) == {total}\n")
    else:
        body = (f"        n = sum(1 for _ in pool.imap_unordered({fn}, range({total}), chunksize={chunk}))\n"
                f"    assert n == {total}\n")
    code = (f"import sys\nsys.path.insert(0, {str(BENCH)!r})\nimport multiprocessing\n"
            f"from workloads import {fn}\n"
            f"if __name__ == '__main__':\n    with multiprocessing.Pool({workers}) as pool:\n" + body)
    return [PYTHON, "-c", code]


def e2e_pair(fn: str, total: int, workers: int, ttg_chunk: int | str, pool_chunk: int, *,
             ordered_list: bool, pool_first: bool, extra: Sequence[str] = ()) -> tuple[float, float]:
    """One repetition of `ttg run` (with `extra` options) vs a Pool script, both from
    the command's start."""

    def ttg_once() -> float:
        with fresh_home() as home:
            r = run_timed([*ttg_run_cmd(fn, total, workers, ttg_chunk, home), *extra])
            check_all_ok(home, total, r.stdout)
        return r.seconds

    def pool_once() -> float:
        return run_timed(pool_script_cmd(fn, total, workers, pool_chunk, ordered_list=ordered_list)).seconds

    if pool_first:
        p = pool_once()
        return ttg_once(), p
    t = ttg_once()
    return t, pool_once()


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return sum(vals) - idle, sum(vals)


def busy_fraction(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (anyone's processes; ours are idle meanwhile)."""
    b0, t0 = _cpu_times()
    time.sleep(seconds)
    b1, t1 = _cpu_times()
    return (b1 - b0) / max(t1 - t0, 1)


def wait_for_quiet(threshold: float = 0.15, max_wait: float = 5.0) -> float:
    """Before a repetition: wait (at most ``max_wait`` s) until other people's processes
    use less than ``threshold`` of the machine, so that both sides of a pair start on a
    quiet machine. Returns the busy fraction last seen (logged with the repetition)."""
    end = time.monotonic() + max_wait
    while True:
        busy = busy_fraction()
        if busy < threshold or time.monotonic() > end:
            return busy
        time.sleep(1.0)


def machine_info() -> dict[str, str]:
    """What the figures were measured on."""
    import platform
    import sqlite3

    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    try:
        commit = subprocess.run(["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import ttg

    return {"nproc": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kb / 2**20:.1f} GiB",
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "ttg": f"{ttg.__version__} (git {commit})", "kernel": platform.release()}


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"
