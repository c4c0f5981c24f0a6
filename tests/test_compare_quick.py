"""The summary of a passing output (`kfuzz.judge.quick`) decides what the full comparison
decides: the same verdict, mismatch count, non-finite counts and closest call, on drawn outputs
with NaN, Inf, subnormals and elements on their bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kfuzz.judge import quick
from kfuzz.judge.comparator import Comparator
from kfuzz.judge.compare import compare

DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# Powers of two among the bounds, so that |e| * rtol + atol is often a value of the dtype and
# elements land exactly on their bound.
TOLERANCES = (None, (2.0**-5, 2.0**-3), (2.0**-10, 2.0**-6), (1e-5, 1.6e-2), (2.0**-101, 0.5),
              (0.0, 2.0**-4), (1.0, 1.0), (2.0, 0.0))
VERDICT = ("mismatches", "numel", "mismatch_ratio", "passed", "worst_over_allowed",
           "nonfinite_actual", "nonfinite_expected", "nonfinite_mismatches", "comparator")


def _comparators(summarised: bool) -> st.SearchStrategy[Comparator]:
    tolerances = [t for t in TOLERANCES if t is None or quick.MIN_ATOL <= t[0] <= 1]
    allclose = st.builds(
        lambda tol, ratio, round_expected: Comparator(
            atol=None if tol is None else tol[0], rtol=None if tol is None else tol[1],
            max_ratio=ratio, round_expected=round_expected),
        st.sampled_from(tolerances if summarised else TOLERANCES),
        st.sampled_from([0.0, 0.01, 0.5]), st.just(True) if summarised else st.booleans())
    if summarised:
        return allclose
    # allclose, the mode the summary judges, three times in five.
    return st.one_of(allclose, allclose, allclose, st.just(Comparator(mode="exact")),
                     st.just(Comparator(mode="ulp", ulp=2.0)))


def _step(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`x` moved by `steps` representable values of its dtype (through its bit pattern)."""
    ints = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
    bits = x.view(ints[x.dtype])
    return (bits + steps.to(bits.dtype)).view(x.dtype)


SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-45, 6e-8, 1e-40,
                           9.2e-41, 3.0e38, 65504.0, 1.0, -1.0])
ORDINARY = st.one_of(st.floats(-4.0, 4.0), st.floats(-1e6, 1e6))
VALUES = st.one_of(ORDINARY, SPECIAL)


@st.composite
def outputs(draw: st.DrawFn,
            summarised: bool = False) -> tuple[torch.Tensor, torch.Tensor, Comparator]:
    """(actual, expected, comparator): an expected tensor, and an actual one made from it by
    rounding, stepping a few representable values, landing on the bound (or next to it), or
    drawing anew; sizes on both sides of `quick.SMALL`. `summarised`: only what the summary
    may judge (allclose with bounds it takes, no NaN or Inf, a reference rounded to the output
    dtype), most of it passing."""
    dtype = draw(st.sampled_from(DTYPES))
    cmp = draw(_comparators(summarised))
    n = draw(st.sampled_from([1, 3, quick.SMALL, quick.SMALL + 1, 200]))
    # Half the outputs hold only ordinary values, so that many pass and the summary judges them.
    specials = not summarised and draw(st.booleans())
    base = draw(st.lists(VALUES if specials else ORDINARY, min_size=1, max_size=8))
    expected = torch.tensor([base[i % len(base)] for i in range(n)], dtype=torch.float64)
    expected = expected * (1 + draw(st.sampled_from([0.0, 1e-3, 2.0**-9])))
    e_dtype = expected.to(dtype).to(torch.float64)
    how = draw(st.sampled_from(["same", "steps", "bound"] + ([] if summarised else ["fresh"])))
    if how == "same":
        actual = e_dtype.to(dtype)
    elif how == "steps":
        most = draw(st.integers(1, 1 if summarised else 3))  # steps of any element at most
        steps = torch.tensor(draw(st.lists(st.integers(-most, most), min_size=n, max_size=n)))
        actual = _step(e_dtype.to(dtype), steps)
    elif how == "bound":
        resolved = cmp.resolved(dtype)
        atol, rtol = resolved.atol or 0.0, resolved.rtol or 0.0
        edge = e_dtype + e_dtype.abs() * rtol + atol
        low = -2 if summarised else -1  # below the bound, up to two steps, or past it
        steps = torch.tensor(draw(st.lists(st.integers(low, 1), min_size=n, max_size=n)))
        actual = _step(edge.to(dtype), steps)
    else:
        actual = torch.tensor(draw(st.lists(VALUES, min_size=n, max_size=n)),
                              dtype=torch.float64).to(dtype)
    if draw(st.booleans()):
        expected = expected.to(draw(st.sampled_from([dtype, torch.float32])))
    shape = draw(st.sampled_from([(n,), (1, n)]))
    return actual.reshape(shape), expected.reshape(shape), cmp


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(outputs(), outputs(summarised=True)))
def test_the_summary_decides_what_the_full_comparison_decides(drawn):
    actual, expected, cmp = drawn
    full = compare(actual, expected, cmp)
    fast = compare(actual, expected, cmp, full=False)
    for key in VERDICT:
        assert fast[key] == full[key], key
    if fast.complete:  # a failing output: everything, as the full comparison has it
        assert fast.to_dict() == full.to_dict()
    else:
        counts = [line for line in full.message.splitlines()
                  if line.startswith(("Mismatched elements", "Non-finite"))]
        assert fast.message.splitlines() == counts
    direct = quick.summary(actual, expected, cmp)
    if direct is not None:  # what it claims: a pass with the full comparison's numbers
        assert full["passed"] and full["mismatches"] == 0
        assert direct.to_dict() == {**fast.to_dict()}


