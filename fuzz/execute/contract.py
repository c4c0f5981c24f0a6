"""The output contract a kernel keeps beyond its outputs' names, shapes and dtypes: it leaves
its inputs unchanged and returns new memory (`contract_breach`, which `run_case` checks after
each kernel call against a `Snapshot` of the inputs taken before it)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# The integer dtype whose bits a floating dtype of each width is compared as.
_BITS_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_AS_INT = {1: torch.uint8, **_BITS_VIEW}


def _array(t: torch.Tensor) -> np.ndarray | None:
    """A CPU tensor as a NumPy array of the same memory (a dtype NumPy lacks, such as BF16, as
    the integers of its width), or None for any other tensor. A bytes copy of it compared with
    memcmp costs less than torch.equal at every size (a few µs less for 8 elements)."""
    if t.device.type != "cpu":
        return None
    as_dtype = _numpy_view(t.dtype)
    if as_dtype is None:
        return None
    t = t.detach()
    try:
        return (t if as_dtype is t.dtype else t.view(as_dtype)).numpy()
    except RuntimeError:  # a tensor NumPy cannot share (conjugated, a negative view)
        return None


@functools.lru_cache(maxsize=64)
def _numpy_view(dtype: torch.dtype) -> torch.dtype | None:
    """The dtype a tensor of `dtype` is read as by NumPy: itself, the integer of its width for
    a dtype NumPy lacks, or None."""
    if dtype.is_complex or str(dtype).startswith("torch.q"):  # compared by torch: not worth it
        return None
    try:
        torch.empty(1, dtype=dtype).numpy()
        return dtype
    except (TypeError, RuntimeError):
        return _AS_INT.get(torch.empty(0, dtype=dtype).element_size())


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `a` and `b` hold the same bits: NaN payloads and signed zeros count as
    different data."""
    if a.dtype == b.dtype and a.shape == b.shape:
        x, y = _array(a), _array(b)
        if x is not None and y is not None:
            return x.tobytes() == y.tobytes()
    view = _BITS_VIEW.get(a.element_size()) if a.is_floating_point() else None
    if view is not None:
        return torch.equal(a.view(view), b.view(view))
    return torch.equal(a, b)


class Snapshot:
    """A copy of a kernel's inputs taken before its call, to tell afterwards whether it wrote
    into one (`changed`). A CPU input is kept as a NumPy array over its memory and a
    bytes copy of it (in the array's order), which the check after the call compares with
    one memcmp."""

    __slots__ = ("inputs", "copies")

    def __init__(self, inputs: Mapping[str, torch.Tensor]) -> None:
        self.inputs = inputs
        self.copies: dict[str, tuple[tuple[int, torch.Size], np.ndarray | None, Any]] = {}
        for name, t in inputs.items():
            array = _array(t)
            # The pointer and shape too: an array over memory the kernel reallocated is not
            # read.
            self.copies[name] = ((t.data_ptr(), t.shape), array,
                                 t.clone() if array is None else array.tobytes())

    def changed(self) -> str | None:
        """The name of the first input whose bits differ from the copy, or None."""
        for name, tensor in self.inputs.items():
            where, array, before = self.copies[name]
            if array is None:
                same = same_bits(tensor, before)
            else:  # memory moved or resized in place is written too
                same = ((tensor.data_ptr(), tensor.shape) == where
                        and array.tobytes() == before)
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
