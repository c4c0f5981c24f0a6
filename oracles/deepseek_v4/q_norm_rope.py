"""Golden references for the DeepSeek-V4 decode query path (RMSNorm + RoPE)."""

from __future__ import annotations

import torch
from kfuzz.kernels.deepseek_v4.q_norm_rope import q_norm_rope
from torch import Tensor


def q_norm_rope_fp64(
    q: Tensor,
    positions: Tensor,
    *,
    rope_dim: int = 64,
    eps: float = 1e-6,
    base: float = 10000.0,
    round_norm: bool = True,
) -> Tensor:
    """Float64 per-head RMSNorm (no weight) then interleaved RoPE, keeping the one cast the
    kernel's specification makes between them: the normalised q is stored as BF16 before the
    rotation (`round_norm=True`, the default). Everything else is float64, angles included,
    so the kernel is exact up to its FP32 arithmetic and its inverse root. With
    `round_norm=False` nothing is rounded in between; the kernel then differs in ~32% of the
    rotated dims through double rounding alone, whatever its inverse root.

    Takes: ``q`` [T, H, D] (any float dtype), ``positions`` [T] integer token
    positions, ``rope_dim`` (even, at most D) trailing dims rotated as
    (even, odd) pairs, ``eps``, RoPE ``base``.
    Returns: [T, H, D] float64.
    Raises: ValueError for an odd or out-of-range ``rope_dim``.
    """
    d = q.shape[-1]
    if isinstance(rope_dim, bool) or not isinstance(rope_dim, int) or rope_dim % 2 or not 0 <= rope_dim <= d:
        raise ValueError(f"rope_dim must be an even int in [0, {d}], got {rope_dim!r}")
    x = q.double()
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    if round_norm:
        y = y.to(torch.bfloat16).double()
    if rope_dim == 0:
        return y
    # Complex multiplication is the rotation; a different route from the
    # kernel's explicit cos/sin products.
    freq = base ** (-torch.arange(0, rope_dim, 2, dtype=torch.float64, device=q.device) / rope_dim)
    angle = positions.to(device=q.device, dtype=torch.float64)[:, None] * freq
    phase = torch.polar(torch.ones_like(angle), angle)[:, None, :]  # [T, 1, rope_dim / 2]
    pairs = torch.view_as_complex(y[..., d - rope_dim :].reshape(*y.shape[:-1], -1, 2).contiguous())
    rotated = torch.view_as_real(pairs * phase).flatten(-2)
    return torch.cat((y[..., : d - rope_dim], rotated), dim=-1)


def q_norm_rope_fp32_rsqrt(
    q: Tensor,
    positions: Tensor,
    *,
    rope_dim: int = 64,
    eps: float = 1e-6,
    base: float = 10000.0,
) -> Tensor:
    """FP32 golden with ``torch.rsqrt``: the kernel's casts, an accurate root.

    Takes: ``q`` [T, H, D] float32, ``positions`` [T] integer, ``rope_dim``,
    ``eps``, ``base`` as for ``kfuzz.kernels.deepseek_v4.q_norm_rope``.
    Returns: [T, H, D] bfloat16, equal to the kernel with
    ``inv_root="torch_rsqrt"``.
    Raises: ValueError for a bad ``rope_dim`` or input shape.
    """
    return q_norm_rope(q, positions, rope_dim=rope_dim, eps=eps, inv_root="torch_rsqrt", base=base)
