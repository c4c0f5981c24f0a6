"""Tests for the DeepSeek-V4 decode kernel emulations and their goldens."""

from __future__ import annotations

import math

import pytest
import torch
from kfuzz.kernels.deepseek_v4 import INV_ROOTS, q_norm_rope, round_to_bf16, sparse_attn
from kfuzz.kernels.deepseek_v4.q_norm_rope import inverse_root
from kfuzz.oracles.deepseek_v4 import (
    q_norm_rope_fp32_rsqrt,
    q_norm_rope_fp64,
    sparse_attn_fp64,
    sparse_attn_full_fp32,
    sparse_attn_tiled,
)
from torch import Tensor


def _bits_to_f32(bits: list[int]) -> Tensor:
    """Build a float32 tensor from unsigned 32-bit patterns."""
    signed = [b - (1 << 32) if b >= 1 << 31 else b for b in bits]
    return torch.tensor(signed, dtype=torch.int32).view(torch.float32)


def _attn_case(
    seed: int,
    t: int = 3,
    h: int = 8,
    d: int = 64,
    n: int = 300,
    k: int = 200,
    *,
    pad: float = 0.1,
    out_of_range: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random sparse attention inputs with -1 padding and out-of-range entries."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(t, h, d, generator=g).to(torch.bfloat16)
    kv = torch.randn(n, d, generator=g).to(torch.bfloat16)
    indices = torch.randint(0, n, (t, k), generator=g)
    r = torch.rand(t, k, generator=g)
    indices[r < pad] = -1
    indices[(r >= pad) & (r < pad + out_of_range)] = n + 3
    sink = torch.randn(h, generator=g)
    return q, kv, indices.to(torch.int32), sink


def _mismatch(a: Tensor, b: Tensor) -> float:
    """Fraction of elements that differ exactly (NaN matches NaN)."""
    a, b = a.double(), b.double()
    same = (a == b) | (a.isnan() & b.isnan())
    return 1.0 - same.double().mean().item()


# --- bf16 rounding -----------------------------------------------------------


def test_round_to_bf16_tie_differs_between_modes() -> None:
    # 0x3F808000 = 1.00390625 lies exactly halfway between bf16 1.0 (even)
    # and 1.0078125 (odd), so only the tie rule decides.
    x = _bits_to_f32([0x3F808000, 0xBF808000])
    assert round_to_bf16(x, "half_even").tolist() == [1.0, -1.0]
    assert round_to_bf16(x, "half_away").tolist() == [1.0078125, -1.0078125]
    assert round_to_bf16(x, "truncate").tolist() == [1.0, -1.0]
    # A tie whose even neighbour is the upper one: both modes round up.
    y = _bits_to_f32([0x3F818000])
    assert round_to_bf16(y, "half_even").item() == round_to_bf16(y, "half_away").item() == 1.015625


def test_round_to_bf16_non_ties_agree() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, generator=g) * torch.logspace(-20, 20, 100_000)
    low = x.view(torch.int32) & 0xFFFF
    x = x[low != 0x8000]
    assert torch.equal(round_to_bf16(x, "half_away"), round_to_bf16(x, "half_even"))
    # Truncation moves toward zero, by less than one bf16 ulp (2^-7 relative).
    trunc = round_to_bf16(x, "truncate").float()
    assert bool((trunc.abs() <= x.abs()).all())
    assert bool(((x - trunc).abs() < x.abs() * 2**-7).all())


def test_round_to_bf16_special_values() -> None:
    # 0x7F800001 is a NaN whose payload sits in the low 16 bits: a naive
    # truncation would turn it into inf.
    x = _bits_to_f32([0x7F800001, 0x7FC00000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00000001, 0x80000000])
    for mode in ("half_even", "half_away", "truncate"):
        r = round_to_bf16(x, mode).float()
        assert r[0].isnan() and r[1].isnan(), mode
        assert r[2].item() == math.inf and r[3].item() == -math.inf, mode
        assert r[6].item() == 0.0 and math.copysign(1.0, r[6].item()) == -1.0, mode
    # The largest float32 rounds past the largest bf16 to nearest, not when truncated.
    assert round_to_bf16(x, "half_away")[4].item() == math.inf
    assert round_to_bf16(x, "half_even")[4].item() == math.inf
    assert math.isfinite(round_to_bf16(x, "truncate")[4].item())


