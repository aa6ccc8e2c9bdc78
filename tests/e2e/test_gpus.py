"""GPUs for worker children (``ttg worker --gpus``): each child sees only its own
device, the children split the devices (``--children-per-gpu``), a replaced child
gets its device back, ``--gpus auto`` takes SLURM's allocation; bad input is one
sentence. No GPU is needed: TTG's part is which device each child is given."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import ttg
from tests.conftest import records_per_index
from tests.conftest import ttg as ttg_cli
from tests.processes import children, reach, submit, wait_until


def devices_by_pid(home: Path, sweep: str) -> dict[int, set[str]]:
    rows: list[dict[str, Any]] = ttg.results(sweep, home=home).to_arrow().to_pylist()
    assert {r["status"] for r in rows} == {"ok"}
    seen: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        assert r["hip"] == r["cuda"]
        seen[r["pid"]].add(r["cuda"])
    return seen


def test_children_split_the_gpus_and_a_replaced_child_keeps_its_device(home: Path, procs: Any) -> None:
    sweep = submit(home, "tests.funcs:which_gpu", "--range", "600", "--chunk-size", "5")
    worker = procs.start(home, "worker", "--allow", "tests.funcs", "--gpus", "0,1", "--children-per-gpu", "2",
                         "--burst")
    first = wait_until(lambda: (kids := children(worker.pid)) and len(kids) == 4 and kids, 30, "4 children")
    reach(f"sqlite://{home.resolve() / 'results.db'}", sweep, 100, [worker])
    victim = first[0]
    os.kill(victim, signal.SIGKILL)
    assert worker.wait(120) == 0, worker.stderr
    assert records_per_index(home, sweep) == {i: 1 for i in range(600)}
    seen = devices_by_pid(home, sweep)
    assert all(len(d) == 1 for d in seen.values()), seen  # a child never changes device
    device = {pid: next(iter(d)) for pid, d in seen.items()}
    before = [device[p] for p in first if p in device]
    assert sorted(before) == ["0", "0", "1", "1"], device  # two children per GPU
    replacements = [p for p in device if p not in first]
    assert replacements and {device[p] for p in replacements} == {device[victim]}, (device, victim)


def test_gpus_auto_splits_what_slurm_allocated(home: Path) -> None:
    sweep = submit(home, "tests.funcs:which_gpu", "--range", "60", "--chunk-size", "5")
    env = {"SLURM_JOB_GPUS": "2,3"}
    proc = ttg_cli(home, "worker", "--allow", "tests.funcs", "--gpus", "auto", "--burst", check=True, **env)
    assert proc.returncode == 0
    assert set().union(*devices_by_pid(home, sweep).values()) <= {"2", "3"}


@pytest.mark.parametrize(("args", "message"), [
    (["--gpus", "0,0"], "--gpus '0,0' is not a list of distinct devices; give indices or UUIDs separated by "
                        "commas (e.g. --gpus 0,1), or auto."),
    (["--gpus", "0,,1"], "--gpus '0,,1' is not a list of distinct devices"),
    (["--gpus", "auto"], "--gpus auto found no GPU (no CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS or nvidia-smi "
                         "here); name the devices, e.g. --gpus 0,1, or drop --gpus."),
    (["--gpus", "0,1", "--workers", "3"], "--workers 3 does not match 2 GPUs x 1 children per GPU (2); drop "
                                          "--workers, or change --children-per-gpu."),
    (["--children-per-gpu", "2"], "--children-per-gpu needs --gpus (the devices to share); give --gpus 0,1 "
                                  "or auto."),
    (["--gpus", "0", "--children-per-gpu", "0"], "children per GPU must be from 1 to 64, not 0"),
])
def test_bad_gpus_are_one_sentence(home: Path, args: list[str], message: str) -> None:
    env = {k: "" for k in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                           "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")}
    proc = ttg_cli(home, "worker", "--allow", "tests.funcs", "--burst", *args, **env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"ttg: error: {message}"), proc.stderr
    assert not home.exists()
