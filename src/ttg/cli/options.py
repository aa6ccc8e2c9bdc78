"""Options every ``ttg`` command takes, and turning them into Settings (and log setup)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import logs
from .. import settings as settings_mod
from ..settings import Settings


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--home", type=click.Path(file_okay=False, path_type=Path),
                      help="TTG home for the embedded broker and store [TTG_HOME, default ./.ttg].")(fn)
    fn = click.option("--broker", help="Broker URL [TTG_BROKER, default: embedded SQLite].")(fn)
    fn = click.option("--store", help="Result store URL [TTG_STORE, default: the broker's partner].")(fn)
    fn = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")(fn)
    fn = click.option("--log-format", type=click.Choice(logs.FORMATS),
                      help="Log lines for people (human, the default) or one JSON object per line "
                           "[TTG_LOG_FORMAT].")(fn)
    return fn


def settings_from(kw: dict[str, Any], **extra: Any) -> Settings:
    """Settings from the common options (popped from ``kw``) and ``extra`` flags;
    configures logging on the way."""
    verbose = kw.pop("verbose", 0)
    s = settings_mod.load(home=kw.pop("home", None), broker=kw.pop("broker", None),
                          store=kw.pop("store", None), log_format=kw.pop("log_format", None), **extra)
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else getattr(logging, s.log_level.upper())
    logs.setup(level, s.log_format)
    return s
