"""How a Triton kernel of this package is launched, compiled on CUDA or interpreted on a CPU.

Triton runs a process's kernels one way: compiled, or in its CPU interpreter, chosen by
TRITON_INTERPRET when triton is imported (its own library functions such as `tl.sum` are built
one way or the other, and an interpreted kernel cannot call compiled ones). `kfuzz.kernels.triton`
sets TRITON_INTERPRET=1 on a machine without CUDA, so there CPU tensors run in the interpreter.
On a CUDA machine kernels run compiled on CUDA tensors; CPU tensors need the interpreter, so
the process must be started with TRITON_INTERPRET=1 (`Unavailable` says so), and with it set,
CUDA tensors are refused rather than quietly interpreted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl
from kfuzz.kernels.availability import Unavailable
from triton.runtime.interpreter import InterpretedFunction

# Elements one program handles. The interpreter runs each program as numpy calls in a Python
# loop, so few, large programs keep it fast; on a GPU a program's block must fit registers.
INTERPRETER_BLOCK = 1 << 18
GPU_BLOCK = 1 << 12
# The longest row a row-wise kernel takes in one program (one row per program at that size).
MAX_ROW = 1 << 16


def interpreter_mode() -> bool:
    """True when triton was imported in interpreter mode (TRITON_INTERPRET=1).

    Takes: nothing. Returns: bool. Raises: nothing.
    """
    return isinstance(tl.sum, InterpretedFunction)


class DualKernel:
    """A Triton kernel runnable on CUDA (compiled) and on the CPU (interpreted); see the
    module doc for which one a process can run.

    fn: the undecorated kernel function. do_not_specialize: integer arguments whose values
    must not be baked into compiled kernels (row and column counts), so that a campaign over
    many shapes compiles once per block size rather than once per shape. Kernels must not
    call other `@triton.jit` functions of their own (keep helpers inline behind constexprs).
    """

    def __init__(self, fn: Callable[..., Any], *, do_not_specialize: Sequence[str] = ()) -> None:
        self.fn = fn
        self.do_not_specialize = list(do_not_specialize)
        self._kernel: Any = None

    def on(self, device: torch.device) -> Any:
        """The launchable kernel (index it with a grid) for tensors on `device`.

        Takes: device. Returns: the compiled kernel for "cuda", the interpreted one for "cpu".
        Raises: Unavailable for another device type, or when this process runs Triton the
        other way (see the module doc), naming the fix.
        """
        interpreting = interpreter_mode()
        if device.type == "cuda" and interpreting:
            raise Unavailable("TRITON_INTERPRET=1 is set, so Triton runs its CPU interpreter "
                              "rather than compiled kernels on cuda; unset it to fuzz on cuda")
        if device.type == "cpu" and not interpreting:
            raise Unavailable("this process imported triton for compiled kernels "
                              "(TRITON_INTERPRET was not 1); to run Triton on cpu tensors start it "
                              "with TRITON_INTERPRET=1, e.g. TRITON_INTERPRET=1 kfuzz replay")
        if device.type not in ("cuda", "cpu"):
            raise Unavailable(f"Triton kernels run on cuda or on cpu (interpreter), not on "
                              f"{device.type}")
        if self._kernel is None:
            self._kernel = (InterpretedFunction(self.fn) if interpreting
                            else triton.jit(self.fn, do_not_specialize=self.do_not_specialize))
        return self._kernel

    def launch(self, device: torch.device, grid: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
        """Run the kernel for tensors on `device` over `grid`.

        Takes: device, grid, and the kernel's arguments (constexprs and launch options such
        as num_warps by keyword).
        Returns: None (kernels write their outputs).
        Raises: Unavailable as `on` does; what the kernel raises.
        """
        kernel = self.on(device)
        if isinstance(kernel, InterpretedFunction):
            # numpy warns where a GPU silently produces inf or NaN (inf * 0 in a masked lane);
            # the interpreter should be as quiet as the hardware it stands in for.
            with np.errstate(all="ignore"):
                kernel[grid](*args, **kwargs)
        else:
            kernel[grid](*args, **kwargs)


def interpreted(device: torch.device) -> bool:
    """True when kernels for tensors on `device` run in the interpreter (block sizes differ).

    Takes: device. Returns: bool. Raises: nothing.
    """
    return device.type != "cuda"


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= max(n, 1). Takes: n. Returns: int. Raises: nothing."""
    return triton.next_power_of_2(max(int(n), 1))


def cdiv(a: int, b: int) -> int:
    """Ceiling division. Takes: a >= 0, b > 0. Returns: int. Raises: nothing."""
    return -(-a // b)


def row_blocks(rows: int, cols: int, device: torch.device) -> tuple[int, int]:
    """Block sizes (BLOCK_M rows, BLOCK_N columns) for a row-wise kernel over [rows, cols].

    Takes: the tensor's rows and cols, and its device.
    Returns: powers of two with BLOCK_N >= cols. In the interpreter, as many rows per program
    as INTERPRETER_BLOCK allows (few programs); compiled, BLOCK_N is at least 64 and BLOCK_M
    depends on BLOCK_N alone, so that a campaign over many shapes compiles one kernel per
    column block rather than one per (rows, cols) pair.
    Raises: Unavailable for rows longer than MAX_ROW.
    """
    if cols > MAX_ROW:
        raise Unavailable(f"rows of {cols} elements exceed the {MAX_ROW} one program takes")
    if interpreted(device):
        block_n = next_power_of_2(cols)
        return min(next_power_of_2(rows), max(INTERPRETER_BLOCK // block_n, 1)), block_n
    block_n = max(64, next_power_of_2(cols))
    return max(GPU_BLOCK // block_n, 1), block_n
