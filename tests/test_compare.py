"""Tests for kfuzz.judge.compare: hand-checked mismatch counts, metrics, verdicts and settings."""

from __future__ import annotations

import json
import math

import pytest
import torch
from kfuzz.judge.comparator import MODES, Comparator, ComparatorError
from kfuzz.judge.compare import Metrics, ShapeMismatch, compare
from kfuzz.judge.tolerance import TOLERANCES, Tolerance

NAN = math.nan
INF = math.inf
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def f64(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- counting and the closeness test ---------------------------------------------------------


def test_exact_mode_counts_crafted_mismatches() -> None:
    expected = torch.arange(100, dtype=torch.float32).reshape(10, 10)
    actual = expected.clone()
    actual[2, 1] += 0.5
    actual[5, 5] -= 1.0
    actual[9, 0] = 1000.0

    m = compare(actual, expected, Comparator(mode="exact"))

    assert (m.mismatches, m.numel, m.mismatch_ratio, m.passed) == (3, 100, 0.03, False)
    assert m.max_abs == 910.0
    assert m.max_abs_index == [9, 0]
    assert [p["index"] for p in m.worst_points] == [[9, 0], [5, 5], [2, 1]]
    assert m.message.splitlines()[:2] == [
        "Mismatched elements: 3 / 100 (3.0%), allowed 0 (max_ratio 0)",
        "Greatest absolute difference: 910.0 at index (9, 0)",
    ]


def test_allclose_boundary_is_inclusive() -> None:
    # atol + rtol * |e| = 0.25 + 0.5 * |e|: 0.75 and 1.25, exact in binary, as are the
    # differences one step past them.
    comparator = Comparator(atol=0.25, rtol=0.5)
    expected = f64([1.0, -2.0, 1.0])
    on_bound = f64([1.75, -3.25, 1.0])
    over_bound = f64([math.nextafter(1.75, INF), math.nextafter(-3.25, -INF), 1.0])

    assert compare(on_bound, expected, comparator).mismatches == 0
    m = compare(over_bound, expected, comparator)
    assert m.mismatches == 2
    assert sorted(p["allowed"] for p in m.worst_points) == [0.75, 1.25]


def test_expected_is_rounded_to_the_output_dtype() -> None:
    # None of these is a bfloat16 value, so an unrounded reference can never match exactly.
    expected = f64([1 / 3, 2 / 3, 1e-3, 123.456])
    actual = expected.to(torch.bfloat16)

    assert compare(actual, expected, Comparator(mode="exact")).mismatches == 0
    unrounded = compare(actual, expected, Comparator(mode="exact", round_expected=False))
    assert unrounded.mismatches == 4


def test_worst_point_reports_the_rounded_reference() -> None:
    expected = f64([1 / 3])
    rounded = expected.to(torch.bfloat16)
    actual = torch.nextafter(rounded, torch.tensor(1.0, dtype=torch.bfloat16))

    m = compare(actual, expected, Comparator(mode="exact"))

    assert m.mismatches == 1
    assert m.worst_points[0]["expected"] == rounded.item()
    assert m.worst_points[0]["actual"] == actual.item()


def test_float32_output_against_float64_reference_uses_float32_tolerance() -> None:
    m = compare(torch.ones(4), torch.ones(4, dtype=torch.float64) * 1.000001, Comparator())
    assert m.comparator["rtol"] == 1.3e-6
    assert m.mismatches == 0


# --- ulp mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_ulp_mode_one_step_passes_two_fail(dtype: torch.dtype) -> None:
    eps = torch.finfo(dtype).eps
    expected = torch.tensor([1.0, 1.0], dtype=dtype)
    actual = torch.tensor([1.0 + eps, 1.0 + 2 * eps], dtype=dtype)

    m = compare(actual, expected, Comparator(mode="ulp"))

    assert m.mismatches == 1
    assert m.worst_index == [1]
    assert m.max_ulp == 2.0
    assert compare(actual, expected, Comparator(mode="ulp", ulp=2)).mismatches == 0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_ulp_mode_uses_the_subnormal_step_near_zero(dtype: torch.dtype) -> None:
    info = torch.finfo(dtype)
    step = info.eps * info.tiny  # the smallest subnormal
    expected = torch.tensor([3 * step, 0.0, 0.0], dtype=dtype)
    actual = torch.tensor([4 * step, step, 2 * step], dtype=dtype)
    assert actual[0].item() == 4 * step  # really representable, not flushed to zero

    m = compare(actual, expected, Comparator(mode="ulp"))

    assert m.mismatches == 1
    assert m.worst_index == [2]
    assert m.max_ulp == 2.0


def test_ulp_is_measured_at_the_expected_magnitude() -> None:
    # Just below 1.0 the float32 step halves; measured in ulp(1.0) this is half a unit.
    actual = torch.nextafter(torch.ones(1), torch.zeros(1))
    m = compare(actual, torch.ones(1), Comparator(mode="ulp"))
    assert m.max_ulp == 0.5
    assert compare(actual, torch.ones(1), Comparator(mode="ulp", ulp=0.25)).mismatches == 1


def test_max_ulp_is_reported_in_every_mode() -> None:
    eps = torch.finfo(torch.float32).eps
    actual = torch.tensor([1.0 + 3 * eps])
    for mode in MODES:
        assert compare(actual, torch.ones(1), Comparator(mode=mode)).max_ulp == 3.0
    assert compare(torch.ones(2, dtype=torch.int32), torch.ones(2), Comparator()).max_ulp is None


# --- NaN and Inf -----------------------------------------------------------------------------

NONFINITE_CASES = [
    # id, actual, expected, mismatches, nonfinite mismatches, nonfinite_actual, nonfinite_expected
    ("nan-vs-nan", NAN, NAN, 0, 0, 0, 0),
    ("nan-vs-one", NAN, 1.0, 1, 1, 1, 0),
    ("one-vs-nan", 1.0, NAN, 1, 1, 0, 1),
    ("inf-vs-inf", INF, INF, 0, 0, 0, 0),
    ("-inf-vs--inf", -INF, -INF, 0, 0, 0, 0),
    ("inf-vs--inf", INF, -INF, 1, 1, 0, 0),
    ("nan-vs-inf", NAN, INF, 1, 1, 0, 0),
    ("inf-vs-one", INF, 1.0, 1, 1, 1, 0),
    # rtol * |inf| would allow anything; an infinite reference must still be matched exactly.
    ("big-vs-inf", 1e30, INF, 1, 1, 0, 1),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("actual", "expected", "bad", "bad_nonfinite", "nf_actual", "nf_expected"),
    [case[1:] for case in NONFINITE_CASES],
    ids=[case[0] for case in NONFINITE_CASES],
)
def test_nonfinite_values_never_pass_silently(
    mode: str,
    actual: float,
    expected: float,
    bad: int,
    bad_nonfinite: int,
    nf_actual: int,
    nf_expected: int,
) -> None:
    m = compare(torch.tensor([0.5, actual]), torch.tensor([0.5, expected]), Comparator(mode=mode))

    assert m.mismatches == bad
    assert m.nonfinite_mismatches == bad_nonfinite
    assert (m.nonfinite_actual, m.nonfinite_expected) == (nf_actual, nf_expected)
    assert m.passed == (bad == 0)
    # Metrics cover the finite pair only.
    assert (m.max_abs, m.max_abs_index, m.rel_l2, m.cosine) == (0.0, [0], 0.0, 1.0)
    if bad:
        assert m.worst_index == [1]
        assert m.message.splitlines()[-1].startswith(f"Non-finite mismatches: {bad_nonfinite} (")


def test_all_nan_output_has_undefined_metrics() -> None:
    m = compare(torch.full((2, 2), NAN), torch.ones(2, 2), Comparator())

    assert (m.mismatches, m.nonfinite_actual, m.nonfinite_mismatches) == (4, 4, 4)
    assert m.max_abs is m.max_rel is m.rel_l2 is m.cosine is m.max_ulp is None
    assert m.worst_index == [0, 0]
    assert m.message.splitlines()[1:] == [
        "Greatest absolute difference: none (no element is finite on both sides)",
        (
            "Greatest relative difference: none (no element is finite on both sides "
            "with a nonzero expected value)"
        ),
        "Non-finite mismatches: 4 (4 non-finite only in actual, 0 only in expected)",
    ]


def test_nonfinite_mismatches_lead_the_worst_points() -> None:
    actual = torch.tensor([5.0, NAN, 1.5, INF, 1.0])
    expected = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])

    m = compare(actual, expected, Comparator(mode="exact"), worst=3)

    assert [p["index"] for p in m.worst_points] == [[1], [3], [0]]
    assert m.worst_index == [1]
    assert compare(actual, expected, Comparator(mode="exact"), worst=0).worst_points == []
    assert compare(actual, expected, Comparator(mode="exact"), worst=0).worst_index == [1]


