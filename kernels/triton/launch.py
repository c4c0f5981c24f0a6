"""One Triton kernel, two ways to run it: compiled for CUDA tensors, interpreted for CPU ones.

`triton.jit` decides at decoration time between a compiled kernel and an interpreted one
(TRITON_INTERPRET). A fuzzer needs both in one process: a case stored on a GPU must replay on
a CPU. `DualKernel` keeps the plain Python function and builds each flavour on first use.
Kernels written for it must not call other `@triton.jit` functions (a compiled helper cannot
be called from interpreted code), so helpers are inlined behind constexpr switches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

from kernels.availability import Unavailable

# Elements one program handles. The interpreter runs each program as numpy calls in a Python
# loop, so few, large programs keep it fast; on a GPU a program's block must fit registers.
INTERPRETER_BLOCK = 1 << 18
GPU_BLOCK = 1 << 12


class DualKernel:
    """A Triton kernel runnable on CUDA (compiled) and on the CPU (interpreted).

    fn: the undecorated kernel function. do_not_specialize: integer arguments whose values
    must not be baked into compiled kernels (row and column counts), so that a campaign over
    many shapes compiles once per block size rather than once per shape.
    """

    def __init__(self, fn: Callable[..., Any], *, do_not_specialize: Sequence[str] = ()) -> None:
        self.fn = fn
        self.do_not_specialize = list(do_not_specialize)
        self._compiled: Any = None
        self._interpreted: Any = None

    def on(self, device: torch.device) -> Any:
        """The launchable kernel (index it with a grid) for tensors on `device`.

        Takes: device. Returns: a compiled kernel for "cuda", an interpreted one for "cpu".
        Raises: Unavailable for any other device type.
        """
        if device.type == "cuda":
            if self._compiled is None:
                self._compiled = triton.jit(self.fn, do_not_specialize=self.do_not_specialize)
            return self._compiled
        if device.type == "cpu":
            if self._interpreted is None:
                self._interpreted = InterpretedFunction(self.fn)
            return self._interpreted
        raise Unavailable(f"Triton kernels run on cuda or cpu (interpreter), not on {device.type}")

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
    """True when kernels for tensors on `device` run in the interpreter.

    Takes: device. Returns: bool. Raises: nothing.
    """
    return device.type != "cuda"


def block_budget(device: torch.device) -> int:
    """Elements one program should handle on `device`. Takes: device. Returns: a power of two.
    Raises: nothing."""
    return INTERPRETER_BLOCK if interpreted(device) else GPU_BLOCK


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= max(n, 1). Takes: n. Returns: int. Raises: nothing."""
    return triton.next_power_of_2(max(int(n), 1))


def cdiv(a: int, b: int) -> int:
    """Ceiling division. Takes: a >= 0, b > 0. Returns: int. Raises: nothing."""
    return -(-a // b)
