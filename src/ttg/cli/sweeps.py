"""The commands about sweeps already submitted: list, status, workers, results,
errors, retry, cancel, delete."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..brokers import open_broker
from ..client import submit as client
from ..client.local import run_local
from ..client.progress import ProgressView
from ..client.status import status as client_status
from ..core.codec import Codec
from ..core.fingerprint import paths_from_env
from ..core.records import STATUSES
from ..errors import ConfigError
from ..stores import open_presence, open_store
from .options import common as _common
from .options import settings_from as _settings
from .ui import describe_code, print_summary, sweeps_table, workers_table


@click.command(name="list")
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


@click.command()
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
        click.echo(f"code      {describe_code(sweep)}")
        click.echo(f"space     {sweep.space.get('kind')}, {sweep.total} points")
        click.echo(f"done      {p.done}/{p.total} ({100 * p.done / max(p.total, 1):.1f}%)")
        click.echo("status    " + "  ".join(f"{k} {v}" for k, v in p.by_status().items()))
        dead = sum(len(c) for c in st.dead)
        click.echo(f"queue     {q.queued} queued, {q.leased} leased chunks" + (
            f"; {dead} points in dead-lettered chunks without results (`ttg errors {name}` says why, "
            f"`ttg retry {name}` queues them again)" if dead else ""))
        if st.reason:
            click.echo(f"stopped   {st.reason}")
        for worker, why in st.refusing:
            click.echo(f"refused   by worker {worker}, which leaves its chunks to others: {why}")


@click.command()
@click.option("--all", "every", is_flag=True, help="Also list workers that stopped (kept for a day).")
@_common
def workers(every: bool, **kw: Any) -> None:
    """List the workers by their presence beats: alive, or stale (no beat for 3 intervals)."""
    s = _settings(kw)
    with open_presence(s) as presence:
        workers_table(presence.workers(), every=every)


@click.command()
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


@click.command()
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


@click.command()
@click.argument("name")
@click.option("--status", "statuses", default="error,crashed,timeout", show_default=True,
              help="Which statuses to re-run (ok too: compute those points again).")
@click.option("--all", "every", is_flag=True, help="Re-run every index, whatever its status.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Local worker processes [default: one per core].")
@click.option("--no-workers", is_flag=True, help="Only queue them (workers run elsewhere).")
@click.option("--code", "code_paths", multiple=True, metavar="PATH",
              help="Files or directories whose content counts, as given when the sweep was submitted.")
@_common
def retry(name: str, statuses: str, every: bool, workers: int | None, no_workers: bool,
          code_paths: tuple[str, ...], **kw: Any) -> None:
    """Re-run the failed, crashed and timed-out indices of a sweep (or others)."""
    wanted = STATUSES if every else tuple(x.strip() for x in statuses.split(",") if x.strip())
    bad = set(wanted) - set(STATUSES)
    if bad:
        raise ConfigError(f"unknown status {', '.join(sorted(bad))}; use {', '.join(STATUSES)} "
                          "(or --all).")
    s = _settings(kw, workers=workers)
    started = time.monotonic()
    with open_broker(s) as broker, open_store(s) as store:
        sweep = store.sweep(name)
        client.check_code(sweep, [*code_paths, *paths_from_env()])  # (before anything is reopened)
        n = client.requeue_failed(sweep, broker, store, Codec(s.secret), wanted)
        click.echo(f"re-queued {n} indices of {name}")
        if no_workers or not n:
            return
        kept = store.progress(name).done  # the records the retry did not reopen
        with ProgressView(sweep, kept, every=s.progress_seconds) as display:
            watcher = run_local(s, sweep, broker, store, display.update)
        dead = client.open_dead_letters(sweep, broker, store)
    print_summary(sweep, watcher.progress, time.monotonic() - started, watcher.outcome, kept, dead)


@click.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_common
def delete(name: str, yes: bool, **kw: Any) -> None:
    """Delete a sweep: its queued chunks, its results and its record (to start over)."""
    s = _settings(kw)
    with open_broker(s) as broker, open_store(s) as store:
        p = store.progress(store.sweep(name).id)
        if not yes:
            click.confirm(f"delete sweep {name} and its {p.done} results?", abort=True)
        n = client.delete(name, broker, store)
    click.echo(f"deleted {name}: {n} results, its queue and its record")


@click.command()
@click.argument("name")
@_common
def cancel(name: str, **kw: Any) -> None:
    """Cancel a sweep: drop its queued chunks; its results so far stay."""
    s = _settings(kw)
    with open_broker(s) as broker, open_store(s) as store:
        dropped = client.cancel(name, broker, store)
    click.echo(f"cancelled {name}: {dropped} chunks dropped; run it again to resume")