def test_compare_leaves_its_inputs_alone() -> None:
    actual = f64([1.0, NAN, 3.0, -INF])
    expected = f64([1.5, NAN, 0.0, 2.0])
    before = (actual.clone(), expected.clone())

    for mode in MODES:
        compare(actual, expected, Comparator(mode=mode))

    assert torch.equal(actual.nan_to_num(7.0), before[0].nan_to_num(7.0))
    assert torch.equal(expected.nan_to_num(7.0), before[1].nan_to_num(7.0))


# --- integer outputs ---------------------------------------------------------------------------


def test_integer_outputs_are_compared_exactly_whatever_the_comparator() -> None:
    # 2**53 + 1 and 2**53 are equal once promoted to float64; they must still mismatch.
    actual = torch.tensor([1, 2, 3, 2**53 + 1], dtype=torch.int64)
    expected = torch.tensor([1, 2, 4, 2**53], dtype=torch.int64)

    m = compare(actual, expected, Comparator(atol=10.0, rtol=10.0))

    assert m.mismatches == 2
    assert m.comparator == Comparator(mode="exact", atol=0.0, rtol=0.0).to_dict()
    assert [p["index"] for p in m.worst_points] == [[2], [3]]
    assert m.worst_points[1]["actual"] == 2**53 + 1
    assert m.worst_points[1]["expected"] == 2**53


