"""The ``ttg`` command: thin commands that parse flags and call the library.

Every TtgError is printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..brokers import open_broker
from ..client import submit as client
from ..client.local import run_local
from ..client.status import status as client_status
from ..client.worker import require_allowed, run_worker
from ..core import funcref
from ..core.codec import Codec
from ..core.sweep import Options, Sweep, parse_chunk_size
from ..errors import ConfigError, SpecError, TtgError
from ..settings import Settings
from ..spaces import Space, load_spec_file, space_from_spec
from ..spaces.flags import grid_axis, parse_range, random_param
from ..stores import open_presence, open_store
from ..worker.child import ChildOptions
from .observe import dashboard, exporter, plot
from .options import common as _common
from .options import settings_from as _settings
from .ui import Display, print_summary, sweeps_table, workers_table


def _sweep_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.argument("function"),
        click.option("--range", "range_", metavar="N|START:STOP[:STEP]", help="Range space."),
        click.option("--grid", multiple=True, metavar="NAME=VALUES",
                     help="Grid axis: a,b,c | linspace:START:STOP:NUM | logspace:... | "
                          "range:START:STOP[:STEP]."),
        click.option("--random", "random_n", type=int, metavar="N", help="Random space of N points."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random."),
        click.option("--param", multiple=True, metavar="NAME=DIST:ARGS",
                     help="Random parameter: uniform:LOW:HIGH | loguniform | normal:MEAN:STD | "
                          "integers:LOW:HIGH | choice:A,B,C."),
        click.option("--space", "space_file", type=click.Path(path_type=Path),
                     help="Space spec (.yaml, .toml, .json) or rows file (.csv, .jsonl, .parquet)."),
        click.option("--chunk-size", default="auto", show_default=True, help="Points per chunk, or auto."),
        click.option("--max-attempts", type=int, default=3, show_default=True,
                     help="Crashes or timeouts of a chunk before it is split."),
        click.option("--timeout", type=float, help="Seconds one call of the function may take."),
        click.option("--target-chunk-seconds", type=float, default=1.0, show_default=True,
                     help="Target chunk duration with --chunk-size auto."),
        click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first."),
        click.option("--batched", is_flag=True,
                     help="Call the function once per chunk with the points as columns."),
        click.option("--name", help="Name the sweep (default: derived from its content)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ttg")
def cli() -> None:
    """Run one Python function over a huge parameter space: exactly one result per index."""


@cli.command()
@_sweep_options
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes [TTG_WORKERS, default: one per core].")
@click.option("--allow", multiple=True, help="Also allow these functions/modules (for chained sweeps).")
@_common
def run(workers: int | None, allow: tuple[str, ...], **kw: Any) -> None:
    """Submit a sweep, run local workers until it is done, and summarize it."""
    s = _settings(kw, workers=workers, allow=allow or None)
    sweep, space = _make_sweep(kw)
    started = time.monotonic()
    with open_broker(s) as broker, open_store(s) as store:
        sub = client.submit(sweep, space, broker, store, Codec(s.secret))
        with Display(sweep, sub.already_done) as display:
            watcher = run_local(s, sweep, broker, store, display.update)
        dead = client.open_dead_letters(sweep, broker, store)
    print_summary(sweep, watcher.progress, time.monotonic() - started, watcher.outcome,
                  sub.already_done, dead)
    if watcher.outcome == "interrupted":
        sys.exit(130)
    if watcher.outcome == "stuck":
        sys.exit(1)


@cli.command()
@_sweep_options
@click.option("--no-queue", is_flag=True,
              help="Only register the sweep in the store (for `ttg worker --shard`); no broker.")
@_common
def submit(no_queue: bool, **kw: Any) -> None:
    """Queue a sweep for workers started with `ttg worker`."""
    s = _settings(kw)
    sweep, space = _make_sweep(kw)
    if no_queue:
        with open_store(s) as store:
            store.register(sweep)
        click.echo(f"registered {sweep.id}: {sweep.total} points")
        click.echo(sweep.id)
        return
    with open_broker(s) as broker, open_store(s) as store:
        sub = client.submit(sweep, space, broker, store, Codec(s.secret))
    click.echo(f"submitted {sweep.id}: {sweep.total} points, {sub.queued} chunks queued"
               + (f", {sub.already_done} points already done" if sub.already_done else ""))
    click.echo(sweep.id)


@cli.command()
@click.option("--allow", multiple=True, metavar="PATTERN",
              help="Functions this worker may run: pkg.mod:fn, pkg.mod, pkg.*, file.py [TTG_ALLOW].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Child processes [TTG_WORKERS, default: one per core].")
@click.option("--sweep", "sweep_id", help="Work only on this sweep.")
@click.option("--burst", is_flag=True, help="Exit when no work is left.")
@click.option("--max-chunks-per-child", type=int, help="Replace a child after this many chunks.")
@click.option("--max-memory-per-child", type=float, metavar="MB",
              help="Replace a child once its memory exceeds this many MiB.")
@click.option("--grace", type=float, help="Seconds to finish chunks after SIGTERM [TTG_GRACE_SECONDS].")
@click.option("--lease-seconds", type=float, help="Lease period [TTG_LEASE_SECONDS, default 10].")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port (/metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address for --metrics-port (0.0.0.0 in a pod, for Prometheus to reach it).")
@click.option("--shard", metavar="I/N|auto/N",
              help="No broker: compute slice I of N of --sweep into the store, then exit (auto: I "
                   "from JOB_COMPLETION_INDEX) [TTG_SHARD].")
@_common
def worker(allow: tuple[str, ...], workers: int | None, sweep_id: str | None, burst: bool,
           max_chunks_per_child: int | None, max_memory_per_child: float | None,
           grace: float | None, lease_seconds: float | None, metrics_port: int | None,
           metrics_host: str, shard: str | None, **kw: Any) -> None:
    """Run a supervisor and its child processes, computing chunks from the broker."""
    s = _settings(kw, workers=workers, allow=allow or None, grace_seconds=grace,
                  lease_seconds=lease_seconds, shard=shard)
    options = ChildOptions(worker_id="", allow=funcref.AllowList(s.allow), sweep_id=sweep_id,
                           burst=burst, max_chunks=max_chunks_per_child,
                           max_memory_mb=max_memory_per_child)
    require_allowed(options)
    if s.shard:
        if metrics_port is not None or burst:
            raise ConfigError("--shard does not take --metrics-port or --burst (a shard exits when "
                              "its slice is done); watch its progress with `ttg exporter`.")
        _run_shard(s, sweep_id, options)
        return
    run_worker(s, options, metrics=None if metrics_port is None else (metrics_host, metrics_port))


@cli.command(name="list")
@_common
def list_(**kw: Any) -> None:
    """List the sweeps in the store."""
    s = _settings(kw)
    if not s.broker and not s.store and not (s.home / "results.db").exists():
        click.echo(f"no sweeps yet: no TTG home at {s.home.resolve()} (nor in a parent directory); "
                   "start one with `ttg run`, or give --home")
        return
    with open_broker(s) as broker, open_store(s) as store:
        sweeps_table(store.sweeps(), broker)


@cli.command()
@click.argument("name", required=False)
@_common
def status(name: str | None, **kw: Any) -> None:
    """Show one sweep's progress and queue (or every sweep)."""
    s = _settings(kw)
    with open_broker(s) as broker, open_store(s) as store:
        if name is None:
            sweeps_table(store.sweeps(), broker)
            return
        with open_presence(s) as presence:
            st = client_status(name, broker, store, presence)
        p, q, sweep = st.progress, st.queue, st.sweep
        click.echo(f"sweep     {sweep.id} ({st.state})")
        click.echo(f"function  {sweep.function}")
        click.echo(f"space     {sweep.space.get('kind')}, {sweep.total} points")
        click.echo(f"done      {p.done}/{p.total} ({100 * p.done / max(p.total, 1):.1f}%)")
        click.echo("status    " + "  ".join(f"{k} {v}" for k, v in p.by_status().items()))
        dead = sum(len(c) for c in st.dead)
        click.echo(f"queue     {q.queued} queued, {q.leased} leased chunks" + (
            f"; {dead} points in dead-lettered chunks without results (`ttg errors {name}` says why, "
            f"`ttg retry {name}` queues them again)" if dead else ""))
        for worker, why in st.refusing:
            click.echo(f"refused   by worker {worker}, which leaves its chunks to others: {why}")


