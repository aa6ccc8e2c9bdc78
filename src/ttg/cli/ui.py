"""What the CLI shows a person: summaries and tables (rich). The live progress is
client/progress.py's, shared with the API."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table as RichTable

from ..brokers.base import Broker, DeadLetter
from ..core.failures import shown_state, stopped_reason
from ..core.sweep import Sweep
from ..stores.base import Progress as SweepProgress
from ..stores.base import SweepInfo
from ..stores.presence import WorkerBeat, liveness


def print_summary(sweep: Sweep, p: SweepProgress, seconds: float, outcome: str, already_done: int,
                  dead: Sequence[DeadLetter], *, reused: int = 0, older: Sequence[SweepInfo] = ()) -> None:
    computed = p.done - already_done
    rate = computed / seconds if seconds > 0 else 0.0
    click.echo(f"sweep {sweep.id}: {outcome}, {p.done}/{p.total} points, {computed} computed in "
               f"{seconds:.2f} s ({rate:,.0f} points/s)"
               + (f"; {already_done} were already done" if already_done else "")
               + (f" ({reused} reused from earlier sweeps of this code)" if reused else ""))
    click.echo("  " + "  ".join(f"{k} {v}" for k, v in p.by_status().items()))
    if dead:
        click.echo(f"  {len(dead)} chunk(s) dead-lettered, e.g. {dead[0].chunk}: {dead[0].reason}")
    if p.failed:
        click.echo(f"  failures: ttg errors {sweep.id}")
    for info in older:
        click.echo(f"  earlier: {info.sweep.id} ran this function over this space with other code "
                   f"({info.progress.done} results, kept); --reuse copies only results of the same code")
    stopped = stopped_reason(sweep.options.max_failures, p.failed, p.total) if outcome == "stopped" else None
    if stopped:
        click.echo(f"  {stopped}: fix the function (a new sweep) or run again with a higher "
                   "--max-failures to go on")
    if outcome == "interrupted":
        click.echo("  interrupted: run the same command again to resume", err=True)
    click.echo(f"  results:  ttg results {sweep.id} -o results.parquet")


def describe_code(sweep: Sweep) -> str:
    """The sweep's code fingerprint, short, and what it covers."""
    if sweep.code is None:
        return "- (made by an older TTG, without a fingerprint)"
    return f"{sweep.code.short}, of {', '.join(sweep.code.parts)}"


def sweeps_table(infos: Sequence[SweepInfo], broker: Broker) -> None:
    if not infos:
        click.echo("no sweeps yet; start one with `ttg run`")
        return
    table = RichTable(box=None, pad_edge=False)
    for col in ("sweep", "state", "done", "failed", "queued", "function", "code", "updated"):
        table.add_column(col)
    for info in infos:
        p = info.progress
        q = broker.stats(info.sweep.id)
        state = "done" if p.complete else shown_state(info.state, info.sweep.options.max_failures, p.failed,
                                                      p.total)
        code = info.sweep.code.short if info.sweep.code else "-"
        table.add_row(info.sweep.id, state, f"{p.done}/{p.total}", str(p.failed),
                      f"{q.queued}+{q.leased}", info.sweep.function.rpartition("/")[2], code,
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated)))
    Console(file=sys.stdout, width=200).print(table)


def workers_table(beats: Sequence[WorkerBeat], *, every: bool = False) -> None:
    """Worker supervisors by their presence beats (``ttg workers``): alive and stale
    ones, and with ``every`` the stopped ones too."""
    now = time.time()
    rows = [(b, liveness(b, now)) for b in beats]
    rows = [(b, st) for b, st in rows if every or st != "stopped"]
    if not rows:
        click.echo("no live workers" + ("" if every else " (--all shows stopped ones)"))
        return
    table = RichTable(box=None, pad_edge=False)
    for col in ("worker", "status", "heartbeat", "children", "chunks", "holds", "started",
                "leaves to others"):
        table.add_column(col)
    for b, st in sorted(rows, key=lambda r: ("alive", "stale", "stopped").index(r[1])):
        holds = ", ".join(f"{s} [{a}, {z})" for s, a, z in b.leases[:3])
        holds += f" and {len(b.leases) - 3} more" if len(b.leases) > 3 else ""
        table.add_row(b.worker, st + (" (stopping)" if b.state == "stopping" else ""),
                      f"{max(0.0, now - b.beat):.0f} s ago", str(b.children), str(b.chunks), holds or "-",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(b.started)),
                      "; ".join(f"{s}: {why}" for s, why in b.refusing) or "-")
    Console(file=sys.stdout, width=200).print(table)
