"""ops.* kernels and oracles on hand-checked inputs."""

from __future__ import annotations

import math

import pytest
import torch
from kfuzz.kernels import ops as k
from kfuzz.oracles import ops as o


def test_rmsnorm_hand_checked():
    x = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([1.0, 2.0])
    # rms = sqrt((9 + 16) / 2) = sqrt(12.5)
    expected = torch.tensor([[3.0, 8.0]], dtype=torch.float64) / math.sqrt(12.5)
    assert torch.allclose(o.rmsnorm_fp64(x, w, eps=0.0), expected)
    assert torch.allclose(k.rmsnorm_fp32(x, w, eps=0.0).double(), expected, rtol=1e-6)
    assert torch.allclose(k.rmsnorm_lowp(x.bfloat16(), w.bfloat16(), eps=0.0).double(),
                          expected, rtol=2e-2)


def test_rmsnorm_lowp_rounds_every_step_fp32_once():
    x = torch.randn(8, 512, generator=torch.Generator().manual_seed(0)).bfloat16()
    w = torch.ones(512, dtype=torch.bfloat16)
    ref = o.rmsnorm_fp64(x, w, eps=1e-6).bfloat16()
    lowp_bad = (k.rmsnorm_lowp(x, w, eps=1e-6) != ref).float().mean().item()
    fp32_bad = (k.rmsnorm_fp32(x, w, eps=1e-6) != ref).float().mean().item()
    assert lowp_bad > 0.05 and fp32_bad < 0.005


def test_softmax_hand_checked():
    x = torch.tensor([[0.0, math.log(3.0)]])
    assert torch.allclose(o.softmax_fp64(x), torch.tensor([[0.25, 0.75]], dtype=torch.float64))
    assert torch.allclose(k.softmax_lowp(x.bfloat16()).float(), torch.tensor([[0.25, 0.75]]), rtol=1e-2)
    assert torch.allclose(k.softmax_fp32(x.half()).float(), torch.tensor([[0.25, 0.75]]), rtol=1e-3)


@pytest.mark.parametrize("fn", [k.rope_lowp, k.rope_fp32, o.rope_fp64])
def test_rope_position_zero_is_identity_and_pairs_rotate(fn):
    x = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    assert torch.equal(fn(x, torch.tensor([0]), base=10000.0).float(), x)
    # First pair has frequency 1: position 1 rotates (1, 0) by one radian.
    y = fn(x, torch.tensor([1]), base=10000.0).double()
    assert y[0, 0, 0].item() == pytest.approx(math.cos(1.0), rel=1e-6)
    assert y[0, 0, 1].item() == pytest.approx(math.sin(1.0), rel=1e-6)


def test_rope_lowp_positions_lose_precision_in_bf16():
    x = torch.ones(1, 1, 2, dtype=torch.bfloat16)
    pos = torch.tensor([257])  # not representable in BF16: rounds to 256
    lowp = k.rope_lowp(x, pos, base=10000.0)
    ref = o.rope_fp64(x, pos, base=10000.0).bfloat16()
    assert not torch.equal(lowp, ref)