def test_bool_and_mixed_integer_outputs() -> None:
    bools = compare(torch.tensor([True, False]), torch.tensor([True, True]), Comparator())
    assert bools.mismatches == 1
    ints = torch.tensor([1, 2, 3], dtype=torch.int32)
    assert compare(ints, ints.to(torch.int64), Comparator(mode="ulp")).mismatches == 0


# --- verdict -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numel", "bad", "max_ratio", "passed", "allowed"),
    [
        (8, 2, 0.25, True, 2),
        (8, 3, 0.25, False, 2),
        (8, 1, 0.0, False, 0),
        (8, 8, 1.0, True, 8),
        # 0.29 * 100 is 28.999999999999996 in binary; 29 of 100 is still within 0.29.
        (100, 29, 0.29, True, 29),
        (100, 30, 0.29, False, 29),
    ],
    ids=["at-budget", "over-budget", "zero-budget", "all-allowed", "decimal-29", "decimal-30"],
)
def test_max_ratio_verdict_boundary(
    numel: int, bad: int, max_ratio: float, passed: bool, allowed: int
) -> None:
    expected = torch.zeros(numel)
    actual = expected.clone()
    actual[:bad] = 1.0

    m = compare(actual, expected, Comparator(mode="exact", max_ratio=max_ratio))

    assert (m.mismatches, m.passed) == (bad, passed)
    assert f", allowed {allowed} (max_ratio " in m.message.splitlines()[0]


def test_rare_mismatches_keep_their_percentage() -> None:
    expected = torch.zeros(64, 512)
    actual = expected.clone()
    actual[3, 7] = 1.0
    first_line = compare(actual, expected, Comparator(mode="exact")).message.splitlines()[0]
    assert first_line == "Mismatched elements: 1 / 32768 (0.0031%), allowed 0 (max_ratio 0)"


def test_empty_outputs_pass() -> None:
    m = compare(torch.empty(0, 3), torch.empty(0, 3), Comparator())

    assert (m.mismatches, m.numel, m.mismatch_ratio, m.passed) == (0, 0, 0.0, True)
    assert m.max_abs is m.worst_index is None
    assert m.message == "Mismatched elements: 0 / 0 (0.0%), allowed 0 (max_ratio 0)"


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_on_a_small_example() -> None:
    actual = f64([[1.0, 2.5], [3.0, 8.0]])
    expected = f64([[1.0, 2.0], [2.0, 10.0]])

    m = compare(actual, expected, Comparator())

    assert m.mismatches == 3
    assert (m.max_abs, m.max_abs_index) == (2.0, [1, 1])
    assert (m.max_rel, m.max_rel_index) == (0.5, [1, 0])
    # diff = (0, .5, 1, 2), |e|^2 = 1 + 4 + 4 + 100, |a|^2 = 1 + 6.25 + 9 + 64, a.e = 92
    assert m.rel_l2 == pytest.approx(math.sqrt(5.25 / 109), rel=1e-15)
    assert m.cosine == pytest.approx(92 / math.sqrt(80.25 * 109), rel=1e-15)
    assert m.worst_index == [1, 1]
    assert m.worst_points[0] == {
        "index": [1, 1],
        "actual": 8.0,
        "expected": 10.0,
        "diff": 2.0,
        "allowed": 1e-7 + 1e-7 * 10.0,
    }
    assert [p["index"] for p in m.worst_points] == [[1, 1], [1, 0], [0, 1]]
    assert m.message == (
        "Mismatched elements: 3 / 4 (75.0%), allowed 0 (max_ratio 0)\n"
        "Greatest absolute difference: 2.0 at index (1, 1) (up to 1e-07 allowed)\n"
        "Greatest relative difference: 0.5 at index (1, 0) (up to 1e-07 allowed)"
    )


