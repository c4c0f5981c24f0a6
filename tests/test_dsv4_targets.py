"""The DeepSeek-V4 targets find the faults of pypto-lib PR #361 by themselves."""

from __future__ import annotations

import pytest
from kfuzz.search.campaign import CampaignConfig, run_campaign

PROD = {"shape": [4, 64, 512]}
EXACT = {"mode": "exact", "max_ratio": 0.005}


def _campaign(**kw):
    return run_campaign(CampaignConfig(**kw))


def test_low_precision_rsqrt_found_at_production_shape():
    result = _campaign(target="dsv4.q_norm_rope", kernel="rsqrt_hw", comparator=EXACT,
                       pins=PROD, max_examples=20, seed=0)
    shrunk = [f for f in result.findings if f.kind == "shrunk"]
    assert shrunk
    assert shrunk[0].outcome.outputs["out"]["mismatch_ratio"] >= 0.05
    assert shrunk[0].case["shape"] == [4, 64, 512]


@pytest.mark.parametrize("kernel", ["recip_sqrt", "torch_rsqrt"])
def test_accurate_inverse_roots_pass_at_production_shape(kernel):
    result = _campaign(target="dsv4.q_norm_rope", kernel=kernel, comparator=EXACT, pins=PROD,
                       max_examples=30, seed=0)
    assert result.findings == []


def test_tiled_kernel_against_pre_fix_golden_is_a_finding():
    result = _campaign(target="dsv4.sparse_attn", kernel="tile64", oracle="full_fp32",
                       comparator={"mode": "exact"}, max_examples=40, seed=1)
    assert any(f.kind == "shrunk" for f in result.findings)


@pytest.mark.parametrize("tile, suffix", [(64, ""), (32, "_away")])
def test_tiled_kernel_against_post_fix_golden_is_exact(tile, suffix):
    result = _campaign(target="dsv4.sparse_attn", kernel=f"tile{tile}{suffix}",
                       oracle=f"tiled{tile}{suffix}", comparator={"mode": "exact", "max_ratio": 0},
                       max_examples=40, seed=2)
    assert result.findings == []


@pytest.mark.slow
def test_rounding_mode_mismatch_between_kernel_and_golden_is_found():
    result = _campaign(target="dsv4.sparse_attn", kernel="tile64_away", oracle="tiled64",
                       comparator={"mode": "exact", "max_ratio": 0}, max_examples=300, seed=1)
    assert any(f.kind == "shrunk" for f in result.findings)


def test_some_sparse_attention_cases_are_production_sized_with_production_values():
    # A rounding tie among tens of thousands of exp weights needs a production-sized case whose
    # weights spread: unit-normal q, kv and sinks, not a regime that leaves a handful of them.
    from hypothesis import given, settings
    from kfuzz.cases.strategies import largest_shape
    from kfuzz.targets.builtin.dsv4 import HEAD_DIMS
    from kfuzz.targets.registry import get

    target = get("dsv4.sparse_attn")
    largest = largest_shape(*HEAD_DIMS, max_numel=target.max_numel)
    seen = []

    @settings(max_examples=400, database=None, derandomize=True)
    @given(target.cases(target.max_numel))
    def draw(case):
        seen.append(case)

    draw()
    unit = {"kind": "normal", "scale": 1.0}
    production = [c for c in seen if c["shape"] == largest]
    typical = [c for c in production if c["q"] == c["kv"] == c["sink"] == unit
               and "sink_near_scores" not in c]
    assert len(typical) / len(seen) > 0.05
    assert all(c["index"]["n_valid"] == c["index"]["k"] for c in typical)


@pytest.mark.parametrize("name", ["ops.rope", "dsv4.q_norm_rope"])
def test_rope_cases_always_admit_a_position_other_than_zero(name):
    # Position 0 is the identity: a case whose every position is 0 tests nothing.
    from hypothesis import given, settings
    from kfuzz.targets.registry import get

    target = get(name)
    seen = []

    @settings(max_examples=200, database=None, derandomize=True)
    @given(target.cases(target.max_numel))
    def draw(case):
        seen.append(case["max_position"])

    draw()
    assert min(seen) == 2
