"""Triton softmax over the last axis, max-subtracted, FP32 inside the kernel.

Same signature as the `ops.softmax` kernels. cast "kernel": the kernel converts to x.dtype
before its store; cast "torch": the kernel stores FP32 and torch rounds it to x.dtype. In the
CPU interpreter the in-kernel BF16 cast truncates, so the two differ there.
"""

from __future__ import annotations

import torch
import triton.language as tl
from kfuzz.kernels.availability import common_device
from kfuzz.kernels.triton.launch import DualKernel, cdiv, row_blocks

CASTS = ("kernel", "torch")


def _softmax_kernel(x_ptr, y_ptr, rows, cols, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    row = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    col = tl.arange(0, BLOCK_N)[None, :]
    mask = (row < rows) & (col < cols)
    offset = row.to(tl.int64) * cols + col
    x = tl.load(x_ptr + offset, mask=mask, other=float("-inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=1)[:, None])
    y = e / tl.sum(e, axis=1)[:, None]
    tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=mask)


_KERNEL = DualKernel(_softmax_kernel, do_not_specialize=["rows", "cols"])


def softmax(x: torch.Tensor, *, cast: str = "kernel") -> torch.Tensor:
    """Softmax of `x` [rows, cols] over its last axis.

    Takes: x on cuda (compiled Triton) or cpu (the interpreter), any floating dtype; cast one
    of CASTS.
    Returns: y, same shape, dtype and device as x.
    Raises: ValueError for a bad cast or shape; Unavailable for a device Triton cannot run on
    or rows longer than MAX_ROW.
    """
    if cast not in CASTS:
        raise ValueError(f"unknown cast {cast!r}; choose from {', '.join(CASTS)}")
    if x.dim() != 2:
        raise ValueError(f"expected x [rows, cols], got {list(x.shape)}")
    device = common_device((x,))
    rows, cols = x.shape
    y = torch.empty(x.shape, dtype=x.dtype if cast == "kernel" else torch.float32, device=device)
    if x.numel() == 0:
        return y.to(x.dtype)
    block_m, block_n = row_blocks(rows, cols, device)
    _KERNEL.launch(
        device, (cdiv(rows, block_m),), x.contiguous(), y, rows, cols, BLOCK_M=block_m, BLOCK_N=block_n,
        num_warps=4 if block_m * block_n <= 2048 else 8,
    )
    return y if cast == "kernel" else y.to(x.dtype)
