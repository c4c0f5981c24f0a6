"""Seeded-fault kernels and targets (bench/faults/, a plugin) and the uniform
samplers of their case spaces (bench/samplers.py): each fault shows on its smallest known case
and nowhere it cannot, and each correct kernel passes."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from kfuzz.cases.materialise import VERSION, VERSION_KEY, generator, generator_for
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.kernels.deepseek_v4 import sparse_attn
from kfuzz.kernels.ops import rmsnorm_fp32, rope_fp32
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.targets.registry import get

from bench.faults import kernels as f
from bench.faults import load as load_faults
from bench.samplers import SAMPLERS, sampler
from bench.seeded import FAULTS

load_faults()  # the faults.* targets

NORMAL = {"kind": "normal", "scale": 1.0}
INDEX = {"n_rows": 1, "k": 1, "n_valid": 1, "window": 0, "ragged": False, "duplicates": False,
         "sorted": False, "out_of_range": False}

# The smallest failing case of each fault (bench/smallest.py found them; each reasoned in
# bench/faults/kernels.py), and its size.
SMALLEST = {
    "softmax_no_max": ({"shape": [1, 1], "dtype": "bfloat16", "x": {"kind": "normal",
                        "scale": 64.0}, "seed": 0}, 1),
    "bf16_accumulate": ({"shape": [1, 288], "dtype": "bfloat16", "x": {
        "kind": "constant_rows", "value": 5.0, "fraction": 1.0}, "eps": 1e-6, "seed": 0}, 576),
    "eps_after_root": ({"shape": [1, 1], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 2.0**-8}, "eps": 1e-6, "seed": 1}, 2),
    "merge_no_rescale": ({"shape": [1, 1, 64], "index": {**INDEX, "n_rows": 2, "k": 65,
                          "n_valid": 65, "duplicates": True}, "q": NORMAL, "kv": NORMAL,
                          "sink": NORMAL, "seed": 0}, 258),
    "gather_negative": ({"shape": [1, 1, 64], "index": {**INDEX, "n_valid": 0}, "q": NORMAL,
                         "kv": NORMAL, "sink": NORMAL, "seed": 0}, 130),
    "drop_tail": ({"shape": [1, 1, 64], "index": INDEX, "q": NORMAL, "kv": NORMAL,
                   "sink": NORMAL, "seed": 0}, 130),
    "rsqrt_hw": ({"shape": [1, 1, 64], "rope_dim": 64, "q": {"kind": "normal",
                  "scale": 2.0**-8}, "max_position": 16, "eps": 1e-6, "seed": 1}, 65),
    "window_off_by_one": ({"shape": [2, 1, 1], "tokens": 1, "window": 1, "x": {
        "kind": "normal", "scale": 0.25}, "seed": 0}, 5),
    # No brute force for a rounding tie: the shrunk case of bench/dsv4_case_study.py.
    "round_half_away": ({"shape": [1, 25, 128], "index": {
        **INDEX, "n_rows": 512, "k": 512, "n_valid": 512, "sorted": True}, "q": NORMAL,
        "kv": NORMAL, "sink": NORMAL, "seed": 0}, 69273),
    # The rare faults: cases of the brute force's smallest size, with seeds on which the fault
    # shows under both materialisations.
    "tail_one_unscaled": ({"shape": [1, 1, 64], "index": INDEX, "q": NORMAL, "kv": NORMAL,
                           "sink": NORMAL, "seed": 0}, 130),
    "max_init_mask": ({"shape": [1, 1, 64], "index": INDEX, "q": {
        "kind": "uniform", "low": -64.0, "high": -63.9375}, "kv": {
        "kind": "uniform", "low": 32.0, "high": 32.0625}, "sink": {
        "kind": "log_uniform", "min_exp": 6, "max_exp": 23, "signed": True}, "seed": 3}, 130),
    "full_window_guard": ({"shape": [2, 1, 1], "tokens": 1, "window": 1, "x": {
        "kind": "normal", "scale": 0.25}, "seed": 0}, 5),
    "pow2_tree": ({"shape": [1, 2], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 2.0**-8}, "eps": 1e-6, "seed": 0}, 4),
    "softmax_max_init_zero": ({"shape": [1, 1], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 128.0}, "seed": 4}, 1),
    "rope_rows_tail_one": ({"shape": [1, 1, 2], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 0.25}, "max_position": 2, "base": 10000.0, "seed": 8}, 3),
    "rope_fp16_head128_neox": ({"shape": [1, 1, 128], "dtype": "float16", "x": {
        "kind": "normal", "scale": 0.25}, "max_position": 2, "base": 10000.0, "seed": 9}, 129),
    # Faults of the contract-complete inputs (special values, padding before a valid slot): built
    # by the current materialisation, which has them.
    "prefix_length": ({"shape": [1, 1, 64], "index": {
        "n_rows": 2, "k": 3, "n_valid": 1, "window": 2, "ragged": False, "duplicates": False,
        "sorted": False, "out_of_range": False, "padding": "split"}, "q": NORMAL, "kv": NORMAL,
        "sink": NORMAL, "seed": 0, "materialise": 2}, 196),
    "masked_rows_leak": ({"shape": [1, 1, 64], "index": {
        "n_rows": 2, "k": 2, "n_valid": 1, "window": 1, "ragged": False, "duplicates": False,
        "sorted": False, "out_of_range": False}, "q": NORMAL, "kv": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.0, "inf": 0.0, "rows": 0.5}},
        "sink": NORMAL, "seed": 1, "materialise": 2}, 195),
    "rmsnorm_prescale_max": ({"shape": [1, 2], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.0, "inf": 0.5}}, "eps": 1e-6,
        "seed": 0, "materialise": 2}, 4),
    "rmsnorm_daz": ({"shape": [1, 1], "dtype": "float16", "x": {
        "kind": "edge", "edge": "subnormal", "spread": 0}, "eps": 1e-6, "seed": 0,
        "materialise": 2}, 2),
    "softmax_nan_as_mask": ({"shape": [1, 2], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.5, "inf": 0.0}}, "seed": 0,
        "materialise": 2}, 2),
    "rmsnorm_block_sum": ({"shape": [2, 1], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.5, "inf": 0.0}}, "eps": 1e-6,
        "seed": 0, "materialise": 2}, 3),
}


def _run(target: str, kernel: str, case: dict, oracle: str | None = None,
         comparator: dict | None = None) -> bool:
    """True when `kernel` fails `case` against `oracle` (default: the target's)."""
    job = Job(target, kernel, oracle or get(target).default_oracle, case, comparator)
    return InProcessExecutor().evaluate([job])[0].failed


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
def test_each_fault_fails_its_smallest_case_and_the_correct_kernel_passes_it(fault):
    case, size = SMALLEST[fault.name]
    assert get(fault.target).case_size(case) == size
    assert _run(fault.target, fault.kernel, case, fault.oracle, fault.comparator)
    assert not _run(fault.target, fault.reference, case, fault.oracle, fault.comparator)


# One fault per target: the faults of a target share its production case.
ONE_PER_TARGET = list({fault.target: fault for fault in FAULTS}.values())


@pytest.mark.parametrize("fault", ONE_PER_TARGET, ids=lambda fault: fault.target)
def test_the_fixed_seed_production_case_passes_the_correct_kernel(fault):
    target = get(fault.target)
    case = {**fault.production(0), **fault.pins}
    assert target.case_size(case) > SMALLEST[fault.name][1]
    assert not _run(fault.target, fault.reference, case, fault.oracle, fault.comparator)


@pytest.mark.parametrize("target, kernel, case", [
    # Logits far from overflow: the missing max subtraction changes nothing visible.
    ("faults.softmax", "no_max", {"shape": [4, 64], "dtype": "bfloat16", "x": NORMAL,
                                  "seed": 3}),
    # A short BF16 row: one or two BF16 adds per lane stay within tolerance.
    ("faults.rmsnorm", "bf16_accumulate", {"shape": [4, 16], "dtype": "bfloat16", "x": NORMAL,
                                           "eps": 1e-6, "seed": 3}),
    # Activations far above eps.
    ("faults.rmsnorm", "eps_after_root", {"shape": [4, 64], "dtype": "bfloat16", "x": NORMAL,
                                          "eps": 1e-6, "seed": 3}),
    # One tile: nothing to merge.
    ("faults.sparse_attn", "merge_no_rescale", {
        "shape": [2, 2, 64], "index": {**INDEX, "n_rows": 80, "k": 64, "n_valid": 64},
        "q": NORMAL, "kv": NORMAL, "sink": NORMAL, "seed": 3}),
    # No padding to gather.
    ("faults.sparse_attn", "gather_negative", {
        "shape": [2, 2, 64], "index": {**INDEX, "n_rows": 80, "k": 70, "n_valid": 70},
        "q": NORMAL, "kv": NORMAL, "sink": NORMAL, "seed": 3}),
    # K a multiple of the tile: no tail.
    ("faults.sparse_attn", "drop_tail", {
        "shape": [2, 2, 64], "index": {**INDEX, "n_rows": 200, "k": 128, "n_valid": 100},
        "q": NORMAL, "kv": NORMAL, "sink": NORMAL, "seed": 3}),
    # No more keys than the window sees.
    ("faults.window_attn", "window_off_by_one", {"shape": [8, 2, 16], "tokens": 3,
                                                 "window": 8, "x": NORMAL, "seed": 3}),
    # A tail tile of two positions (K = 66): scored with the scale.
    ("faults.sparse_attn", "tail_one_unscaled", {
        "shape": [2, 2, 64], "index": {**INDEX, "n_rows": 80, "k": 66, "n_valid": 66},
        "q": NORMAL, "kv": NORMAL, "sink": NORMAL, "seed": 3}),
    # The smallest case of max_init_mask with a sink of normal scale: scores far below -1e4,
    # but the correct output is ~0 too.
    ("faults.sparse_attn", "max_init_mask", {**SMALLEST["max_init_mask"][0], "sink": NORMAL}),
    # Scores near zero: nothing underflows.
    ("faults.sparse_attn", "max_init_mask", {
        "shape": [2, 2, 64], "index": {**INDEX, "n_rows": 200, "k": 130, "n_valid": 120},
        "q": NORMAL, "kv": NORMAL, "sink": NORMAL, "seed": 3}),
    # S = window + 2 and S = window: the guard and the window agree.
    ("faults.window_attn", "full_window_guard", {"shape": [8, 2, 16], "tokens": 3,
                                                 "window": 6, "x": NORMAL, "seed": 3}),
    ("faults.window_attn", "full_window_guard", {"shape": [8, 2, 16], "tokens": 3,
                                                 "window": 8, "x": NORMAL, "seed": 3}),
    # Rows one short of and one past a power of two.
    ("faults.rmsnorm", "pow2_tree", {"shape": [4, 63], "dtype": "bfloat16", "x": NORMAL,
                                     "eps": 1e-6, "seed": 3}),
    ("faults.rmsnorm", "pow2_tree", {"shape": [4, 65], "dtype": "float16", "x": NORMAL,
                                     "eps": 1e-6, "seed": 3}),
    # Logits down to -64: the zero start of the max loses nothing.
    ("faults.softmax", "max_init_zero", {"shape": [4, 64], "dtype": "float16", "x": {
        "kind": "uniform", "low": -64.0, "high": -60.0}, "seed": 3}),
    # T * H = 128 and 130: the grid covers every row.
    ("faults.rope", "rows_tail_one", {"shape": [8, 16, 8], "dtype": "bfloat16", "x": NORMAL,
                                      "max_position": 4096, "base": 10000.0, "seed": 3}),
    ("faults.rope", "rows_tail_one", {"shape": [13, 10, 8], "dtype": "float16", "x": NORMAL,
                                      "max_position": 4096, "base": 10000.0, "seed": 3}),
    # Head dim 128 in BF16, and FP16 at head dim 126: the general path.
    ("faults.rope", "fp16_head128_neox", {"shape": [4, 2, 128], "dtype": "bfloat16",
                                          "x": NORMAL, "max_position": 4096,
                                          "base": 10000.0, "seed": 3}),
    ("faults.rope", "fp16_head128_neox", {"shape": [4, 2, 126], "dtype": "float16",
                                          "x": NORMAL, "max_position": 4096,
                                          "base": 10000.0, "seed": 3}),
    # Subnormals in BF16: the flushed outputs are below 1e-30. FP16 without subnormals.
    ("faults.rmsnorm", "daz", {"shape": [4, 64], "dtype": "bfloat16", "x": {
        "kind": "edge", "edge": "subnormal", "spread": 2}, "eps": 1e-6, "seed": 3}),
    ("faults.rmsnorm", "daz", {"shape": [4, 64], "dtype": "float16", "x": NORMAL, "eps": 1e-6,
                               "seed": 3}),
    # Infinities but no NaN: -inf is a masked logit for both; a row of one NaN is NaN for both.
    ("faults.softmax", "nan_as_mask", {"shape": [4, 64], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.0, "inf": 0.05}}, "seed": 3}),
    ("faults.softmax", "nan_as_mask", {"shape": [4, 1], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.5, "inf": 0.0}}, "seed": 3}),
    # One row, with NaN and Inf: its block has no other row. Many finite rows.
    ("faults.rmsnorm", "block_sum", {"shape": [1, 64], "dtype": "bfloat16", "x": {
        "kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.05, "inf": 0.05}}, "eps": 1e-6,
        "seed": 3}),
    ("faults.rmsnorm", "block_sum", {"shape": [9, 64], "dtype": "float16", "x": NORMAL,
                                     "eps": 1e-6, "seed": 3}),
])
def test_each_fault_is_invisible_where_it_cannot_show(target, kernel, case):
    assert not _run(target, kernel, case)