def test_worst_index_points_at_the_element_nearest_its_bound_when_all_pass() -> None:
    m = compare(f64([1.005, 100.6]), f64([1.0, 100.0]), Comparator(atol=0.0, rtol=0.01))
    assert m.mismatches == 0
    assert m.max_abs_index == [1]
    assert m.worst_index == [0]  # 0.005 of 0.01 allowed, against 0.6 of 1.0


def test_ulp_mode_message_names_the_ulp_bound() -> None:
    eps = torch.finfo(torch.float32).eps
    m = compare(torch.tensor([1.0, 1.0 + 3 * eps]), torch.ones(2), Comparator(mode="ulp", ulp=2))
    assert m.message.splitlines()[-1] == "Greatest ULP difference: 3.0 at index (1,) (up to 2 allowed)"


def test_zero_dim_outputs_have_empty_indices() -> None:
    m = compare(torch.tensor(1.0), torch.tensor(2.0), Comparator())
    assert m.max_abs_index == []
    assert "at index ()" in m.message


def test_zero_reference_leaves_relative_metrics_undefined() -> None:
    m = compare(torch.ones(3), torch.zeros(3), Comparator())
    assert (m.max_rel, m.rel_l2, m.cosine) == (None, None, None)
    assert m.max_abs == 1.0


# --- serialisation -----------------------------------------------------------------------------


def nonfinite_metrics() -> Metrics:
    actual = torch.tensor([[NAN, INF, 1.0], [2.0, -INF, NAN]])
    expected = torch.tensor([[1.0, -INF, 1.5], [NAN, -INF, NAN]])
    return compare(actual, expected, Comparator(mode="ulp", ulp=4))


def test_to_dict_is_strict_json_even_with_nan_and_inf() -> None:
    d = nonfinite_metrics().to_dict()

    text = json.dumps(d, allow_nan=False)

    points = json.loads(text)["worst_points"]
    assert points[0] == {
        "index": [0, 0],
        "actual": "nan",
        "expected": 1.0,
        "diff": "nan",
        "allowed": 4 * torch.finfo(torch.float32).eps,
    }
    assert points[1]["actual"] == "inf"
    assert points[1]["expected"] == "-inf"
    assert points[2]["allowed"] == 0.0  # a non-finite reference allows nothing


def test_metrics_round_trip_through_json() -> None:
    for m in (nonfinite_metrics(), compare(torch.ones(3), torch.zeros(3), Comparator())):
        d = m.to_dict()
        back = Metrics.from_dict(json.loads(json.dumps(d, allow_nan=False)))
        assert back.to_dict() == d
    back = Metrics.from_dict(nonfinite_metrics().to_dict())
    assert math.isnan(back.worst_points[0]["actual"])
    assert back.worst_points[1]["expected"] == -INF


def test_metrics_from_dict_rejects_missing_and_unknown_keys() -> None:
    d = nonfinite_metrics().to_dict()
    with pytest.raises(ValueError, match="^metrics record lacks key 'cosine'$"):
        Metrics.from_dict({k: v for k, v in d.items() if k != "cosine"})
    with pytest.raises(ValueError, match="^unknown metrics key 'speed'"):
        Metrics.from_dict({**d, "speed": 1.0})


@pytest.mark.parametrize(
    "comparator",
    [
        Comparator(),
        Comparator(mode="exact", max_ratio=0.005),
        Comparator(mode="ulp", ulp=2, round_expected=False),
        Comparator(atol=1e-2, rtol=1e-2, max_ratio=1),
    ],
    ids=lambda c: c.describe(),
)
def test_comparator_round_trips_through_json(comparator: Comparator) -> None:
    d = json.loads(json.dumps(comparator.to_dict(), allow_nan=False))
    assert Comparator.from_dict(d) == comparator


def test_comparator_from_dict_fills_defaults_and_normalises_numbers() -> None:
    c = Comparator.from_dict({"mode": "exact", "max_ratio": 0})
    assert c == Comparator(mode="exact")
    assert c.to_dict() == {
        "mode": "exact",
        "atol": None,
        "rtol": None,
        "ulp": None,
        "max_ratio": 0.0,
        "round_expected": True,
    }
    assert isinstance(c.to_dict()["max_ratio"], float)


# --- comparator settings -----------------------------------------------------------------------

