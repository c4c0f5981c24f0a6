"""Eager torch kernels for `ops.layernorm`:

- `layernorm_lowp`: torch.nn.functional.layer_norm on the inputs as they are (torch's CPU
  kernel for BF16/FP16 accumulates in FP32 but rounds its output once);
- `layernorm_fp32`: upcast to FP32, layer_norm, round once to the input dtype.
"""

from __future__ import annotations

import torch


def layernorm_lowp(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                   eps: float) -> torch.Tensor:
    """torch.nn.functional.layer_norm over the last axis in the input dtype."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def layernorm_fp32(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                   eps: float) -> torch.Tensor:
    """layer_norm over the last axis computed in FP32, rounded once to x.dtype."""
    return torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), weight.float(),
                                          bias.float(), eps).to(x.dtype)