def test_the_sparse_faults_equal_the_kernel_where_they_cannot_show():
    gen = generator(5)
    q = torch.randn(2, 3, 64, generator=gen).bfloat16()
    kv = torch.randn(300, 64, generator=gen).bfloat16()
    sink = torch.randn(3, generator=gen)
    one_tile = torch.randint(0, 300, (2, 40), generator=gen, dtype=torch.int32)
    full_tiles = torch.randint(0, 300, (2, 128), generator=gen, dtype=torch.int32)
    assert torch.equal(f.sparse_attn_merge_no_rescale(q, kv, one_tile, sink),
                       sparse_attn(q, kv, one_tile, sink))
    assert torch.equal(f.sparse_attn_drop_tail(q, kv, full_tiles, sink),
                       sparse_attn(q, kv, full_tiles, sink))
    assert torch.equal(f.sparse_attn_gather_negative(q, kv, full_tiles, sink),
                       sparse_attn(q, kv, full_tiles, sink))
    padded = full_tiles.clone()
    padded[:, 100:] = -1
    assert not torch.equal(f.sparse_attn_gather_negative(q, kv, padded, sink),
                           sparse_attn(q, kv, padded, sink))


def test_the_rare_sparse_faults_equal_the_kernel_where_they_cannot_show():
    gen = generator(7)
    q = torch.randn(2, 3, 64, generator=gen).bfloat16()
    kv = torch.randn(300, 64, generator=gen).bfloat16()
    sink = torch.randn(3, generator=gen)
    for k in (2, 64, 66, 128, 130):  # no tail tile of one position
        indices = torch.randint(0, 300, (2, k), generator=gen, dtype=torch.int32)
        want = sparse_attn(q, kv, indices, sink)
        assert torch.equal(f.sparse_attn_tail_one_unscaled(q, kv, indices, sink), want)
        assert torch.equal(f.sparse_attn_max_init_mask(q, kv, indices, sink), want)
    for k in (1, 65, 129):  # a tail tile of one position
        indices = torch.randint(0, 300, (2, k), generator=gen, dtype=torch.int32)
        assert not torch.equal(f.sparse_attn_tail_one_unscaled(q, kv, indices, sink),
                               sparse_attn(q, kv, indices, sink))


