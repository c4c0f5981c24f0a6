"""Seeded-fault kernels and targets (kernels/faults.py, fuzz/builtin/faults.py) and the uniform
samplers of their case spaces (bench/samplers.py): each fault shows on its smallest known case
and nowhere it cannot, and each correct kernel passes."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from kfuzz.executor import InProcessExecutor, Job
from kfuzz.kernels import faults as f
from kfuzz.kernels.deepseek_v4 import sparse_attn
from kfuzz.materialise import generator
from kfuzz.search import CampaignConfig, run_campaign
from kfuzz.targets import get

from bench.samplers import SAMPLERS, sampler
from bench.seeded import FAULTS

NORMAL = {"kind": "normal", "scale": 1.0}
INDEX = {"n_rows": 1, "k": 1, "n_valid": 1, "window": 0, "ragged": False, "duplicates": False,
         "sorted": False, "out_of_range": False}

# The smallest failing case of each fault (bench/smallest.py found them; each reasoned in
# kernels/faults.py), and its size.
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
    ("dsv4.q_norm_rope", "recip_sqrt"),
])
def test_correct_kernels_pass_a_short_campaign(target, kernel):
    result = run_campaign(CampaignConfig(target=target, kernel=kernel, max_examples=25, seed=0))
    assert result.examples == 25
    assert result.findings == []


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_uniform_samplers_draw_cases_of_the_targets_own_shape(name):
    target = get(name)
    keys = []

    @settings(max_examples=5, database=None, suppress_health_check=list(HealthCheck))
    @given(target.cases(target.max_numel))
    def collect(case):
        keys.append(set(case))

    collect()
    draw = sampler(name, target.max_numel)
    rng = random.Random(0)
    for _ in range(20):
        case = draw(rng)
        assert set(case) == keys[0]
        inputs = target.inputs(case, generator(case["seed"]))
        assert all(t.numel() <= target.max_numel for t in inputs.values())


def test_sampler_pins_and_unknown_targets():
    draw = sampler("faults.rmsnorm", 1 << 18, {"dtype": "bfloat16"})
    rng = random.Random(1)
    assert {draw(rng)["dtype"] for _ in range(20)} == {"bfloat16"}
    with pytest.raises(KeyError, match="no uniform sampler for 'ops.rope'"):
        sampler("ops.rope", 1)