def test_round_to_bf16_validates() -> None:
    with pytest.raises(ValueError, match="'nearest'.*half_even, half_away, truncate"):
        round_to_bf16(torch.zeros(2), "nearest")
    with pytest.raises(TypeError):
        round_to_bf16(torch.zeros(2, dtype=torch.float64), "half_even")


# --- sparse attention: hand-checked cases ------------------------------------


def _two_tile_case() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """D = 4 so the scale is exactly 0.5; q = 2 e0 makes score_i = kv_i[0]."""
    q = torch.tensor([[[2.0, 0.0, 0.0, 0.0]]], dtype=torch.bfloat16)
    kv = torch.tensor(
        [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.bfloat16,
    )
    return q, kv, torch.tensor([[0, 1, 2, 3]], dtype=torch.int32), torch.zeros(1)


def test_tile_merge_matches_hand_computation() -> None:
    q, kv, indices, sink = _two_tile_case()
    # Scores are [0, 0 | 1, 1]; with tile = 2 each tile's exp weights are
    # exactly [1, 1], so l_1 = l_2 = 2, o_1 = kv0 + kv1, o_2 = kv2 + kv3.
    # Merge: m = 1, a = e^-1, b = 1; sink term exp(0 - 1) = e^-1.
    e = math.exp(-1.0)
    o = [e * a + b for a, b in zip([0.0, 1.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0], strict=True)]
    denom = 2 * e + 2 + e
    expected = torch.tensor([[[v / denom for v in o]]], dtype=torch.float64)
    out = sparse_attn(q, kv, indices, sink, tile=2)
    assert torch.equal(out, expected.to(torch.bfloat16))
    # One tile of 4 has no merge; the weights exp(-1) are rounded to bf16
    # inside it, yet the result stays within bf16 noise of the two-tile one.
    one_tile = sparse_attn(q, kv, indices, sink, tile=4)
    torch.testing.assert_close(one_tile.double(), expected, atol=4e-3, rtol=1e-2)
    exact = sparse_attn_fp64(q, kv, indices, sink)
    torch.testing.assert_close(one_tile.double(), exact, atol=4e-3, rtol=1e-2)


def test_tile_sizes_agree_closely() -> None:
    q, kv, indices, sink = _attn_case(1, t=4, h=16, d=64, n=50, k=4, pad=0.0, out_of_range=0.0)
    two = sparse_attn(q, kv, indices, sink, tile=2).double()
    four = sparse_attn(q, kv, indices, sink, tile=4).double()
    torch.testing.assert_close(two, four, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("tile", [2, 4, 64])
def test_padded_tail_changes_nothing(tile: int) -> None:
    q, kv, _, sink = _attn_case(2, t=2, h=8, d=64, n=40)
    g = torch.Generator().manual_seed(3)
    indices = torch.randint(0, 40, (2, 6), generator=g, dtype=torch.int32)
    # Pad by 2 (a partial tile) and by 10 (whole tiles of -1 that are skipped).
    for extra in (2, 10):
        padded = torch.cat((indices, torch.full((2, extra), -1, dtype=torch.int32)), dim=1)
        want = sparse_attn(q, kv, indices, sink, tile=tile)
        assert torch.equal(sparse_attn(q, kv, padded, sink, tile=tile), want)


def test_out_of_range_index_is_skipped() -> None:
    q, kv, _, sink = _attn_case(4, t=2, h=4, d=64, n=30)
    skipped = torch.tensor([[0, 1, -1, 2], [5, -1, 6, -1]], dtype=torch.int32)
    wild = torch.tensor([[0, 1, 30, 2], [5, 1000, 6, -7]], dtype=torch.int32)
    for tile in (1, 2, 4):
        want = sparse_attn(q, kv, skipped, sink, tile=tile)
        assert torch.equal(sparse_attn(q, kv, wild, sink, tile=tile), want)
    assert torch.equal(sparse_attn_fp64(q, kv, wild, sink), sparse_attn_fp64(q, kv, skipped, sink))


def test_token_without_valid_rows_gives_zeros() -> None:
    q, kv, indices, sink = _attn_case(5, t=3, h=4, d=32, n=20, k=10)
    indices[1] = -1
    indices[2, :5] = 99  # out of range only: also no valid row
    indices[2, 5:] = -1
    for fn in (sparse_attn, sparse_attn_tiled, sparse_attn_full_fp32, sparse_attn_fp64):
        out = fn(q, kv, indices, sink)
        assert bool((out[1:] == 0).all()), fn.__name__
        assert bool((out[0] != 0).any()), fn.__name__


def test_dominant_sink_drives_output_to_zero() -> None:
    q, kv, indices, _ = _attn_case(6, t=2, h=4, d=64, n=50, k=40)
    sink = torch.full((4,), 30.0)
    out = sparse_attn(q, kv, indices, sink, tile=16)
    assert out.abs().max().item() < 1e-6
    # A very negative sink removes itself: the output is a plain softmax.
    plain = sparse_attn(q, kv, indices, torch.full((4,), -1e4), tile=16).abs().max().item()
    assert plain > 1e-2


def test_int64_indices_and_determinism() -> None:
    q, kv, indices, sink = _attn_case(7)
    a = sparse_attn(q, kv, indices, sink, tile=32, rounding="half_away")
    b = sparse_attn(q, kv, indices.long(), sink, tile=32, rounding="half_away")
    assert torch.equal(a, b)


# --- sparse attention: against the goldens ------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_kernel_close_to_fp64_oracle(seed: int) -> None:
    args = _attn_case(10 + seed, t=4, h=16, d=128, n=400, k=256)
    # Duplicated indices count twice in both; exercise that path.
    args[2][:, 1] = args[2][:, 0]
    expected = sparse_attn_fp64(*args)
    for rounding in ("half_even", "half_away"):
        out = sparse_attn(*args, tile=64, rounding=rounding)
        torch.testing.assert_close(out.double(), expected, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tile", [32, 64, 128])
@pytest.mark.parametrize("rounding", ["half_even", "half_away"])
def test_kernel_bit_identical_to_tiled_golden(seed: int, tile: int, rounding: str) -> None:
    q, kv, indices, sink = _attn_case(20 + seed, t=5, h=8, d=64, n=300, k=300)
    indices[0] = -1
    indices[1, : tile + 3] = -1  # a whole first tile skipped
    q = q * 4  # sharper softmax: small weights where the bf16 cast bites
    out = sparse_attn(q, kv, indices, sink, tile=tile, rounding=rounding)
    golden = sparse_attn_tiled(q, kv, indices, sink, tile=tile, rounding=rounding)
    assert torch.equal(out, golden)


def _exp_tie_candidates(draws: int = 1 << 20) -> Tensor:
    """bf16 (q0, q1, r0, r1) whose score s = (q0 r0 + q1 r1) / 2 has an exp() tie.

    A tie means exp(s) in float32 has low 16 bits 0x8000, so rounding it to
    bf16 depends on the tie rule alone. Both products are exact in float32,
    so s is one rounding of their sum whatever the matmul's order.
    """
    g = torch.Generator().manual_seed(0)
    q = (torch.rand(draws, 2, generator=g) * 3 + 0.5).to(torch.bfloat16)
    r = -(torch.rand(draws, 2, generator=g) * 3 + 0.5).to(torch.bfloat16)
    prod = q.float() * r.float()
    s = (prod[:, 0] + prod[:, 1]) * 0.5
    tie = (torch.exp(s).view(torch.int32) & 0xFFFF) == 0x8000
    return torch.cat((q, r), dim=1)[tie & (s > -8)]


def test_kernel_rounding_mode_decides_exp_ties() -> None:
    # Row 0 is all zeros (score 0, so m_j = 0, and it adds nothing to o);
    # row 1 has score s with exp(s) on a bf16 tie. half_even and half_away
    # then give p values one bf16 ulp apart, visible in out = p v1 / (1 + p).
    candidates = _exp_tie_candidates()
    assert len(candidates) > 0
    sink = torch.full((1,), -30.0)
    indices = torch.tensor([[0, 1]], dtype=torch.int32)
    differing = 0
    for q0, q1, r0, r1 in candidates.tolist():
        q = torch.tensor([[[q0, q1, 0.0, 0.0]]], dtype=torch.bfloat16)
        kv = torch.tensor([[0.0, 0.0, 0.0, 0.0], [r0, r1, 1.0, 0.0]], dtype=torch.bfloat16)
        even = sparse_attn(q, kv, indices, sink, tile=2, rounding="half_even")
        away = sparse_attn(q, kv, indices, sink, tile=2, rounding="half_away")
        assert torch.equal(even, sparse_attn_tiled(q, kv, indices, sink, tile=2, rounding="half_even"))
        assert torch.equal(away, sparse_attn_tiled(q, kv, indices, sink, tile=2, rounding="half_away"))
        differing += not torch.equal(even, away)
    assert differing > 0


def test_roundings_rarely_matter_on_random_data() -> None:
    # Ties need exp() to land on one of 2^16 bit patterns, so on random data
    # the two modes differ in 0-0.03% of outputs (measured, seeds 0-2 at
    # this shape): a seed-at-a-time test would almost never see them.
    args = _attn_case(30, t=2, h=64, d=512, n=1024, k=512)
    even = sparse_attn(*args, rounding="half_even")
    away = sparse_attn(*args, rounding="half_away")
    assert _mismatch(even, away) < 0.01


def test_full_fp32_golden_differs_at_production_shape() -> None:
    # Production-like decode shape: H = 64, D = 512, top-k 512, N = 1024.
    # Measured on CPU (torch 2.13, seeds 0-2 of _attn_case at this shape,
    # counting elements whose bf16 values are not equal): the tiled kernel
    # with bf16 exp weights differs from the full FP32 softmax golden in
    # 31.1-31.4% of outputs at tile 64 (28.9-29.5% at 32, 32.7-33.3% at 128),
    # while that golden is off the float64 result rounded to bf16 in ~0.025%.
    for seed in range(2):
        args = _attn_case(seed, t=2, h=64, d=512, n=1024, k=512)
        out = sparse_attn(*args, tile=64)
        full = sparse_attn_full_fp32(*args)
        exact = sparse_attn_fp64(*args)
        assert _mismatch(out, full) > 0.2
        assert _mismatch(full, exact.to(torch.bfloat16)) < 0.01
        torch.testing.assert_close(full.double(), exact, atol=1e-2, rtol=1e-2)
        assert torch.equal(out, sparse_attn_tiled(*args, tile=64))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"tile": 0}, "tile.*positive int.*0"),
        ({"tile": -3}, "tile.*positive int.*-3"),
        ({"tile": 2.0}, "tile.*positive int.*2.0"),
        ({"tile": True}, "tile.*positive int.*True"),
        ({"rounding": "nearest"}, "'nearest'.*half_even, half_away"),
        ({"rounding": "truncate"}, "'truncate'.*half_even, half_away"),
    ],
)
def test_sparse_attn_validation(kwargs: dict, pattern: str) -> None:
    args = _attn_case(0, t=1, h=2, d=8, n=4, k=4)
    with pytest.raises(ValueError, match=pattern):
        sparse_attn(*args, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        sparse_attn_tiled(*args, **kwargs)


def test_sparse_attn_validates_shapes() -> None:
    q, kv, indices, sink = _attn_case(0, t=2, h=2, d=8, n=4, k=4)
    with pytest.raises(ValueError, match="kv"):
        sparse_attn(q, kv[:, :4], indices, sink)
    with pytest.raises(ValueError, match="indices"):
        sparse_attn(q, kv, indices[:1], sink)
    with pytest.raises(ValueError, match="sink"):
        sparse_attn(q, kv, indices, sink[:1])


# --- query RMSNorm + RoPE ------------------------------------------------------


def _q_case(seed: int, t: int = 4, h: int = 64, d: int = 512) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, h, d, generator=g), torch.randint(0, 65536, (t,), generator=g)


