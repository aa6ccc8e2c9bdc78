"""The code's shape stays as docs/architecture.md draws it: each layer imports
only the layers below it, no modules import each other in a circle (both
checked by import-linter with the contracts in pyproject.toml), and no module
grows past about 400 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the most lines a module may have ("about 400")
MAX_LINES = 420


def test_layers_and_no_import_cycles() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout


def test_no_module_is_too_long() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "src" / "ttg").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