BAD_SETTINGS = [
    (
        "unknown-mode",
        {"mode": "close"},
        "unknown comparison mode 'close'; use one of: allclose, exact, ulp",
    ),
    (
        "rtol-without-atol",
        {"rtol": 1e-3},
        "rtol given without atol; pass both --atol and --rtol",
    ),
    (
        "atol-without-rtol",
        {"atol": 1e-3},
        "atol given without rtol; pass both --atol and --rtol",
    ),
    (
        "negative-atol",
        {"atol": -1.0, "rtol": 0.0},
        "atol must be a finite number >= 0, got -1.0",
    ),
    (
        "nan-rtol",
        {"atol": 0.0, "rtol": NAN},
        "rtol must be a finite number >= 0, got nan",
    ),
    (
        "infinite-atol",
        {"atol": INF, "rtol": 0.0},
        "atol must be a finite number >= 0, got inf",
    ),
    (
        "negative-ulp",
        {"mode": "ulp", "ulp": -1},
        "ulp must be a finite number >= 0, got -1",
    ),
    (
        "string-atol",
        {"atol": "1e-5", "rtol": 0.0},
        "atol must be a number, got str '1e-5'",
    ),
    (
        "bool-ulp",
        {"mode": "ulp", "ulp": True},
        "ulp must be a number, got bool True",
    ),
    (
        "max-ratio-above-one",
        {"max_ratio": 1.5},
        "max_ratio must be a fraction in [0, 1] (0.005 allows 0.5% of elements), got 1.5",
    ),
    (
        "negative-max-ratio",
        {"max_ratio": -0.1},
        "max_ratio must be a fraction in [0, 1] (0.005 allows 0.5% of elements), got -0.1",
    ),
    (
        "max-ratio-as-percent-string",
        {"max_ratio": "0.5%"},
        "max_ratio must be a number, got str '0.5%'",
    ),
    (
        "exact-with-atol",
        {"mode": "exact", "atol": 1e-5, "rtol": 0.0},
        "exact mode means atol = rtol = 0 (got atol=1e-05); use --compare allclose to set tolerances",
    ),
    (
        "exact-with-both",
        {"mode": "exact", "atol": 1e-2, "rtol": 1e-2},
        (
            "exact mode means atol = rtol = 0 (got atol=0.01, rtol=0.01); "
            "use --compare allclose to set tolerances"
        ),
    ),
    (
        "ulp-in-allclose-mode",
        {"ulp": 2},
        "ulp is only used in ulp mode (mode is 'allclose'); pass --compare ulp with --ulp N",
    ),
    (
        "ulp-in-exact-mode",
        {"mode": "exact", "ulp": 2},
        "ulp is only used in ulp mode (mode is 'exact'); pass --compare ulp with --ulp N",
    ),
    (
        "ulp-mode-with-tolerances",
        {"mode": "ulp", "atol": 1e-5, "rtol": 1e-3},
        (
            "ulp mode takes no atol or rtol (got atol=1e-05, rtol=0.001); pass --ulp N, "
            "or --compare allclose with --atol and --rtol"
        ),
    ),
    (
        "round-expected-not-bool",
        {"round_expected": "yes"},
        "round_expected must be True or False, got 'yes'",
    ),
    (
        "unknown-key",
        {"mode": "exact", "tolerance": 0.1},
        "unknown comparator key 'tolerance'; known keys: atol, max_ratio, mode, round_expected, rtol, ulp",
    ),
    (
        "not-a-mapping",
        ["exact"],
        "a comparator must be a mapping, got list",
    ),
]


@pytest.mark.parametrize(
    ("settings", "message"),
    [case[1:] for case in BAD_SETTINGS],
    ids=[case[0] for case in BAD_SETTINGS],
)
def test_comparator_rejects_bad_settings(settings: object, message: str) -> None:
    with pytest.raises(ComparatorError) as from_dict_error:
        Comparator.from_dict(settings)  # type: ignore[arg-type]
    assert str(from_dict_error.value) == message
    fields = set(Comparator().to_dict())
    if isinstance(settings, dict) and set(settings) <= fields:
        with pytest.raises(ComparatorError) as init_error:
            Comparator(**settings)
        assert str(init_error.value) == message


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "exact", "atol": 0, "rtol": 0},
        {"mode": "exact", "atol": 0.0},
        {"max_ratio": 0},
        {"max_ratio": 1},
        {"mode": "ulp", "ulp": 0.5},
        {"atol": 0, "rtol": 0},
    ],
    ids=["exact-zero-tolerances", "exact-zero-atol", "ratio-0", "ratio-1", "half-ulp", "zeros"],
)
def test_comparator_accepts_edge_settings(settings: dict) -> None:
    c = Comparator(**settings)
    assert Comparator.from_dict(c.to_dict()) == c


def test_comparator_error_is_a_value_error() -> None:
    assert issubclass(ComparatorError, ValueError)
    assert issubclass(ShapeMismatch, ValueError)


