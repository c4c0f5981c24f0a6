"""Why a kernel cannot run here.

Real kernels depend on things a machine may lack: the `triton` package, a CUDA device, a
particular SDPA backend. They raise `Unavailable` with the reason instead of failing somewhere
deep inside a library, so that the fuzzer can report "this kernel cannot run on this device"
apart from "this kernel computed a wrong answer".
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Unavailable(RuntimeError):
    """A kernel that cannot run in this process or on this device; the message says why and
    what would make it run."""


def common_device(tensors: Iterable[torch.Tensor]) -> torch.device:
    """The one device all `tensors` live on.

    Takes: tensors, at least one.
    Returns: their device.
    Raises: ValueError when they are on different devices or none is given.
    """
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"expected tensors on one device, got {sorted(map(str, devices)) or 'none'}")
    return devices.pop()