def test_rope_matches_hand_computation() -> None:
    # All-ones head: RMSNorm gives bf16(1 / sqrt(1 + 1e-6)) = 1.0. With
    # rope_dim = 2 the one pair rotates by angle = position (inv_freq = 1).
    q = torch.ones(1, 1, 4)
    for p in (0, 1, 3):
        out = q_norm_rope(q, torch.tensor([p]), rope_dim=2)
        c, s = math.cos(p), math.sin(p)
        expected = torch.tensor([1.0, 1.0, c - s, s + c]).to(torch.bfloat16)
        assert torch.equal(out[0, 0], expected), p


def test_recip_sqrt_matches_fp64() -> None:
    # At position 0 RoPE is the identity, so every dim checks the RMSNorm.
    # Measured: 0 to 7.6e-6 of elements differ exactly (seeds 0-2).
    q, pos = _q_case(0)
    zero = torch.zeros_like(pos)
    out = q_norm_rope(q, zero, inv_root="recip_sqrt")
    assert _mismatch(out, q_norm_rope_fp64(q, zero).to(torch.bfloat16)) < 1e-4
    # At real positions the oracle (which keeps the kernel's BF16 store of the normalised q
    # before RoPE, with float64 tables) still matches to FP32 noise everywhere.
    out = q_norm_rope(q, pos, inv_root="recip_sqrt")
    assert _mismatch(out, q_norm_rope_fp64(q, pos).to(torch.bfloat16)) < 1e-4
    # Without that store (round_norm=False) the rotated 64 dims differ in ~30% through
    # double rounding alone, while the non-rotated 448 still match.
    unrounded = q_norm_rope_fp64(q, pos, round_norm=False)
    assert _mismatch(out[..., :448], unrounded[..., :448].to(torch.bfloat16)) < 1e-4
    assert 0.1 < _mismatch(out[..., 448:], unrounded[..., 448:].to(torch.bfloat16)) < 0.5
    torch.testing.assert_close(out.double(), unrounded, atol=1e-2, rtol=1e-2)