@cli.command()
@click.option("--all", "every", is_flag=True, help="Also list workers that stopped (kept for a day).")
@_common
def workers(every: bool, **kw: Any) -> None:
    """List the workers by their presence beats: alive, or stale (no beat for 3 intervals)."""
    s = _settings(kw)
    with open_presence(s) as presence:
        workers_table(presence.workers(), every=every)


@cli.command()
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file: .parquet, .csv or .jsonl.")
@_common
def results(name: str, output: Path, **kw: Any) -> None:
    """Write a sweep's results table to a file."""
    s = _settings(kw)
    with open_store(s) as store:
        from ..client.table import Table

        sweep = store.sweep(name)
        rows = Table(store, sweep).write(output)
        p = store.progress(name)
    click.echo(f"wrote {rows} rows to {output}" + (f" ({p.total - p.done} points not done yet)"
                                                    if not p.complete else ""))


@cli.command()
@click.argument("name")
@click.option("--traceback", "show_tb", is_flag=True, help="Show each traceback.")
@click.option("--limit", type=int, default=50, show_default=True, help="Show at most this many.")
@_common
def errors(name: str, show_tb: bool, limit: int, **kw: Any) -> None:
    """List the failed indices of a sweep with their messages."""
    s = _settings(kw)
    from ..client.table import Table

    with open_broker(s) as broker, open_store(s) as store:
        sweep = store.sweep(name)
        shown = 0
        for row in Table(store, sweep).errors():
            if shown >= limit:
                click.echo(f"... more; use --limit to see them (total failed: "
                           f"{store.progress(name).failed})")
                break
            click.echo(f"{row.index}\t{row.status}\t{row.type}: {row.message}\t{row.point!r}")
            if show_tb and row.traceback:
                click.echo(row.traceback.rstrip())
            shown += 1
        dead = broker.dead_letters(name)
    for d in dead:
        click.echo(f"dead-letter {d.chunk}: {d.reason}")
    if not shown and not dead:
        click.echo(f"no failed indices in {name}")