# --- defaults and descriptions ------------------------------------------------------------------


def test_tolerance_table_matches_torch_testing_defaults() -> None:
    assert TOLERANCES == {
        torch.float16: Tolerance(rtol=1e-3, atol=1e-5),
        torch.bfloat16: Tolerance(rtol=1.6e-2, atol=1e-5),
        torch.float32: Tolerance(rtol=1.3e-6, atol=1e-5),
        torch.float64: Tolerance(rtol=1e-7, atol=1e-7),
    }


@pytest.mark.parametrize(
    ("comparator", "dtype", "resolved"),
    [
        (Comparator(), torch.bfloat16, Comparator(atol=1e-5, rtol=1.6e-2)),
        (Comparator(max_ratio=0.01), torch.float32, Comparator(atol=1e-5, rtol=1.3e-6, max_ratio=0.01)),
        (Comparator(atol=1e-2, rtol=0.0), torch.float16, Comparator(atol=1e-2, rtol=0.0)),
        (Comparator(), torch.float8_e4m3fn, Comparator(atol=1e-7, rtol=1e-7)),
        (Comparator(mode="exact"), torch.float32, Comparator(mode="exact", atol=0.0, rtol=0.0)),
        (Comparator(mode="ulp"), torch.float32, Comparator(mode="ulp", ulp=1.0)),
        (Comparator(mode="ulp", ulp=3), torch.float16, Comparator(mode="ulp", ulp=3.0)),
        (Comparator(atol=1.0, rtol=1.0), torch.int32, Comparator(mode="exact", atol=0, rtol=0)),
        (Comparator(mode="ulp", ulp=2), torch.bool, Comparator(mode="exact", atol=0, rtol=0)),
    ],
    ids=[
        "bf16-default",
        "f32-default-keeps-ratio",
        "given-kept",
        "unknown-float-takes-f64-row",
        "exact",
        "ulp-default",
        "ulp-given",
        "int-becomes-exact",
        "bool-becomes-exact",
    ],
)
def test_resolved_fills_defaults(comparator: Comparator, dtype: torch.dtype, resolved: Comparator) -> None:
    assert comparator.resolved(dtype) == resolved


@pytest.mark.parametrize(
    ("comparator", "text"),
    [
        (Comparator().resolved(torch.bfloat16), "allclose(atol=1e-05, rtol=0.016, max_ratio=0)"),
        (Comparator(), "allclose(atol=auto, rtol=auto, max_ratio=0)"),
        (Comparator(mode="exact", max_ratio=0.005), "exact(max_ratio=0.005)"),
        (Comparator(mode="ulp", ulp=2), "ulp(2, max_ratio=0)"),
        (Comparator(mode="ulp"), "ulp(1, max_ratio=0)"),
        (
            Comparator(mode="exact", round_expected=False),
            "exact(max_ratio=0, round_expected=False)",
        ),
    ],
    ids=["allclose-resolved", "allclose-auto", "exact", "ulp", "ulp-default", "unrounded"],
)
def test_describe(comparator: Comparator, text: str) -> None:
    assert comparator.describe() == text


# --- staging -----------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ShapeMismatch, match=r"^shapes differ: actual \(2, 3\), expected \(3, 2\)$"):
        compare(torch.zeros(2, 3), torch.zeros(3, 2), Comparator())