def test_rsqrt_hw_mismatches_in_tens_of_percent() -> None:
    # Measured: 20-22% exact mismatch of the non-rotated dims (seeds 0-2),
    # the PR #361 signature; recip_sqrt gives < 1e-5 on the same inputs.
    q, pos = _q_case(0)
    zero = torch.zeros_like(pos)
    out = q_norm_rope(q, zero, inv_root="rsqrt_hw")
    assert _mismatch(out, q_norm_rope_fp64(q, zero).to(torch.bfloat16)) > 0.05
    assert _mismatch(out, q_norm_rope(q, zero, inv_root="recip_sqrt")) > 0.05


def test_rsqrt_hw_relative_error() -> None:
    x = torch.logspace(-6, 6, 1_000_000, dtype=torch.float64).float()
    exact = 1.0 / torch.sqrt(x.double())
    rel = ((inverse_root(x, "rsqrt_hw").double() - exact) / exact).abs().max().item()
    assert 1e-3 <= rel <= 3e-3
    for name in ("recip_sqrt", "torch_rsqrt"):
        rel = ((inverse_root(x, name).double() - exact) / exact).abs().max().item()
        assert rel < 1e-6, name


def test_fp32_rsqrt_golden_is_torch_rsqrt_kernel() -> None:
    q, pos = _q_case(1, t=2, h=8, d=128)
    golden = q_norm_rope_fp32_rsqrt(q, pos)
    assert torch.equal(golden, q_norm_rope(q, pos, inv_root="torch_rsqrt"))
    assert golden.dtype == torch.bfloat16 and golden.shape == q.shape


