"""Shrinking toward small cases: strategies that shrink toward small sizes, the size-directed
pass, regimes that switch off, and the search feedback."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import dtype_of, stamp, values
from kfuzz.execute.executor import InProcessExecutor
from kfuzz.judge.comparator import Comparator
from kfuzz.search.campaign import CampaignConfig, feedback, run_campaign
from kfuzz.shrink.cuts import index_set_reductions
from kfuzz.shrink.passes import reductions, shrink, sizes
from kfuzz.targets.registry import OutputSpec, Target, Variant, get, register


def test_sides_shrink_to_the_smallest_size_that_satisfies():
    fixed = settings(derandomize=True, database=None)  # find() is random otherwise
    assert find(fst.sides(min_side=1, max_side=8192), lambda n: n >= 100, settings=fixed) == 100
    assert find(fst.sides(min_side=64, max_side=512, multiple_of=64), lambda n: n > 100,
                settings=fixed) == 128


def test_sides_reach_the_top_and_the_boundaries():
    seen: list[int] = []

    @settings(max_examples=400, database=None, derandomize=True)
    @given(fst.sides(min_side=1, max_side=4096))
    def draw(n):
        seen.append(n)

    draw()
    assert 0.05 < seen.count(4096) / len(seen) < 0.3
    near = sum(n in fst.boundary_sizes(1, 4096) or n in fst.boundary_sizes(1, 4096, tiles=True)
               for n in seen)
    assert near / len(seen) > 0.3
    assert sum(n <= 64 for n in seen) / len(seen) > 0.3


def test_some_shapes_are_production_like_powers_of_two():
    seen: list[list[int]] = []

    @settings(max_examples=600, database=None, derandomize=True)
    @given(fst.shapes(fst.Dim(1, 64), fst.Dim(2, 256, multiple_of=2), max_numel=1 << 16))
    def draw(shape):
        seen.append(shape)

    draw()

    def pow2(n):
        return n & (n - 1) == 0

    # One of the three largest powers of two of each dimension: 128 as often as 256 (drawn
    # by size alone, 128 is one size in 128 and came up in 2% of shapes).
    both = [s for s in seen if min(s) > 8 and all(pow2(n) for n in s)]
    assert len(both) / len(seen) > 0.15
    assert sum(s[1] == 128 for s in seen) / len(seen) > 0.05
    assert sum(not pow2(s[1]) for s in seen) / len(seen) > 0.1  # other sizes stay common


def test_boundary_sizes_are_next_to_powers_of_two_and_tile_multiples():
    assert fst.boundary_sizes(1, 20) == (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20)
    assert 191 in fst.boundary_sizes(1, 512, tiles=True)
    assert fst.boundary_sizes(64, 512, 64) == (64, 128, 256, 512)


def test_regimes_shrink_away_and_can_be_excluded():
    assert find(fst.distributions(), lambda d: True) == {"kind": "normal", "scale": 1.0}
    with_shift = find(fst.distributions(), lambda d: "shift" in d)
    assert with_shift == {"kind": "normal", "scale": 1.0, "shift": 2.0}
    assert fst.regimes_in({"x": with_shift, "seed": 3}) == {"shift"}
    case = {"q": {"kind": "edge", "edge": "overflow", "spread": 0},
            "kv": {"kind": "normal", "scale": 1.0,
                   "edge_rows": {"edge": "subnormal", "fraction": 1.0}},
            "late_positions": True}
    assert fst.regimes_in(case) == {"edge", "overflow", "edge_rows", "subnormal",
                                    "late_positions"}


def test_a_campaign_never_draws_an_excluded_regime():
    seen: list[dict] = []

    class Recording(InProcessExecutor):
        def evaluate(self, jobs):
            seen.extend(job.case for job in jobs)
            return super().evaluate(jobs)

    run_campaign(CampaignConfig(target="ops.rmsnorm", kernel="eager_fp32", max_examples=60,
                                seed=3, exclude=["overflow", "shift"]), executor=Recording())
    assert len(seen) >= 60
    assert not any(fst.regimes_in(case) & {"overflow", "shift"} for case in seen)


def test_index_set_reductions_keep_slots_within_k_and_may_share_rows():
    case = {"index": {"n_rows": 100, "k": 70, "n_valid": 70, "window": 64, "duplicates": False}}
    labels = dict(index_set_reductions("index")(case))
    shared = labels["index.n_rows 100->2 sharing rows"]["index"]
    assert shared["duplicates"] and shared["n_rows"] == 2
    for candidate in labels.values():
        spec = candidate["index"]
        assert spec["n_valid"] <= spec["k"] and spec["window"] <= spec["k"]


def _sparse_case(shape, n_rows, k, window):
    """A dsv4.sparse_attn case with every slot valid and normal values."""
    normal = {"kind": "normal", "scale": 1.0}
    return stamp({"shape": shape, "index": {"n_rows": n_rows, "k": k, "n_valid": k,
                  "window": window, "ragged": False, "duplicates": False, "sorted": False,
                  "out_of_range": False}, "q": normal, "kv": normal, "sink": normal, "seed": 5})


def test_sizes_one_level_down_are_cut_with_the_fields_they_bound():
    target = get("dsv4.sparse_attn")
    case = _sparse_case([1, 2, 64], n_rows=40, k=32, window=8)
    found = dict(sizes(target, case))
    assert [n for _, n in found["index.n_rows 40"]] == [1, 20, 30, 35, 38, 39]
    cut_k = {n: c["index"] for c, n in found["index.k 32"]}
    # k bounds the valid slots and the window: both come down with it, never above it.
    assert cut_k[16]["n_valid"] == 16 and cut_k[16]["window"] == 8
    assert cut_k[1]["n_valid"] == 1 and cut_k[1]["window"] == 1 and cut_k[1]["n_rows"] == 40
    # Fields that do not size the inputs (valid slots, window) are not sizes.
    assert {label for label, cuts in found.items() if cuts} == {"shape[1] 2", "index.n_rows 40",
                                                                "index.k 32"}
    # The target's own reductions repeat the cuts of n_rows and k: each is tried once.
    tried = [json.dumps(c, sort_keys=True) for _, c in reductions(target, case)]
    assert len(tried) == len(set(tried))
    assert sum(json.dumps(c["index"], sort_keys=True) == json.dumps(
        {**case["index"], "n_rows": 20}, sort_keys=True) and c["shape"] == case["shape"]
        and c["seed"] == case["seed"] and "coords" not in c  # a cut from the end
        for _, c in reductions(target, case)) == 1


def test_reductions_respect_the_targets_dims():
    target = get("dsv4.sparse_attn")
    case = _sparse_case([4, 3, 256], n_rows=8, k=4, window=0)
    shapes = [c["shape"] for label, c in reductions(target, case) if label.startswith("shape")]
    assert [1, 3, 256] in shapes and [4, 3, 64] in shapes
    assert all(s[2] % 64 == 0 and s[2] >= 64 for s in shapes)


def test_the_pass_reaches_the_smallest_case_of_a_threshold_fault():
    # Fails when some element of x exceeds 3: position-stable values keep the offending
    # element while the rest of the shape goes.
    target = get("ops.softmax")
    case = stamp({"shape": [64, 4096], "dtype": "bfloat16",
                  "x": {"kind": "normal", "scale": 1.0, "shift": 2.0}, "seed": 11})

    def fails(c):
        from kfuzz.cases.materialise import generator_for

        return bool((target.inputs(c, generator_for(c))["x"].float() > 3.5).any())

    assert fails(case)
    result = shrink(target, case, fails, deadline=float("inf"))
    rows, cols = result.case["shape"]
    assert fails(result.case) and result.steps
    # Minimal: one row, ending at its first element over the threshold.
    assert rows == 1 and cols < 64
    assert cols == 1 or not fails({**result.case, "shape": [1, cols - 1]})


def test_the_pass_lowers_two_sizes_together_when_the_failure_needs_their_difference():
    # The full-window fault shows only at S = window + 1: neither S nor the window can shrink
    # alone, both together can.
    from kfuzz.errors import KfuzzError
    from kfuzz.execute.executor import Job

    from bench.faults import load

    load()  # faults.window_attn: a plugin
    target = get("faults.window_attn")
    case = stamp({"shape": [15, 1, 1], "tokens": 1, "window": 14,
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    executor = InProcessExecutor()

    def fails(c):
        job = Job("faults.window_attn", "full_window_guard", "fp64", c, None, "cpu")
        try:
            return executor.evaluate([job])[0].failed
        except KfuzzError:  # a candidate outside the case space (window 0), as the search does
            return False

    assert fails(case)
    result = shrink(target, case, fails, deadline=float("inf"))
    assert (result.case["shape"][0], result.case["window"]) == (2, 1)
    assert any(" with window " in step for step in result.steps)


# -- a LayerNorm target as a user writes one, with the README's imports ------------------------

def _ln_lowp(x, weight, bias, *, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def _ln_fp64(x, weight, bias, *, eps):
    return torch.nn.functional.layer_norm(x.double(), x.shape[-1:], weight.double(),
                                          bias.double(), eps)


def _ln_inputs(case, gen):
    dt = dtype_of(case["dtype"])
    hidden = case["shape"][1]
    return {"x": values(gen, case["shape"], dt, case["x"]),
            "weight": values(gen, [hidden], dt, {"kind": "normal", "scale": 1.0}),
            "bias": values(gen, [hidden], dt, {"kind": "normal", "scale": 0.125})}


LAYERNORM = Target(
    name="test.layernorm", doc="LayerNorm", signature="fn(x, weight, bias, *, eps) -> y",
    cases=lambda max_numel: st.fixed_dictionaries({
        "shape": fst.shapes(fst.Dim(1, 64), fst.Dim(1, 8192), max_numel=max_numel),
        "dtype": fst.dtypes(["bfloat16", "float16"]), "x": fst.distributions(),
        "seed": fst.seeds(), "eps": st.sampled_from([1e-5, 1e-6])}),
    inputs=_ln_inputs, params=lambda case: {"eps": case["eps"]},
    expect=lambda case: {"y": OutputSpec(tuple(case["shape"]), dtype_of(case["dtype"]))},
    kernels={"lowp": Variant("lowp", _ln_lowp)}, oracles={"fp64": Variant("fp64", _ln_fp64)},
    comparators={"y": Comparator()}, default_kernel="lowp", default_oracle="fp64",
)


@pytest.fixture
def layernorm_registered(monkeypatch):
    """test.layernorm in the registry for one test only."""
    from kfuzz.targets import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    register(LAYERNORM)


@pytest.mark.slow
def test_a_user_layernorm_shrinks_within_twice_its_smallest_failing_case(layernorm_registered):
    ex = InProcessExecutor()
    from kfuzz.execute.executor import Job

    smallest = None
    for hidden in range(1, 33):
        for seed in range(4):
            case = stamp({"shape": [1, hidden], "dtype": "bfloat16",
                          "x": {"kind": "normal", "scale": 1.0}, "seed": seed, "eps": 1e-5})
            if ex.evaluate([Job("test.layernorm", "lowp", "fp64", case)])[0].failed:
                smallest = LAYERNORM.case_size(case)
                break
        if smallest:
            break
    assert smallest is not None
    for seed in (1, 2):
        result = run_campaign(CampaignConfig(target="test.layernorm", max_examples=50, seed=seed,
                                             shrink_seconds=6, max_numel=1 << 15, batch=1))
        shrunk = [f for f in result.findings if f.kind == "shrunk"]
        assert shrunk
        for finding in shrunk:
            assert finding.shrink["size_after"] <= 2 * smallest, finding.case
            assert finding.shrink["raw_metrics"]["y"]["mismatch_ratio"] > 0


def test_feedback_climbs_headroom_and_ulps_as_well_as_the_ratio():
    case = stamp({"shape": [2, 64], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
                  "eps": 1e-6, "seed": 0})
    from kfuzz.execute.executor import Job

    outcome = InProcessExecutor().evaluate([Job("ops.rmsnorm", "eager_lowp", "fp64", case)])[0]
    scores = feedback(outcome)
    assert set(scores) >= {"y", "y:headroom"}
    assert scores["y"] == outcome.outputs["y"]["mismatch_ratio"]


def test_targets_report_features_the_search_climbs():
    from kfuzz.execute.executor import Job, Outcome

    case = stamp({"shape": [1, 2, 64], "index": {"n_rows": 300, "k": 256, "n_valid": 256,
                  "window": 0, "ragged": False, "duplicates": False, "sorted": False,
                  "out_of_range": False}, "q": {"kind": "normal", "scale": 1.0},
                  "kv": {"kind": "normal", "scale": 1.0, "row_gap": 256.0},
                  "sink": {"kind": "normal", "scale": 1.0}, "seed": 2})
    outcome = InProcessExecutor().evaluate([Job("dsv4.sparse_attn", "tile64", "fp64", case)])[0]
    assert set(outcome.features) == {"bf16_ties", "exp_underflow"}
    assert outcome.features["exp_underflow"] > 0  # rows far apart: some weights underflow
    assert feedback(outcome)["feature:exp_underflow"] == outcome.features["exp_underflow"]
    again = Outcome.from_dict(outcome.to_dict())
    assert again.features == outcome.features


@pytest.mark.parametrize("version, coords_version", [(2, 3), (4, 4), (5, 5)])
def test_the_pass_cuts_inside_an_axis_and_keeps_the_failing_element_wherever_it_sits(
        version, coords_version):
    # One element over the threshold, far from the origin on both axes: a cut from the end
    # loses it; cuts from the front and inside the axes keep it, bit for bit. A version-2 case
    # with coordinates is a version-3 case; a version-4 case stays version 4.
    from kfuzz.cases.materialise import COORDS_KEY, VERSION_KEY, generator_for

    target = get("ops.softmax")
    case = {"shape": [16, 256], "dtype": "float32", "x": {"kind": "normal", "scale": 1.0},
            "seed": 5, VERSION_KEY: version}
    x = target.inputs(case, generator_for(case))["x"]
    threshold = float(x.max()) - 1e-6  # exactly one element, the largest, passes it

    def fails(c):
        return bool((target.inputs(c, generator_for(c))["x"] > threshold).any())

    row, col = divmod(int(x.argmax()), 256)
    assert 0 < row < 15 and 0 < col < 255 and fails(case)
    result = shrink(target, case, fails, deadline=float("inf"))
    assert result.case["shape"] == [1, 1]
    assert result.case[VERSION_KEY] == coords_version and COORDS_KEY in result.case
    assert target.inputs(result.case, generator_for(result.case))["x"].item() == x.max().item()
    assert any("from the front" in s or " at " in s for s in result.steps)


def test_cache_rows_no_index_names_go_while_the_slots_per_token_stay():
    # A failure that needs the token's own rows and its 12 slots (a kernel whose matmul
    # blocking depends on K, say): the cache rows no index names are cut from inside the
    # cache, and cutting them does not take k down with n_rows.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = {**_sparse_case([1, 1, 64], n_rows=40, k=12, window=0), "seed": 3}
    case["index"] = {**case["index"], "n_valid": 4}

    def rows_of(c):
        inputs = target.inputs(c, generator_for(c))
        idx = inputs["indices"][0]
        return inputs["kv"][idx[idx >= 0].long()]

    want = rows_of(case)

    def fails(c):
        return c["index"]["k"] == 12 and c["index"]["n_valid"] == 4 and torch.equal(rows_of(c), want)

    result = shrink(target, case, fails, deadline=float("inf"))
    assert result.case["index"]["n_rows"] == 4 and fails(result.case)
