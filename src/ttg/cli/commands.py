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
from ..client.progress import ProgressView
from ..client.ship import shipped_sweep
from ..client.worker import require_allowed, run_worker
from ..core import funcref
from ..core.codec import Codec
from ..core.fingerprint import paths_from_env
from ..core.sweep import Options, Sweep, parse_chunk_size
from ..errors import ConfigError, SpecError, TtgError
from ..settings import Settings
from ..spaces import Space, load_spec_file, space_from_spec
from ..spaces.flags import grid_axis, parse_range, random_param
from ..stores import open_store
from ..version import __version__
from ..worker.child import ChildOptions
from ..worker.devices import resolve as resolve_devices
from .observe import dashboard, exporter, plot
from .options import common as _common
from .options import settings_from as _settings
from .sweeps import cancel, delete, errors, list_, results, retry, status, workers
from .ui import print_summary


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
        click.option("--concurrency", type=int, default=1, show_default=True, metavar="N",
                     help="Points of an async def function a worker process runs at once (for functions "
                          "that mostly wait: HTTP, model endpoints)."),
        click.option("--retries", type=int, default=0, show_default=True,
                     help="Try a point again in place up to N times when the function raises "
                          "(an exception named by --retry-on; any, if none is named)."),
        click.option("--retry-on", metavar="EXC[,EXC...]",
                     help="Exception classes to try again: ConnectionError,requests.exceptions.Timeout "
                          "(subclasses too)."),
        click.option("--retry-backoff", type=float, default=0.0, show_default=True, metavar="SECONDS",
                     help="Wait before the second try; each next wait doubles."),
        click.option("--max-failures", metavar="N|P%",
                     help="Stop the sweep once N points (or P% of them) failed; ttg run exits 1."),
        click.option("--target-chunk-seconds", type=float, default=1.0, show_default=True,
                     help="Target chunk duration with --chunk-size auto."),
        click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first."),
        click.option("--batched", is_flag=True,
                     help="Call the function once per chunk with the points as columns."),
        click.option("--name", help="Name the sweep (default: derived from its function, space and code)."),
        click.option("--code", "code_paths", multiple=True, metavar="PATH",
                     help="Also fingerprint this file or directory: code whose content counts, besides "
                          "the function's module [TTG_CODE]."),
        click.option("--reuse", is_flag=True,
                     help="Copy the points this code already computed ok in any sweep of the store, "
                          "instead of computing them."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ttg")
def cli() -> None:
    """Run one Python function over a huge parameter space: exactly one result per index."""


@cli.command()
@_sweep_options
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes [TTG_WORKERS, default: one per core].")
@click.option("--allow", multiple=True, help="Also allow these functions/modules (for chained sweeps).")
@click.option("--fail-on-error", is_flag=True,
              help="Exit with status 1 when any point failed (error, crashed or timeout), not 0.")
@_common
def run(workers: int | None, allow: tuple[str, ...], fail_on_error: bool, **kw: Any) -> None:
    """Submit a sweep, run local workers until it is done, and summarize it.

    Exit status: 0 when it completed (failed points are results too, unless
    --fail-on-error), 1 when it stopped at its --max-failures or chunks were
    dead-lettered or (--fail-on-error) points failed, 2 for bad input, 130
    when interrupted."""
    s = _settings(kw, workers=workers, allow=allow or None)
    sweep, space = _make_sweep(kw)
    started = time.monotonic()
    with open_broker(s) as broker, open_store(s) as store:
        sub = client.submit(sweep, space, broker, store, Codec(s.secret), reuse=kw["reuse"])
        with ProgressView(sweep, sub.already_done, every=s.progress_seconds) as display:
            watcher = run_local(s, sweep, broker, store, display.update)
        dead = client.open_dead_letters(sweep, broker, store)
        older = client.other_code(sweep, store)
    print_summary(sweep, watcher.progress, time.monotonic() - started, watcher.outcome,
                  sub.already_done, dead, reused=sub.reused, older=older)
    if watcher.outcome == "interrupted":
        sys.exit(130)
    if watcher.outcome in ("stuck", "stopped"):
        sys.exit(1)
    if fail_on_error and watcher.progress.failed:
        failed = watcher.progress.failed
        click.echo(f"  {failed} point{'' if failed == 1 else 's'} failed (--fail-on-error): exit status 1",
                   err=True)
        sys.exit(1)


@cli.command()
@_sweep_options
@click.option("--no-queue", is_flag=True,
              help="Only register the sweep in the store (for `ttg worker --shard`); no broker.")
@click.option("--ship", is_flag=True,
              help="Send the function by value (its module too), signed with TTG_SECRET, to workers "
                   "started with --accept-shipped-code, which need not have its file.")
@_common
def submit(no_queue: bool, ship: bool, **kw: Any) -> None:
    """Queue a sweep for workers started with `ttg worker`."""
    s = _settings(kw)
    sweep, space = _make_sweep(kw, s if ship else None)
    if no_queue:
        with open_store(s) as store:
            store.register(sweep)
        click.echo(f"registered {sweep.id}: {sweep.total} points")
        click.echo(sweep.id)
        return
    with open_broker(s) as broker, open_store(s) as store:
        sub = client.submit(sweep, space, broker, store, Codec(s.secret), reuse=kw["reuse"])
    click.echo(f"submitted {sweep.id}: {sweep.total} points, {sub.queued} chunks queued"
               + (f", {sub.already_done} points already done" if sub.already_done else "")
               + (f" ({sub.reused} reused)" if sub.reused else ""))
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
@click.option("--shard", metavar="I/N|auto/N|auto",
              help="No broker: compute slice I of N of --sweep into the store, then exit (auto: I from "
                   "JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, N too from SLURM_ARRAY_TASK_COUNT) "
                   "[TTG_SHARD].")
@click.option("--gpus", metavar="LIST|auto",
              help="GPUs the children split, each child seeing only its own through "
                   "CUDA_VISIBLE_DEVICES: 0,1,2,3 or auto (the devices this process was given, or "
                   "nvidia-smi's) [TTG_GPUS]; one child per GPU unless --children-per-gpu.")
@click.option("--children-per-gpu", type=int, metavar="K",
              help="Children sharing each GPU of --gpus [TTG_CHILDREN_PER_GPU, default 1].")
@click.option("--accept-shipped-code", is_flag=True,
              help="Also run functions shipped by value with their sweep (ttg.submit(..., ship=True), "
                   "ttg submit --ship): anyone with TTG_SECRET can then run code here. Needs TTG_SECRET.")
@_common
def worker(allow: tuple[str, ...], workers: int | None, sweep_id: str | None, burst: bool,
           max_chunks_per_child: int | None, max_memory_per_child: float | None,
           grace: float | None, lease_seconds: float | None, metrics_port: int | None,
           metrics_host: str, shard: str | None, gpus: str | None, children_per_gpu: int | None,
           accept_shipped_code: bool, **kw: Any) -> None:
    """Run a supervisor and its child processes, computing chunks from the broker."""
    s = _settings(kw, workers=workers, allow=allow or None, grace_seconds=grace,
                  lease_seconds=lease_seconds, shard=shard, gpus=gpus, children_per_gpu=children_per_gpu)
    devices = resolve_devices(s.gpus)
    if devices:
        children = len(devices) * s.children_per_gpu
        if s.workers and s.workers != children:
            raise ConfigError(f"--workers {s.workers} does not match {len(devices)} GPUs x "
                              f"{s.children_per_gpu} children per GPU ({children}); drop --workers, or "
                              "change --children-per-gpu.")
        s = s.with_overrides(workers=children)
    elif s.children_per_gpu != 1:
        raise ConfigError("--children-per-gpu needs --gpus (the devices to share); give --gpus 0,1 or auto.")
    options = ChildOptions(worker_id="", allow=funcref.AllowList(s.allow), sweep_id=sweep_id,
                           burst=burst, max_chunks=max_chunks_per_child,
                           max_memory_mb=max_memory_per_child, devices=devices,
                           children_per_device=s.children_per_gpu, accept_shipped=accept_shipped_code)
    if accept_shipped_code and not s.secret:
        raise ConfigError("--accept-shipped-code runs code that comes with signed messages, and there is no "
                          "TTG_SECRET to check them with; set the sweep's TTG_SECRET, or drop the flag.")
    require_allowed(options)
    if s.shard:
        if metrics_port is not None or burst:
            raise ConfigError("--shard does not take --metrics-port or --burst (a shard exits when "
                              "its slice is done); watch its progress with `ttg exporter`.")
        _run_shard(s, sweep_id, options)
        return
    run_worker(s, options, metrics=None if metrics_port is None else (metrics_host, metrics_port))


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


def _make_sweep(kw: dict[str, Any], ship: Settings | None = None) -> tuple[Sweep, Space]:
    """The sweep the options describe; shipped by value (client/ship.py) with ``ship``'s secret."""
    space = space_from_spec(_space_spec(kw))
    retry_on = tuple(n.strip() for n in (kw["retry_on"] or "").split(",") if n.strip())
    options = Options(parse_chunk_size(kw["chunk_size"]), kw["max_attempts"], kw["timeout"], kw["priority"],
                      kw["batched"], kw["target_chunk_seconds"], kw["retries"], retry_on, kw["retry_backoff"],
                      kw["max_failures"], kw["concurrency"])
    paths = [*kw["code_paths"], *paths_from_env()]
    if ship is not None:
        fn = client.check_function(funcref.normalize(kw["function"]))
        return shipped_sweep(fn, space, options, kw["name"], paths, ship), space
    return client.prepare(kw["function"], space, options, kw["name"], paths), space


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


for _command in (list_, status, workers, results, errors, retry, cancel, delete, dashboard, exporter, plot):
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
