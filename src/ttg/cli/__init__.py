"""The ``ttg`` command."""

from __future__ import annotations

from .commands import cli, main

__all__ = ["cli", "main"]
