"""Which GPU each worker child uses (``ttg worker --gpus``).

The children of a supervisor split its devices: with ``--children-per-gpu K``,
children 0..K-1 use the first device, K..2K-1 the second, and so on, and a child
that is replaced (after a crash, or --max-chunks-per-child) gets its number's
device back. A child sees only its own device: CUDA_VISIBLE_DEVICES (and
HIP_VISIBLE_DEVICES, which ROCm reads) name it before the function's module is
imported, so a framework's "device 0" is that device. ``--gpus auto`` takes the
devices this process was given (settings.GPU_VARIABLES: the CUDA or ROCm
restriction, SLURM's allocation), else those ``nvidia-smi -L`` lists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ..errors import ConfigError

#: a device as CUDA_VISIBLE_DEVICES names it: an index, a UUID (GPU-...), a MIG id
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:./-]*$")


def resolve(spec: str) -> tuple[str, ...]:
    """The devices ``--gpus`` names: none for "", a comma-separated list of indices or
    UUIDs, or for "auto" (no variable named them, see settings) nvidia-smi's."""
    if not spec:
        return ()
    if spec == "auto":
        found = _nvidia_smi()
        if not found:
            raise ConfigError("--gpus auto found no GPU (no CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS or "
                              "nvidia-smi here); name the devices, e.g. --gpus 0,1, or drop --gpus.")
        return found
    devices = tuple(d.strip() for d in spec.split(","))
    if not all(_DEVICE.match(d) for d in devices) or len(set(devices)) != len(devices):
        raise ConfigError(f"--gpus {spec!r} is not a list of distinct devices; give indices or UUIDs "
                          "separated by commas (e.g. --gpus 0,1), or auto.")
    return devices


def _nvidia_smi() -> tuple[str, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(m.group(1) for m in re.finditer(r"^GPU (\d+):", out, re.MULTILINE))


def device_of(devices: tuple[str, ...], per_device: int, number: int) -> str | None:
    """The device of child ``number`` (None: no devices)."""
    if not devices:
        return None
    return devices[(number // per_device) % len(devices)]


def use(device: str) -> None:
    """Make ``device`` the only one this process (and what it starts) sees."""
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ["HIP_VISIBLE_DEVICES"] = device