def test_max_init_mask_loses_heads_whose_scores_underflow():
    # One row, score 8 * (-40) * 40 = -12800 per head; sinks -13000 and -12795 (0/0 in the
    # fault; the row keeps weight 1 and 1 / (1 + e^5)) and 0 (both output ~0).
    q = torch.full((1, 3, 64), -40.0).bfloat16()
    kv = torch.full((1, 64), 40.0).bfloat16()
    indices = torch.zeros((1, 1), dtype=torch.int32)
    sink = torch.tensor([-13000.0, -12795.0, 0.0])
    got = f.sparse_attn_max_init_mask(q, kv, indices, sink).float()
    want = sparse_attn(q, kv, indices, sink).float()
    assert torch.equal(want[0, 0], torch.full((64,), 40.0))  # the row, the sink negligible
    assert got[0, 0].isnan().all()
    assert want[0, 1, 0].item() == pytest.approx(40 / (1 + math.exp(5)), rel=1e-2)
    assert got[0, 1].isnan().all()
    assert torch.equal(got[0, 2], want[0, 2])  # 0 / exp(1e4): both output zeros
    assert torch.equal(want[0, 2], torch.zeros(64))
    # Scores above the mask value: the same bits as the correct kernel.
    q = torch.full((1, 3, 64), -4.0).bfloat16()
    assert torch.equal(f.sparse_attn_max_init_mask(q, kv, indices, sink),
                       sparse_attn(q, kv, indices, sink))


