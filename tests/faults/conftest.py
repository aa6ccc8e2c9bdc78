"""Fixtures of the fault tests: every ttg process a test starts is killed with its
whole process group at teardown, whatever happened in the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    yield p
    p.cleanup()