@pytest.mark.parametrize(
    ("actual", "expected", "comparator", "error", "message"),
    [
        ([1.0], torch.ones(1), Comparator(), TypeError, "actual must be a torch.Tensor, got list"),
        (
            torch.ones(1, dtype=torch.complex64),
            torch.ones(1),
            Comparator(),
            TypeError,
            "actual is complex (torch.complex64); compare torch.view_as_real() of both outputs",
        ),
        (
            torch.ones(1),
            torch.ones(1),
            {"mode": "exact"},
            TypeError,
            "comparator must be a Comparator, got dict",
        ),
    ],
    ids=["list-actual", "complex-actual", "dict-comparator"],
)
def test_compare_rejects_bad_arguments(
    actual: object, expected: object, comparator: object, error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        compare(actual, expected, comparator)  # type: ignore[arg-type]
    assert str(info.value) == message


# --- cross-check against a plain per-element reference -----------------------------------------


def reference_verdicts(actual: torch.Tensor, expected: torch.Tensor, comparator: Comparator) -> dict:
    """Per-element Python restatement of the rules, slow and obvious, for small tensors."""
    cmp = comparator.resolved(actual.dtype)
    if cmp.round_expected:
        expected = expected.to(actual.dtype)
    info = torch.finfo(actual.dtype)
    bad = bad_nonfinite = 0
    abs_diffs, rel_diffs, ulp_diffs, over = [], [], [], []
    for a, e in zip(actual.double().tolist(), expected.double().tolist(), strict=True):
        if not (math.isfinite(a) and math.isfinite(e)):
            if not (a == e or (math.isnan(a) and math.isnan(e))):
                bad += 1
                bad_nonfinite += 1
                over.append(INF)
            continue
        d = abs(a - e)
        step = math.ldexp(info.eps, math.frexp(max(abs(e), info.tiny))[1] - 1)
        if cmp.mode == "ulp":
            allowed = cmp.ulp * step
        else:
            allowed = cmp.atol + cmp.rtol * abs(e)
        bad += d > allowed
        if cmp.mode == "exact":
            over.append(d / step)
        else:
            over.append(d / allowed if allowed else (INF if d else 0.0))
        abs_diffs.append(d)
        ulp_diffs.append(d / step)
        if e != 0:
            rel_diffs.append(d / abs(e))
    return {
        "mismatches": bad,
        "nonfinite_mismatches": bad_nonfinite,
        "max_abs": max(abs_diffs, default=None),
        "max_rel": max(rel_diffs, default=None),
        "max_ulp": max(ulp_diffs, default=None),
        "worst_over_allowed": max(over, default=0.0),
    }


def awkward_pair(seed: int, dtype: torch.dtype, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference and a perturbed output with zeros, subnormals, NaN and Inf sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    expected = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -3, 4, (n,), generator=g
    )
    noise = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -8, -1, (n,), generator=g
    )
    actual = (expected * (1 + noise)).to(dtype)
    info = torch.finfo(dtype)
    specials = [0.0, info.eps * info.tiny, -3 * info.eps * info.tiny, NAN, INF, -INF]
    for tensor in (actual, expected):
        picks = torch.randint(0, n, (12,), generator=g)
        choice = torch.randint(0, len(specials), (12,), generator=g)
        for i, c in zip(picks.tolist(), choice.tolist(), strict=True):
            tensor[i] = specials[c]
    return actual, expected


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize(
    "comparator",
    [Comparator(), Comparator(mode="exact"), Comparator(mode="ulp", ulp=4), Comparator(atol=1e-3, rtol=1e-2)],
    ids=lambda c: c.describe(),
)
@pytest.mark.parametrize("seed", range(3))
def test_matches_a_plain_per_element_reference(seed: int, dtype: torch.dtype, comparator: Comparator) -> None:
    actual, expected = awkward_pair(seed, dtype)

    m = compare(actual, expected, comparator)
    ref = reference_verdicts(actual, expected, comparator)

    assert m.mismatches == ref["mismatches"]
    assert m.nonfinite_mismatches == ref["nonfinite_mismatches"]
    assert m.max_abs == ref["max_abs"]
    assert m.max_rel == ref["max_rel"]
    assert m.max_ulp == ref["max_ulp"]
    assert m.worst_over_allowed == pytest.approx(ref["worst_over_allowed"], rel=1e-15)
    # Above 1 (above 0 in exact mode, which allows nothing) exactly when an element is bad.
    assert (m.worst_over_allowed > (0 if comparator.mode == "exact" else 1)) == (m.mismatches > 0)
    assert json.dumps(m.to_dict(), allow_nan=False)

    summary = compare(actual, expected, comparator, full=False)
    assert (summary.mismatches, summary.passed, summary.worst_over_allowed) == (
        m.mismatches, m.passed, m.worst_over_allowed)
    assert summary.complete == (not m.passed)
    if not m.passed:
        assert summary.to_dict() == m.to_dict()  # strict JSON: NaN points compare equal


# --- worst_over_allowed and the summary path ---------------------------------------------------


