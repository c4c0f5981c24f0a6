"""Every built-in target's drawn inputs reach what its input contract allows: each special
value (NaN, +-Inf, subnormals, signed zeros) a float input's declaration does not exclude,
within a bounded number of examples; and sparse index sets hold -1 padding anywhere, as the
index producers of real models write them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import generator_for, sparse_indices, stamp, values
from kfuzz.search.fresh import fresh_settings
from kfuzz.targets import all_targets, registry

EXAMPLES = 1000  # the bound: each allowed special value is drawn within this many cases
SMALL = 1 << 12  # elements per tensor: the contract is about values, not sizes


def _present(x: torch.Tensor) -> set[str]:
    if not x.is_floating_point():
        return set()
    found = set()
    if torch.isnan(x).any():
        found.add("nan")
    if torch.isinf(x).any():
        found.add("inf")
    tiny = torch.finfo(x.dtype).tiny
    if ((x != 0) & (x.abs() < tiny)).any():
        found.add("subnormal")
    if ((x == 0) & torch.signbit(x)).any():
        found.add("signed_zero")
    return found


def _draw_features(target, inputs: set[str], examples: int = EXAMPLES,
                   wanted: dict[str, set[str]] | None = None,
                   fresh: bool = False) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {name: set() for name in inputs}

    # With `fresh`, independent draws, as a campaign's fresh rounds make them: Hypothesis' own
    # rounds spend most examples on variations of earlier ones, so what 1,000 of them reach
    # depends on the stream (a rare value seen 1 to 30 times in 1,000 examples, by seed).
    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck),
              **(fresh_settings() if fresh else {}))
    @given(target.cases(min(SMALL, target.max_numel)))
    def draw(case):
        if wanted is not None and all(wanted[k] <= seen[k] for k in wanted):
            return  # all found: the remaining examples cost nothing
        case = stamp(case)
        built = target.inputs(case, generator_for(case))
        for name in inputs:
            seen[name] |= _present(built[name])

    draw()
    return seen


TARGETS = sorted(name for name, t in all_targets().items() if t.specials)


def test_every_builtin_activation_declares_its_specials():
    # Each built-in target names, for its float activations, the special values they hold.
    assert {"ops.rmsnorm", "ops.softmax", "ops.rope", "dsv4.sparse_attn",
            "dsv4.q_norm_rope"} <= set(TARGETS)
    assert registry.get("dsv4.sparse_attn").specials.keys() == {"q", "kv"}


@pytest.mark.parametrize("name", TARGETS)
def test_each_allowed_special_value_is_drawn(name):
    target = registry.get(name)
    wanted = {k: set(v) for k, v in target.specials.items()}
    seen = _draw_features(target, set(target.specials), wanted=wanted, fresh=True)
    missing = {k: sorted(set(v) - seen[k]) for k, v in target.specials.items()
               if set(v) - seen[k]}
    assert not missing, f"{name}: not drawn in {EXAMPLES} examples: {missing}"


def test_an_excluded_special_is_said_and_not_drawn():
    target = registry.get("ops.rmsnorm")
    assert "weight" not in target.specials
    assert "excludes nan, inf, subnormal, signed zero" in target.inputs_doc["weight"]
    assert _draw_features(target, {"weight"}, 150)["weight"] == set()


def _slots(indices: torch.Tensor, n_rows: int) -> set[str]:
    found = set()
    for row in indices.tolist():
        valid = [i >= 0 for i in row]
        if any(not a and b for a, b in zip(valid, valid[1:], strict=False)):
            found.add("padding_before_a_valid_slot")
        live = [i for i in row if 0 <= i < n_rows]
        if len(set(live)) < len(live):
            found.add("repeats")
        if live != sorted(live) and len(live) > 1:
            found.add("unsorted")
        if live == sorted(live) and len(live) > 1:
            found.add("sorted")
        if any(i >= n_rows for i in row):
            found.add("out_of_range")
    return found


def test_index_sets_put_padding_anywhere_with_repeats_sorted_and_unsorted():
    seen: set[str] = set()
    layouts: set[str] = set()

    @settings(max_examples=300, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(fst.sparse_index_sets(max_rows=64, max_k=32), st.integers(1, 4))
    def draw(spec, tokens):
        case = stamp({"seed": 1})
        layouts.add(spec.get("padding", "end"))
        seen.update(_slots(sparse_indices(generator_for(case), tokens, spec, name="i"),
                           spec["n_rows"]))

    draw()
    assert layouts == set(fst.PADDINGS)
    assert seen == {"padding_before_a_valid_slot", "repeats", "unsorted", "sorted",
                    "out_of_range"}


def test_split_padding_pads_the_window_part_and_the_topk_part_each():
    case = stamp({"seed": 3})
    spec = {"n_rows": 50, "k": 12, "n_valid": 3, "window": 5, "ragged": False,
            "duplicates": False, "sorted": False, "out_of_range": False, "padding": "split"}
    row = sparse_indices(generator_for(case), 1, spec, name="i")[0].tolist()
    assert row[:5] == [49, 48, 47, -1, -1]  # 3 recent rows, padded to the window's 5 slots
    assert all(0 <= i < 47 for i in row[5:8]) and row[8:] == [-1] * 4  # 3 top-k rows, padded


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_inputs_without_infinities_stay_finite_in_every_dtype(dtype):
    # Log-uniform and outlier magnitudes of an input whose contract excludes Inf stay below
    # FP16's largest value; where Inf is allowed they reach past it.
    def largest(specials):
        found = 0.0

        @settings(max_examples=300, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), **fresh_settings())
        @given(fst.distributions(kinds=("log_uniform", "outliers"), max_scale_exp=8,
                                 specials=specials, regimes=()))
        def draw(dist):
            nonlocal found
            dist = {k: v for k, v in dist.items() if k != "nonfinite"}
            x = values(generator_for({"seed": 1, "materialise": 2}), [4, 64],
                       getattr(torch, dtype), dist)
            found = max(found, float(x.float().abs().max()))

        draw()
        return found

    assert largest(()) <= 2.0**fst.FINITE_MAX_EXP
    if dtype == "float16":  # where Inf is allowed, the magnitudes pass FP16's range
        assert largest(("inf",)) == float("inf")
