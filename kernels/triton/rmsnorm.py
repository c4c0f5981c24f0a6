"""Triton RMSNorm over the last axis with a weight: y = x * inv_root(mean(x^2) + eps) * weight.

Same signature as the `ops.rmsnorm` kernels. Arithmetic is FP32 inside the kernel; variants
differ in the inverse root and in where the FP32 result is rounded to the output dtype:

- inv_root "rsqrt": `tl.rsqrt` (on NVIDIA GPUs the fast approximate instruction);
  "recip_sqrt": `1 / tl.sqrt` (fast sqrt, default division);
  "ieee": `div_rn(1, sqrt_rn(x))`, both correctly rounded.
- cast "kernel": the kernel converts to x.dtype before its store (`.to(...)` in Triton);
  cast "torch": the kernel stores FP32 and torch rounds it (round to nearest even).

In the CPU interpreter the in-kernel BF16 cast truncates, so the two casts differ there.
"""

from __future__ import annotations

import torch
import triton.language as tl
from kfuzz.kernels.availability import common_device
from kfuzz.kernels.triton.launch import DualKernel, cdiv, row_blocks

INV_ROOTS = {"rsqrt": 0, "recip_sqrt": 1, "ieee": 2}
CASTS = ("kernel", "torch")


def _rmsnorm_kernel(x_ptr, w_ptr, y_ptr, rows, cols, eps,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, INV_ROOT: tl.constexpr):
    row = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    col = tl.arange(0, BLOCK_N)[None, :]
    mask = (row < rows) & (col < cols)
    offset = row.to(tl.int64) * cols + col
    x = tl.load(x_ptr + offset, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + col, mask=col < cols, other=0.0).to(tl.float32)
    z = tl.sum(x * x, axis=1) / cols + eps
    if INV_ROOT == 0:
        inv = tl.rsqrt(z)
    elif INV_ROOT == 1:
        inv = 1.0 / tl.sqrt(z)
    else:
        inv = tl.div_rn(tl.full(z.shape, 1.0, tl.float32), tl.sqrt_rn(z))
    y = x * inv[:, None] * w
    tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=mask)


_KERNEL = DualKernel(_rmsnorm_kernel, do_not_specialize=["rows", "cols"])


def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, *, eps: float, inv_root: str = "rsqrt", cast: str = "kernel"
) -> torch.Tensor:
    """RMSNorm of `x` [rows, hidden] over its last axis, times `weight` [hidden].

    Takes: x and weight on one device (cuda: compiled Triton; cpu: the interpreter), any
    floating dtype; eps; inv_root one of INV_ROOTS; cast one of CASTS (see the module doc).
    Returns: y, same shape, dtype and device as x.
    Raises: ValueError for a bad inv_root, cast or shape; Unavailable for a device Triton
    cannot run on or rows longer than MAX_ROW.
    """
    if inv_root not in INV_ROOTS:
        raise ValueError(f"unknown inv_root {inv_root!r}; choose from {', '.join(INV_ROOTS)}")
    if cast not in CASTS:
        raise ValueError(f"unknown cast {cast!r}; choose from {', '.join(CASTS)}")
    if x.dim() != 2 or weight.shape != (x.shape[1],):
        raise ValueError(f"expected x [rows, hidden] and weight [hidden], got {list(x.shape)} "
                         f"and {list(weight.shape)}")
    device = common_device((x, weight))
    rows, cols = x.shape
    y = torch.empty(x.shape, dtype=x.dtype if cast == "kernel" else torch.float32, device=device)
    if x.numel() == 0:
        return y.to(x.dtype)
    block_m, block_n = row_blocks(rows, cols, device)
    grid = (cdiv(rows, block_m),)
    _KERNEL.launch(
        device, grid, x.contiguous(), weight.contiguous(), y, rows, cols, eps,
        BLOCK_M=block_m, BLOCK_N=block_n, INV_ROOT=INV_ROOTS[inv_root],
        num_warps=4 if block_m * block_n <= 2048 else 8,
    )
    return y if cast == "kernel" else y.to(x.dtype)