def test_rope_dim_zero_and_full() -> None:
    q, pos = _q_case(2, t=2, h=4, d=64)
    plain = q_norm_rope(q, pos, rope_dim=0)
    assert torch.equal(plain, q_norm_rope(q, torch.zeros_like(pos), rope_dim=64))
    full = q_norm_rope(q, pos, rope_dim=64)
    torch.testing.assert_close(full.double(), q_norm_rope_fp64(q, pos, rope_dim=64), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"rope_dim": 3}, "rope_dim.*even.*3"),
        ({"rope_dim": 130}, "rope_dim.*even.*130"),
        ({"rope_dim": -2}, "rope_dim.*even.*-2"),
        ({"inv_root": "fast"}, "'fast'.*" + ", ".join(INV_ROOTS)),
    ],
)
def test_q_norm_rope_validation(kwargs: dict, pattern: str) -> None:
    q, pos = _q_case(0, t=1, h=2, d=128)
    with pytest.raises(ValueError, match=pattern):
        q_norm_rope(q, pos, **kwargs)


def test_inverse_root_validation() -> None:
    with pytest.raises(ValueError, match="'fast'.*recip_sqrt, torch_rsqrt, rsqrt_hw"):
        inverse_root(torch.ones(2), "fast")
    with pytest.raises(ValueError, match="rope_dim"):
        q_norm_rope_fp64(torch.ones(1, 1, 8), torch.zeros(1, dtype=torch.long), rope_dim=5)
