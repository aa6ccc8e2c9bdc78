"""Which device each worker child gets (worker/devices.py)."""

from __future__ import annotations

import pytest

from ttg.errors import ConfigError
from ttg.worker.devices import device_of, resolve


def test_children_split_the_devices_in_order() -> None:
    devices = resolve("0,1,2")
    assert [device_of(devices, 2, n) for n in range(6)] == ["0", "0", "1", "1", "2", "2"]
    assert [device_of(devices, 1, n) for n in range(3)] == ["0", "1", "2"]
    assert device_of((), 1, 0) is None


def test_uuids_and_mig_ids_are_devices() -> None:
    assert resolve("GPU-8f5c1a2e-1b2c-4d5e-8f90-123456789abc, MIG-GPU-x/1/0") == (
        "GPU-8f5c1a2e-1b2c-4d5e-8f90-123456789abc", "MIG-GPU-x/1/0")


@pytest.mark.parametrize("spec", ["0,0", ",", "0;1", "0, 1 2"])
def test_what_is_not_a_list_of_devices_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a list of distinct devices"):
        resolve(spec)