@cli.command()
@click.argument("name")
@click.option("--status", "statuses", default="error,crashed,timeout", show_default=True,
              help="Which statuses to re-run.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Local worker processes [default: one per core].")
@click.option("--no-workers", is_flag=True, help="Only queue them (workers run elsewhere).")
@_common
def retry(name: str, statuses: str, workers: int | None, no_workers: bool, **kw: Any) -> None:
    """Re-run the failed, crashed and timed-out indices of a sweep."""
    wanted = tuple(x.strip() for x in statuses.split(",") if x.strip())
    bad = set(wanted) - {"error", "crashed", "timeout"}
    if bad:
        raise ConfigError(f"unknown status {', '.join(sorted(bad))}; use error, crashed or timeout.")
    s = _settings(kw, workers=workers)
    started = time.monotonic()
    with open_broker(s) as broker, open_store(s) as store:
        sweep = store.sweep(name)
        n = client.requeue_failed(sweep, broker, store, Codec(s.secret), wanted)
        click.echo(f"re-queued {n} indices of {name}")
        if no_workers or not n:
            return
        kept = store.progress(name).done  # the records the retry did not reopen
        with Display(sweep, kept) as display:
            watcher = run_local(s, sweep, broker, store, display.update)
        dead = client.open_dead_letters(sweep, broker, store)
    print_summary(sweep, watcher.progress, time.monotonic() - started, watcher.outcome, kept, dead)


@cli.command()
@click.argument("name")
@_common
def cancel(name: str, **kw: Any) -> None:
    """Cancel a sweep: drop its queued chunks; its results so far stay."""
    s = _settings(kw)
    with open_broker(s) as broker, open_store(s) as store:
        dropped = client.cancel(name, broker, store)
    click.echo(f"cancelled {name}: {dropped} chunks dropped; run it again to resume")


# -- helpers ----------------------------------------------------------------------------


def _run_shard(s: Settings, sweep_id: str | None, options: ChildOptions) -> None:
    from ..client import shard as shard_mod

    if not sweep_id:
        raise ConfigError("--shard needs --sweep ID: register the sweep first with "
                          "`ttg submit ... --no-queue` (or `--name ID`).")
    part = shard_mod.parse(s.shard)
    out = shard_mod.run(s, sweep_id, part, options)
    click.echo(f"shard {part.index}/{part.count} of {sweep_id}: indices [{out.start}, {out.stop}), "
               f"{out.already_done} already done, " + ("complete" if out.complete else "NOT complete"))
    if not out.complete:
        sys.exit(1)


def _make_sweep(kw: dict[str, Any]) -> tuple[Sweep, Space]:
    space = space_from_spec(_space_spec(kw))
    options = Options(parse_chunk_size(kw["chunk_size"]), kw["max_attempts"], kw["timeout"], kw["priority"],
                      kw["batched"], kw["target_chunk_seconds"])
    return client.prepare(kw["function"], space, options, kw["name"]), space


def _space_spec(kw: dict[str, Any]) -> dict[str, Any]:
    given = [k for k in ("range_", "grid", "random_n", "space_file") if kw.get(k)]
    if len(given) != 1:
        raise SpecError("give exactly one space: --range N, --grid NAME=VALUES (repeatable), "
                        "--random N with --param, or --space FILE.")
    if kw["range_"]:
        return parse_range(kw["range_"])
    if kw["grid"]:
        axes: dict[str, Any] = {}
        for item in kw["grid"]:
            name, axis = grid_axis(item)
            axes[name] = axis
        return {"kind": "grid", "axes": axes}
    if kw["random_n"] is not None:
        if not kw["param"]:
            raise SpecError("--random needs at least one --param NAME=DIST:ARGS, e.g. --param x=uniform:0:1.")
        params = dict(random_param(p) for p in kw["param"])
        return {"kind": "random", "n": kw["random_n"], "seed": kw["seed"], "params": params}
    return load_spec_file(kw["space_file"])


for _command in (dashboard, exporter, plot):
    cli.add_command(_command)


def main() -> None:
    # module references resolve from the current directory, as with `python -m`: the
    # console script's own directory is what Python puts first on the path instead
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        cli(standalone_mode=False, prog_name="ttg")
    except TtgError as exc:
        click.echo(f"ttg: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ttg: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "ttg"
        click.echo(f"ttg: error: {exc.format_message()} (see `{cmd} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