@pytest.mark.parametrize(
    ("comparator", "actual", "expected", "over"),
    [
        # 0.05 of atol + rtol * |e| = 0.1 + 0.1 * 4 = 0.5: a tenth of the allowance.
        (Comparator(atol=0.1, rtol=0.1), [4.05, 1.0], [4.0, 1.0], 0.1),
        # 0.75 over 0.1 + 0.1 * 2.5 = 0.35 at the second element; the first is inside.
        (Comparator(atol=0.1, rtol=0.1), [1.0, 3.25], [1.0, 2.5], 0.75 / 0.35),
        # Nothing allowed where the reference is 0 (atol = 0): any difference there is inf.
        (Comparator(atol=0.0, rtol=0.1), [0.0, 1e-30], [0.0, 0.0], INF),
        (Comparator(atol=0.0, rtol=0.1), [0.0, 2.0], [0.0, 2.0], 0.0),
        # ulp mode: distance in float64 ulps over the ulps allowed.
        (Comparator(mode="ulp", ulp=4), [1.0 + 3 * 2.0**-52], [1.0], 0.75),
        # exact mode: the ULP distance itself, 0 when equal.
        (Comparator(mode="exact"), [1.0 + 3 * 2.0**-52, 2.0], [1.0, 2.0], 3.0),
        (Comparator(mode="exact"), [1.0, 2.0], [1.0, 2.0], 0.0),
        # A non-finite mismatch is infinitely far off.
        (Comparator(), [NAN, 1.0], [1.0, 1.0], INF),
        # Matching non-finite values are not.
        (Comparator(), [NAN, INF, 1.0], [NAN, INF, 1.0], 0.0),
    ],
    ids=["inside", "outside", "zero-reference", "zero-reference-equal", "ulp", "exact", "exact-equal",
         "nan", "matching-nonfinite"],
)
def test_worst_over_allowed(comparator: Comparator, actual: list, expected: list, over: float) -> None:
    m = compare(f64(actual), f64(expected), comparator)
    assert m.worst_over_allowed == pytest.approx(over, rel=1e-12)
    summary = compare(f64(actual), f64(expected), comparator, full=False)
    assert summary.worst_over_allowed == m.worst_over_allowed


def test_worst_over_allowed_is_above_one_when_the_excess_is_in_the_last_bit() -> None:
    # diff exceeds the bound by one float64 step, and diff / bound rounds to exactly 1.0.
    bound = 1.9999999999999998
    m = compare(f64([bound + 2.220446049250313e-16]), f64([0.0]), Comparator(atol=bound, rtol=0.0))
    assert m.mismatches == 1
    assert m.worst_over_allowed > 1.0


def test_integer_outputs_count_ulps_as_integer_steps() -> None:
    a = torch.tensor([2**62 + 1, 5], dtype=torch.int64)
    e = torch.tensor([2**62, 5], dtype=torch.int64)
    m = compare(a, e, Comparator())
    # float64 cannot tell them apart, but they are one integer step apart.
    assert (m.mismatches, m.worst_over_allowed) == (1, 1.0)
    assert compare(torch.tensor([3, 9]), torch.tensor([3, 5]), Comparator()).worst_over_allowed == 4.0


def test_summary_of_a_passing_output_holds_only_the_verdict() -> None:
    m = compare(f64([1.0, 2.0]), f64([1.0, 2.0 + 1e-9]), Comparator(atol=1e-6, rtol=0.0), full=False)
    assert (m.complete, m.passed, m.mismatches, m.mismatch_ratio) == (False, True, 0, 0.0)
    assert m.worst_over_allowed == pytest.approx(1e-3, rel=1e-6)
    assert (m.max_abs, m.max_rel, m.rel_l2, m.worst_index, m.worst_points) == (None, None, None, None, [])
    d = m.to_dict()
    assert sorted(d) == sorted([
        "mismatches", "numel", "mismatch_ratio", "passed", "worst_over_allowed", "nonfinite_actual",
        "nonfinite_expected", "nonfinite_mismatches", "comparator", "message", "complete"])
    assert d["complete"] is False
    assert m.message == "Mismatched elements: 0 / 2 (0.0%), allowed 0 (max_ratio 0)"
    assert Metrics.from_dict(json.loads(json.dumps(d, allow_nan=False))) == m


def test_summary_path_computes_everything_for_a_failing_output() -> None:
    m = compare(f64([1.0, 3.0]), f64([1.0, 2.0]), Comparator(), full=False)
    assert m.complete and not m.passed
    assert m == compare(f64([1.0, 3.0]), f64([1.0, 2.0]), Comparator())
    assert "complete" not in m.to_dict()  # a full record keeps the keys corpora always had


def test_metrics_read_like_their_serialised_form() -> None:
    m = nonfinite_metrics()
    d = m.to_dict()
    assert dict(m) == d and list(m) == list(d) and len(m) == len(d)
    assert m["mismatch_ratio"] == m.mismatch_ratio and m["passed"] is m.passed
    assert m["worst_over_allowed"] == "inf"  # as stored: strict JSON
    assert m.get("no such key") is None and "max_abs" in m
    summary = compare(torch.ones(2), torch.ones(2), Comparator(), full=False)
    assert "max_abs" not in summary and summary.get("max_abs") is None
    with pytest.raises(KeyError):
        summary["max_abs"]


def test_records_stored_before_worst_over_allowed_still_load() -> None:
    d = nonfinite_metrics().to_dict()
    del d["worst_over_allowed"]
    m = Metrics.from_dict(d)
    assert m.worst_over_allowed is None and m.mismatches == 4
    assert m.to_dict() == {**d, "worst_over_allowed": None}
