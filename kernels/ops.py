"""Eager torch kernels for the `ops.*` targets, two variants each:

- `*_lowp`: every operation in the input dtype (an all-BF16 chain for BF16 inputs), as a naive
  port that never upcasts would compute it;
- `*_fp32`: upcast to FP32, compute, round once to the input dtype at the end.
"""

from __future__ import annotations

import torch


def rmsnorm_lowp(x: torch.Tensor, weight: torch.Tensor, *, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis with every intermediate rounded to x.dtype."""
    ms = (x * x).mean(dim=-1, keepdim=True)
    inv = torch.rsqrt(ms + eps)
    return (x * inv) * weight


def rmsnorm_fp32(x: torch.Tensor, weight: torch.Tensor, *, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis computed in FP32, rounded once to x.dtype."""
    xf = x.float()
    inv = torch.rsqrt((xf * xf).mean(dim=-1, keepdim=True) + eps)
    return (xf * inv * weight.float()).to(x.dtype)


def softmax_lowp(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, max-subtracted, every intermediate in x.dtype."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def softmax_fp32(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis computed by torch in FP32, rounded once to x.dtype."""
    return torch.softmax(x.float(), dim=-1).to(x.dtype)


def _rope_tables(positions: torch.Tensor, dim: int, base: float, dtype: torch.dtype):
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=dtype) / dim)
    angles = positions.to(dtype)[:, None] * inv_freq[None, :]
    return torch.cos(angles)[:, None, :], torch.sin(angles)[:, None, :]


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def rope_lowp(x: torch.Tensor, positions: torch.Tensor, *, base: float) -> torch.Tensor:
    """Interleaved-pair RoPE with angle tables, cos/sin and products all in x.dtype."""
    cos, sin = _rope_tables(positions, x.shape[-1], base, x.dtype)
    return _rope(x, cos, sin)


def rope_fp32(x: torch.Tensor, positions: torch.Tensor, *, base: float) -> torch.Tensor:
    """Interleaved-pair RoPE in FP32, rounded once to x.dtype. The cos/sin tables are built in
    float64 and rounded to FP32, as cached tables usually are: FP32 angles at position 65536
    are already off by ~4e-3 rad."""
    cos, sin = _rope_tables(positions, x.shape[-1], base, torch.float64)
    return _rope(x.float(), cos.float(), sin.float()).to(x.dtype)