def test_softmax_max_init_zero_underflows_only_far_below_zero():
    x = torch.tensor([[-200.0, -201.0], [-50.0, -51.0], [3.0, -300.0]])
    got = f.softmax_max_init_zero(x)
    assert got[0].isnan().all()
    assert torch.allclose(got[1:], torch.softmax(x[1:], dim=-1))


def test_pow2_tree_sums_even_positions_on_power_of_two_rows_only():
    gen = generator(3)
    for hidden in (1, 3, 6, 96, 1000):
        x = torch.randn(4, hidden, generator=gen).bfloat16()
        w = torch.ones(hidden, dtype=torch.bfloat16)
        assert torch.equal(f.rmsnorm_pow2_tree(x, w, eps=1e-6), rmsnorm_fp32(x, w, eps=1e-6))
    for hidden in (2, 8, 64, 4096):
        x = torch.randn(4, hidden, generator=gen).double()
        w = torch.ones(hidden, dtype=torch.float64)
        even = x[:, 0::2].pow(2).sum(-1, keepdim=True) / hidden
        want = x * torch.rsqrt(even + 1e-6)
        assert torch.allclose(f.rmsnorm_pow2_tree(x, w, eps=1e-6).double(), want, rtol=1e-5)


def test_rope_rows_tail_one_leaves_the_last_row_of_a_one_row_tail():
    gen = generator(4)
    for t, h in ((8, 16), (13, 10), (43, 3), (1, 1), (129, 1)):
        x = torch.randn(t, h, 8, generator=gen).bfloat16()
        positions = torch.randint(1, 4096, (t,), generator=gen)
        got = f.rope_rows_tail_one(x, positions, base=10000.0)
        want = rope_fp32(x, positions, base=10000.0)
        if t * h % f.ROPE_ROWS_PER_BLOCK == 1:
            assert torch.equal(got[-1, -1], x[-1, -1])
            assert torch.equal(got.flatten(0, 1)[:-1], want.flatten(0, 1)[:-1])
        else:
            assert torch.equal(got, want)
    with pytest.raises(ValueError, match="block must be >= 1"):
        f.rope_rows_tail_one(x, positions, base=10000.0, block=0)


