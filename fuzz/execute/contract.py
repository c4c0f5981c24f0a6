"""The output contract a kernel keeps beyond its outputs' names, shapes and dtypes: it leaves
its inputs unchanged and returns new memory (`contract_breach`, which `run_case` checks after
each kernel call against a copy of the inputs taken before it)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

# The integer dtype whose bits a floating dtype of each width is compared as.
_BITS_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


# From this many elements on, contiguous CPU tensors are compared byte for byte with NumPy, 8
# bytes at a time: a fraction of the time of torch.equal on a large tensor, a little more on a
# small one.
_NUMPY_EQUAL = 4096


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` and `b` hold the same bits: NaN payloads and signed zeros count as
    different data."""
    if (a.numel() >= _NUMPY_EQUAL and a.device.type == "cpu" == b.device.type
            and a.dtype == b.dtype and a.shape == b.shape
            and a.is_contiguous() and b.is_contiguous()):
        try:
            x = a.detach().reshape(-1).view(torch.uint8).numpy()
            y = b.detach().reshape(-1).view(torch.uint8).numpy()
        except (TypeError, RuntimeError):  # a dtype without a byte view (a quantized tensor)
            pass
        else:
            if x.size % 8 == 0:
                x, y = x.view(np.uint64), y.view(np.uint64)
            return bool(np.array_equal(x, y))
    view = _BITS_VIEW.get(a.element_size()) if a.is_floating_point() else None
    if view is not None:
        return torch.equal(a.view(view), b.view(view))
    return torch.equal(a, b)


def contract_breach(
    kernel: str, inputs: Mapping[str, torch.Tensor], snapshots: Mapping[str, torch.Tensor],
    outputs: Mapping[str, torch.Tensor],
) -> tuple[str, str] | None:
    """(breach, "Contract: <breach>: message") when the kernel wrote into an input
    ("writes-input") or returned one of its inputs' memory as an output ("aliases-input");
    None otherwise."""
    for name, tensor in inputs.items():
        if not same_bits(tensor, snapshots[name]):
            return ("writes-input",
                    f"Contract: writes-input: kernel {kernel!r} wrote into its input {name!r}; "
                    "kernels must leave their inputs unchanged")
    pointers = {t.untyped_storage().data_ptr(): name for name, t in inputs.items() if t.numel()}
    for out_name, tensor in outputs.items():
        owner = pointers.get(tensor.untyped_storage().data_ptr()) if tensor.numel() else None
        if owner is not None:
            return ("aliases-input",
                    f"Contract: aliases-input: kernel {kernel!r} returned output {out_name!r} "
                    f"in the memory of its input {owner!r}; return a new tensor")
    return None