@pytest.mark.parametrize("n", [8, quick.SMALL, 3 * 1024])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_passing_output_is_summarised_in_one_pass(n, dtype):
    expected = torch.linspace(-3, 3, n, dtype=torch.float64) * 1.0001
    actual = expected.to(dtype)
    expected[n // 3] = 0.0
    actual[n // 3] = 1e-6
    got = quick.summary(actual, expected, Comparator())
    assert got is not None and got.passed and not got.complete
    full = compare(actual, expected, Comparator())
    assert full["worst_over_allowed"] == got["worst_over_allowed"] > 0
    assert got["message"] == full["message"].splitlines()[0]


def test_kept_buffers_give_the_numbers_of_new_ones(monkeypatch):
    # Larger and smaller outputs in turn, in every dtype: what a kept buffer held before
    # never shows, and past SCRATCH_MAX new tensors give the same numbers.
    for i, (n, dtype) in enumerate([(5000, torch.bfloat16), (300, torch.float16),
                                    (9000, torch.float32), (70, torch.bfloat16),
                                    (7000, torch.bfloat16), (4000, torch.float16)]):
        expected = torch.linspace(-3, 3, n, dtype=torch.float64) * 1.0001
        steps = torch.zeros(n, dtype=torch.int64)
        steps[(i * 977) % n] = 1  # the closest call: one representable value off
        actual = _step(expected.to(dtype), steps)
        kept = quick.summary(actual, expected, Comparator())
        with monkeypatch.context() as patch:
            patch.setattr(quick, "SCRATCH_MAX", 0)
            new = quick.summary(actual, expected, Comparator())
        full = compare(actual, expected, Comparator())
        assert full.passed and kept is not None and new is not None
        assert kept.to_dict() == new.to_dict()
        assert kept.worst_over_allowed == full.worst_over_allowed


@pytest.mark.parametrize("n", [8, 3 * 1024])
def test_what_the_summary_leaves_to_the_stages(n):
    expected = torch.ones(n, dtype=torch.float64)
    nan = expected.clone()
    nan[-1] = math.nan
    off = expected.clone()
    off[0] = 1.1
    for actual in (nan.to(torch.bfloat16), off.to(torch.bfloat16)):
        assert quick.summary(actual, expected, Comparator()) is None
    # Inside its bound by less than the float32 margin: passes; a few elements are judged in
    # float64 by the summary, many are left to the stages.
    near = torch.full((n,), 1.0 + 2.0**-7, dtype=torch.bfloat16)
    close_call = Comparator(atol=2.0**-7 * (1 + 2.0**-20), rtol=0.0)
    summarised = quick.summary(near, expected, close_call)
    full = compare(near, expected, close_call)
    assert full.passed and 1 - 2.0**-16 < full.worst_over_allowed < 1
    if n > quick.SMALL:
        assert summarised is None
    else:
        assert summarised is not None and summarised.worst_over_allowed == full.worst_over_allowed
    for cmp in (Comparator(mode="exact"), Comparator(atol=0.0, rtol=0.1)):
        assert quick.summary(expected.to(torch.bfloat16), expected, cmp) is None
    assert quick.summary(expected, expected, Comparator()) is None  # a float64 output