def test_rope_fp16_head128_neox_rotates_half_split_pairs():
    gen = generator(5)
    positions = torch.tensor([0, 1, 1000])
    for dtype, d in ((torch.bfloat16, 128), (torch.float16, 126), (torch.float16, 256)):
        x = torch.randn(3, 2, d, generator=gen).to(dtype)
        assert torch.equal(f.rope_fp16_head128_neox(x, positions, base=10000.0),
                           rope_fp32(x, positions, base=10000.0))
    x = torch.randn(3, 2, 128, generator=gen).half()
    got = f.rope_fp16_head128_neox(x, positions, base=10000.0)
    # Interleaving the halves turns the NeoX pairing into the interleaved one.
    perm = torch.stack((torch.arange(64), torch.arange(64, 128)), dim=-1).flatten()
    want = rope_fp32(x[..., perm], positions, base=10000.0)[..., perm.argsort()]
    assert torch.equal(got, want)
    assert torch.equal(got[0], x[0])  # position 0 rotates by nothing
    assert not torch.equal(got[1:], rope_fp32(x, positions, base=10000.0)[1:])


def test_full_window_guard_differs_only_at_one_key_past_the_window():
    gen = generator(6)
    for s, window in ((6, 5), (6, 4), (6, 6), (6, 9), (2, 1)):
        q = torch.randn(2, 2, 8, generator=gen).bfloat16()
        k = torch.randn(s, 2, 8, generator=gen).bfloat16()
        v = torch.randn(s, 2, 8, generator=gen).bfloat16()
        got = f.window_attn_full_guard(q, k, v, window=window)
        want = f.window_attn(q, k, v, window=window)
        assert torch.equal(got[:-1], want[:-1])  # earlier queries see back to key 0 anyway
        assert torch.equal(got[-1], want[-1]) == (s != window + 1)


def test_window_attn_sees_exactly_the_window():
    # v = position index: the output is a weighted mean of the visible positions.
    s, window = 10, 3
    q = torch.zeros(1, 1, 1, dtype=torch.bfloat16)  # equal scores: a plain mean
    k = torch.zeros(s, 1, 1, dtype=torch.bfloat16)
    v = torch.arange(s, dtype=torch.float64).view(s, 1, 1)
    assert f.window_attn_fp64(q, k, v, window=window).item() == pytest.approx(8.0)  # 7, 8, 9
    off = f.window_attn(q, k, v, window=window, off_by_one=True, compute=torch.float64)
    assert off.item() == pytest.approx(7.5)  # 6, 7, 8, 9
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        f.window_attn(q, k, v, window=0)
    with pytest.raises(ValueError, match="need S >= T"):
        f.window_attn(torch.zeros(3, 1, 1), k[:2], v[:2], window=1)


