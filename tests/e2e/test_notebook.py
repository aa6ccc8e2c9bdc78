"""The notebook under examples/, executed in a real Jupyter kernel (nbclient and
ipykernel): a lambda, a closure and a function of a cell swept on the embedded
default, plotted; scikit-learn called in the kernel first does not hang the
workers; each run shows its progress as one output updated in place. Run twice,
in two kernels: the second finds every sweep done."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT
from ttg import settings as settings_mod
from ttg.stores import open_store

NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
#: what each code cell prints, in order (the plot cell shows an image instead)
EXPECTED = [
    "complete 100 328350\n",
    "complete [10, 11, 12, 13, 14]\n",
    "complete 404 True\n",
    None,
    "complete {'ok': 8, 'error': 0, 'crashed': 0, 'timeout': 0}\n",
]
#: the points of each cell's sweep, whose progress it shows (the plot cell runs none)
TOTALS = [100, 50, 404, None, 8]


def execute(directory: Path) -> list[Any]:
    nb = nbformat.read(directory / NOTEBOOK.name, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(directory)}})
    client.execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_notebook_runs_in_a_kernel_and_resumes_in_another(tmp_path: Path) -> None:
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    for _ in range(2):
        cells = execute(tmp_path)
        for cell, expected, total in zip(cells, EXPECTED, TOTALS, strict=True):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, errors
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                           and o.get("name") == "stdout")
            if expected is None:
                assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.outputs
            else:
                assert text == expected, cell.outputs
                # one progress output, updated in place to the end state (no widget library needed)
                shown = [o["data"] for o in cell.outputs if o.output_type == "display_data"]
                assert len(shown) == 1, cell.outputs
                assert re.fullmatch(rf"\S+: {total}/{total} \(100\.0 %\)(, [\d,.]+ points/s)?",
                                    shown[0]["text/plain"]), shown
                assert f'<progress value="{total}" max="{total}"' in shown[0]["text/html"]
    with open_store(settings_mod.load(environ={}, home=tmp_path / ".ttg")) as store:
        infos = store.sweeps()
    # the same four sweeps both times: a function of a cell fingerprints the same in a new kernel
    assert len(infos) == 4 and all(i.progress.complete for i in infos)
    assert sorted(i.progress.total for i in infos) == [8, 50, 100, 404]
