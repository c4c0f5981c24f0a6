"""The float64 oracle of `ops.layernorm`, from the ONNX LayerNormalization formula (biased
variance over the normalised axis): y = (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)
* scale + bias, in float64 on the inputs' exact values."""

from __future__ import annotations

import torch


def layernorm_fp64(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                   eps: float) -> torch.Tensor:
    """LayerNorm over the last axis in float64."""
    xd = x.double()
    centred = xd - xd.mean(dim=-1, keepdim=True)
    var = (centred * centred).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(var + eps) * weight.double() + bias.double()