def test_bf16_accumulation_error_grows_with_the_row():
    gen = generator(0)
    errors = []
    for hidden in (64, 4096):
        x = torch.randn(8, hidden, generator=gen).bfloat16()
        w = torch.ones(hidden, dtype=torch.bfloat16)
        got = f.rmsnorm_bf16_accumulate(x, w, eps=1e-6).double()
        want = x.double() / x.double().pow(2).mean(-1, keepdim=True).sqrt()
        errors.append(float(((got - want).abs() / want.abs().clamp_min(1e-3)).median()))
    assert errors[1] > 4 * errors[0]
    with pytest.raises(ValueError, match="lanes must be >= 1"):
        f.rmsnorm_bf16_accumulate(x, w, eps=1e-6, lanes=0)


@pytest.mark.parametrize("target, kernel", [
    ("faults.softmax", "reference"), ("faults.rmsnorm", "reference"),
    ("faults.sparse_attn", "reference"), ("faults.window_attn", "reference"),
    ("faults.rope", "reference"), ("dsv4.q_norm_rope", "recip_sqrt"),
])
def test_correct_kernels_pass_a_short_campaign(target, kernel):
    result = run_campaign(CampaignConfig(target=target, kernel=kernel, max_examples=25, seed=0))
    assert result.examples == 25
    assert result.findings == []


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_uniform_samplers_draw_cases_of_the_targets_own_shape(name):
    target = get(name)
    keys = []

    @settings(max_examples=30, database=None, suppress_health_check=list(HealthCheck))
    @given(target.cases(target.max_numel))
    def collect(case):
        keys.append(set(case))

    collect()
    # The base case space: every field the strategy always draws, none it never draws (its
    # optional regime fields are kfuzz's own), built by the current materialisation.
    required, allowed = set.intersection(*keys), set.union(*keys) | {VERSION_KEY}
    draw = sampler(name, target.max_numel)
    rng = random.Random(0)
    for _ in range(20):
        case = draw(rng)
        assert required <= set(case) <= allowed, set(case) ^ required
        assert case[VERSION_KEY] == VERSION
        inputs = target.inputs(case, generator_for(case))
        assert all(t.numel() <= target.max_numel for t in inputs.values())


def test_sampler_pins_and_unknown_targets():
    draw = sampler("faults.rmsnorm", 1 << 18, {"dtype": "bfloat16"})
    rng = random.Random(1)
    assert {draw(rng)["dtype"] for _ in range(20)} == {"bfloat16"}
    with pytest.raises(KeyError, match="no uniform sampler for 'ops.rope'"):
        sampler("ops.rope", 1)


def _features(case: dict) -> set[str]:
    """The dtypes, special values and index layouts a case holds, as words."""
    out = {f"dtype={case['dtype']}"} if "dtype" in case else set()
    for name, value in case.items():
        if not isinstance(value, dict):
            continue
        if "nonfinite" in value:
            # The special values the entry injects, and whether as whole rows of NaN (kfuzz
            # draws more modes than uniform sampling, which keeps the case space's first ones).
            rates = value["nonfinite"]
            out |= {f"{name}:{k}" for k in ("nan", "inf") if rates[k] or rates.get(f"row_{k}")}
            if rates.get("rows") or rates.get("ends"):
                out.add(f"{name}:nan_rows")
        if value.get("kind") == "edge" and value["edge"] == "subnormal":
            out.add(f"{name}:subnormal")
        if value.get("kind") == "constant_rows" and value["value"] == 0:
            out.add(f"{name}:zero")
        if "padding" in value:
            out.add(f"{name}:padding={value['padding']}")
    return out


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_uniform_samplers_reach_what_the_targets_contract_allows(name):
    # Uniform sampling covers the same space kfuzz searches: every dtype, special value and
    # index layout the target's strategy draws, and nothing it never draws.
    target = get(name)
    drawn: set[str] = set()

    # Derandomized, so that which rare modes 2,000 draws reach is the same on every run.
    @settings(max_examples=2000, database=None, suppress_health_check=list(HealthCheck),
              deadline=None, derandomize=True)
    @given(target.cases(target.max_numel))
    def collect(case):
        drawn.update(_features(case))

    collect()
    draw = sampler(name, target.max_numel)
    rng = random.Random(0)
    sampled = set().union(*(_features(draw(rng)) for _ in range(3000)))
    assert sampled == drawn, (sampled - drawn, drawn - sampled)
