"""The output contract a kernel keeps beyond its outputs' names, shapes and dtypes: it leaves
its inputs unchanged and returns new memory (`contract_breach`, which `run_case` checks after
each kernel call against a `Snapshot` of the inputs taken before it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# The integer dtype whose bits a floating dtype of each width is compared as.
_BITS_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


# From this many elements on, contiguous CPU tensors are compared byte for byte with NumPy, 8
# bytes at a time: a fraction of the time of torch.equal on a large tensor, a little more on a
# small one.
_NUMPY_EQUAL = 4096


def _bytes(t: torch.Tensor) -> np.ndarray | None:
    """The bytes of a contiguous CPU tensor of at least _NUMPY_EQUAL elements as a NumPy view
    (8 bytes an element where the size allows), or None for any other tensor."""
    if t.numel() < _NUMPY_EQUAL or t.device.type != "cpu" or not t.is_contiguous():
        return None
    try:
        x = t.detach().reshape(-1).view(torch.uint8).numpy()
    except (TypeError, RuntimeError):  # a dtype without a byte view (a quantized tensor)
        return None
    return x.view(np.uint64) if x.size % 8 == 0 else x


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` and `b` hold the same bits: NaN payloads and signed zeros count as
    different data."""
    if a.dtype == b.dtype and a.shape == b.shape:
        x, y = _bytes(a), _bytes(b)
        if x is not None and y is not None:
            return bool(np.array_equal(x, y))
    view = _BITS_VIEW.get(a.element_size()) if a.is_floating_point() else None
    if view is not None:
        return torch.equal(a.view(view), b.view(view))
    return torch.equal(a, b)


class Snapshot:
    """A copy of a kernel's inputs taken before its call, to tell afterwards whether it wrote
    into one (`changed`). A large CPU input is kept as a NumPy view of its bytes and a copy of
    them, so the check after the call reads them with no conversion."""

    __slots__ = ("inputs", "copies")

    def __init__(self, inputs: Mapping[str, torch.Tensor]) -> None:
        self.inputs = inputs
        self.copies: dict[str, tuple[tuple[int, torch.Size], np.ndarray | None, Any]] = {}
        for name, t in inputs.items():
            view = _bytes(t)
            # The pointer and shape too: a view of memory the kernel reallocated is not read.
            self.copies[name] = ((t.data_ptr(), t.shape), view,
                                 t.clone() if view is None else view.copy())

    def changed(self) -> str | None:
        """The name of the first input whose bits differ from the copy, or None."""
        for name, tensor in self.inputs.items():
            where, view, before = self.copies[name]
            if view is None:
                same = same_bits(tensor, before)
            else:  # memory moved or resized in place is written too
                same = ((tensor.data_ptr(), tensor.shape) == where
                        and bool(np.array_equal(view, before)))
            if not same:
                return name
        return None


def contract_breach(kernel: str, snapshot: Snapshot,
                    outputs: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """(breach, "Contract: <breach>: message") when the kernel wrote into an input of
    `snapshot` ("writes-input") or returned one of its inputs' memory as an output
    ("aliases-input"); None otherwise."""
    inputs = snapshot.inputs
    name = snapshot.changed()
    if name is not None:
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
