"""Float64 oracles for the `ops.*` targets: the exact math, evaluated in float64 on the
inputs' exact values, with no intermediate rounding to the input dtype."""

from __future__ import annotations

import torch
from kfuzz.kernels.ops import _rope, _rope_tables


def rmsnorm_fp64(x: torch.Tensor, weight: torch.Tensor, *, eps: float) -> torch.Tensor:
    """RMSNorm over the last axis in float64."""
    xd = x.double()
    inv = 1.0 / torch.sqrt((xd * xd).mean(dim=-1, keepdim=True) + eps)
    return xd * inv * weight.double()


def softmax_fp64(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis in float64."""
    return torch.softmax(x.double(), dim=-1)


def rope_fp64(x: torch.Tensor, positions: torch.Tensor, *, base: float) -> torch.Tensor:
    """Interleaved-pair RoPE with float64 angles and products."""
    cos, sin = _rope_tables(positions, x.shape[-1], base, torch.float64)
    return _rope(x.double(), cos, sin)
