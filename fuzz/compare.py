"""Element-wise comparison of a kernel's output against its golden reference.

`compare` works in the stages torch.testing uses: shapes must match, both tensors move to
the CPU, the reference is (optionally) rounded to the output dtype, both are promoted to
float64, and only then is each element tested. It returns `Metrics`: the mismatch count and
the verdict, plus the numbers a stored finding needs (greatest absolute and relative
difference with their indices, rel-L2, cosine, ULP distance, the worst points) and a
torch.testing-style message. A `Comparator` holds the settings; `TOLERANCES` holds the
per-dtype defaults.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

__all__ = [
    "MODES",
    "TOLERANCES",
    "Comparator",
    "ComparatorError",
    "Metrics",
    "ShapeMismatch",
    "Tolerance",
    "compare",
]


class ComparatorError(ValueError):
    """Comparator settings that cannot be used; the message names the setting and the fix."""


class ShapeMismatch(ValueError):
    """The actual and expected outputs have different shapes."""


@dataclass(frozen=True)
class Tolerance:
    """Default closeness bounds for one dtype: pass when |a - e| <= atol + rtol * |e|."""

    rtol: float
    atol: float


TOLERANCES: dict[torch.dtype, Tolerance] = {
    # torch.testing default (torch/testing/_comparison.py, _DTYPE_PRECISIONS).
    torch.float16: Tolerance(rtol=1e-3, atol=1e-5),
    # torch.testing default; rtol is about two bfloat16 steps at 1.0 (eps = 2**-7).
    torch.bfloat16: Tolerance(rtol=1.6e-2, atol=1e-5),
    # torch.testing default.
    torch.float32: Tolerance(rtol=1.3e-6, atol=1e-5),
    # torch.testing default; also the fallback for floating dtypes missing from this table.
    torch.float64: Tolerance(rtol=1e-7, atol=1e-7),
}

MODES = ("allclose", "exact", "ulp")

_DEFAULT_ULP = 1.0
# Sign and mantissa bits cleared, exponent kept: turns a positive normal float64 x into
# 2**floor(log2(x)) exactly, with no rounding that log2() could introduce near powers of two.
_F64_EXPONENT_MASK = 0x7FF0000000000000


def _fmt_setting(value: float) -> str:
    """Format a setting as a user would type it: 0 rather than 0.0, 1e-05 as Python writes it."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _setting_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ComparatorError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


@dataclass(frozen=True)
class Comparator:
    """How one output is judged against its reference.

    Attributes:
        mode: "allclose" (bad when |a - e| > atol + rtol * |e|), "exact" (atol = rtol = 0),
            or "ulp" (bad when more than `ulp` units in the last place of the output dtype apart).
        atol, rtol: allclose bounds, given together; None takes both from TOLERANCES for the
            output dtype.
        ulp: the ulp-mode bound; None means 1.
        max_ratio: the verdict fails when more than this fraction of the elements is bad.
        round_expected: round a floating reference to the floating output dtype before comparing,
            so that a correctly rounded kernel matches exactly.

    Raises:
        ComparatorError: on construction, for settings that cannot be used.
    """

    mode: str = "allclose"
    atol: float | None = None
    rtol: float | None = None
    ulp: float | None = None
    max_ratio: float = 0.0
    round_expected: bool = True

    def __post_init__(self) -> None:
        """Validate the settings and store numbers as floats.

        Raises:
            ComparatorError: naming the offending setting and how to fix it.
        """
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ComparatorError(f"unknown comparison mode {self.mode!r}; use one of: {', '.join(MODES)}")
        for name in ("atol", "rtol", "ulp"):
            value = getattr(self, name)
            if value is None:
                continue
            number = _setting_number(name, value)
            if not (math.isfinite(number) and number >= 0):
                raise ComparatorError(f"{name} must be a finite number >= 0, got {value!r}")
            # Plain floats keep to_dict() identical whether a caller passed 0 or 0.0.
            object.__setattr__(self, name, number)
        ratio = _setting_number("max_ratio", self.max_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ComparatorError(
                f"max_ratio must be a fraction in [0, 1] (0.005 allows 0.5% of elements), "
                f"got {self.max_ratio!r}"
            )
        object.__setattr__(self, "max_ratio", ratio)
        if not isinstance(self.round_expected, bool):
            raise ComparatorError(f"round_expected must be True or False, got {self.round_expected!r}")

        given = [
            f"{name}={_fmt_setting(value)}"
            for name, value in (("atol", self.atol), ("rtol", self.rtol))
            if value is not None
        ]
        if self.mode == "exact":
            nonzero = [
                f"{name}={_fmt_setting(value)}"
                for name, value in (("atol", self.atol), ("rtol", self.rtol))
                if value
            ]
            if nonzero:
                raise ComparatorError(
                    f"exact mode means atol = rtol = 0 (got {', '.join(nonzero)}); "
                    "use --compare allclose to set tolerances"
                )
        if self.ulp is not None and self.mode != "ulp":
            raise ComparatorError(
                f"ulp is only used in ulp mode (mode is {self.mode!r}); pass --compare ulp with --ulp N"
            )
        if self.mode == "ulp" and given:
            raise ComparatorError(
                f"ulp mode takes no atol or rtol (got {', '.join(given)}); pass --ulp N, "
                "or --compare allclose with --atol and --rtol"
            )
        if self.mode == "allclose":
            if self.rtol is not None and self.atol is None:
                raise ComparatorError("rtol given without atol; pass both --atol and --rtol")
            if self.atol is not None and self.rtol is None:
                raise ComparatorError("atol given without rtol; pass both --atol and --rtol")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict with every field present.

        Returns:
            A dict keyed by field name; unset tolerances are None.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparator:
        """Build a comparator from a dict such as `to_dict()` returns; absent keys take defaults.

        Args:
            d: a mapping of field names to values.

        Returns:
            The validated comparator.

        Raises:
            ComparatorError: when `d` is not a mapping, has an unknown key, or holds a bad value.
        """
        if not isinstance(d, Mapping):
            raise ComparatorError(f"a comparator must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = [key for key in d if key not in known]
        if unknown:
            raise ComparatorError(
                f"unknown comparator key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def resolved(self, dtype: torch.dtype) -> Comparator:
        """Fill in the defaults for an output dtype.

        Allclose takes atol/rtol from TOLERANCES (a floating dtype missing from the table takes
        float64's row); exact gets atol = rtol = 0; ulp gets ulp = 1 when unset. Integer and
        bool outputs become exact whatever was asked, since they have no rounding to tolerate.

        Args:
            dtype: the dtype of the kernel's output.

        Returns:
            A comparator with no unset bound for its mode.
        """
        if not dtype.is_floating_point:
            return replace(self, mode="exact", atol=0.0, rtol=0.0, ulp=None)
        if self.mode == "exact":
            return replace(self, atol=0.0, rtol=0.0)
        if self.mode == "ulp":
            return replace(self, ulp=_DEFAULT_ULP if self.ulp is None else self.ulp)
        if self.atol is None:  # validation guarantees rtol is unset too
            tol = TOLERANCES.get(dtype, TOLERANCES[torch.float64])
            return replace(self, atol=tol.atol, rtol=tol.rtol)
        return self

    def describe(self) -> str:
        """Summarise the settings in one line.

        Returns:
            For example "allclose(atol=1e-05, rtol=0.016, max_ratio=0)", "exact(max_ratio=0.005)"
            or "ulp(2, max_ratio=0)"; unset allclose bounds read "auto".
        """
        tail = f"max_ratio={_fmt_setting(self.max_ratio)}"
        if not self.round_expected:
            tail += ", round_expected=False"
        if self.mode == "exact":
            return f"exact({tail})"
        if self.mode == "ulp":
            return f"ulp({_fmt_setting(_DEFAULT_ULP if self.ulp is None else self.ulp)}, {tail})"
        atol = "auto" if self.atol is None else _fmt_setting(self.atol)
        rtol = "auto" if self.rtol is None else _fmt_setting(self.rtol)
        return f"allclose(atol={atol}, rtol={rtol}, {tail})"


_FLOAT_FIELDS = ("mismatch_ratio", "max_abs", "max_rel", "rel_l2", "cosine", "max_ulp")
_INDEX_FIELDS = ("max_abs_index", "max_rel_index", "worst_index")
_INT_FIELDS = (
    "mismatches",
    "numel",
    "nonfinite_actual",
    "nonfinite_expected",
    "nonfinite_mismatches",
)
_POINT_VALUES = ("actual", "expected", "diff", "allowed")
_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_point_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _encode_metric(value: float | None) -> float | str | None:
    # A NaN metric carries no information (None: undefined); an infinite one does (overflow).
    if value is not None and math.isnan(value):
        return None
    return _encode_point_value(None if value is None else float(value))


def _decode_number(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _NONFINITE_NAMES:
            raise ValueError(f"expected a number or one of 'nan', 'inf', '-inf', got {value!r}")
        return _NONFINITE_NAMES[value]
    return value


@dataclass
class Metrics:
    """The outcome of one comparison.

    Attributes:
        mismatches, numel, mismatch_ratio: bad elements, all elements, and their ratio.
        passed: mismatch_ratio <= the comparator's max_ratio.
        max_abs, max_abs_index: greatest |a - e| over elements finite on both sides, and where.
        max_rel, max_rel_index: greatest |a - e| / |e| over those with e != 0, and where.
        worst_index: the element with the greatest excess |a - e| - allowed, a non-finite
            mismatch first; the element nearest its bound when none is bad.
        rel_l2: ||a - e||_2 / ||e||_2 over finite pairs; cosine: their cosine similarity.
        nonfinite_actual: elements NaN/Inf in actual where expected is finite;
            nonfinite_expected: the converse; nonfinite_mismatches: non-finite elements
            (either side) that the other side does not match.
        max_ulp: greatest distance in units in the last place of a floating output dtype.
        comparator: the resolved comparator, as its to_dict().
        worst_points: up to `worst` bad elements, worst first, each
            {index, actual, expected, diff, allowed}; expected is the value compared against.
        message: a torch.testing-style report.

    Undefined numbers (no finite pair, zero norm) are None. Indices are lists of ints.
    """

    mismatches: int
    numel: int
    mismatch_ratio: float
    passed: bool
    max_abs: float | None
    max_abs_index: list[int] | None
    max_rel: float | None
    max_rel_index: list[int] | None
    worst_index: list[int] | None
    rel_l2: float | None
    cosine: float | None
    nonfinite_actual: int
    nonfinite_expected: int
    nonfinite_mismatches: int
    max_ulp: float | None
    comparator: dict[str, Any]
    worst_points: list[dict[str, Any]]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as strictly JSON-safe data.

        Returns:
            A dict that `json.dumps(..., allow_nan=False)` accepts: undefined numbers are None,
            infinite metrics and non-finite point values are the strings "nan", "inf", "-inf".
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _FLOAT_FIELDS:
                value = _encode_metric(value)
            elif f.name in _INT_FIELDS:
                value = int(value)
            elif f.name in _INDEX_FIELDS:
                value = None if value is None else [int(i) for i in value]
            elif f.name == "passed":
                value = bool(value)
            elif f.name == "comparator":
                value = dict(value)
            elif f.name == "worst_points":
                value = [
                    {
                        "index": [int(i) for i in point["index"]],
                        **{key: _encode_point_value(point[key]) for key in _POINT_VALUES},
                    }
                    for point in value
                ]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        """Rebuild metrics from `to_dict()` output (for example a stored finding).

        Args:
            d: a mapping with exactly the Metrics fields.

        Returns:
            The metrics, with "nan"/"inf"/"-inf" strings turned back into floats.

        Raises:
            ValueError: on a missing or unknown key, or a string that is not a non-finite name.
            ComparatorError: when the stored comparator is not valid.
        """
        known = [f.name for f in fields(cls)]
        missing = [name for name in known if name not in d]
        if missing:
            raise ValueError(f"metrics record lacks key {missing[0]!r}")
        unknown = [key for key in d if key not in known]
        if unknown:
            raise ValueError(f"unknown metrics key {unknown[0]!r}; known keys: {', '.join(known)}")
        values = dict(d)
        for name in _FLOAT_FIELDS:
            value = _decode_number(values[name])
            values[name] = None if value is None else float(value)
        for name in _INDEX_FIELDS:
            values[name] = None if values[name] is None else [int(i) for i in values[name]]
        values["comparator"] = Comparator.from_dict(values["comparator"]).to_dict()
        values["worst_points"] = [
            {
                "index": [int(i) for i in point["index"]],
                **{key: _decode_number(point[key]) for key in _POINT_VALUES},
            }
            for point in values["worst_points"]
        ]
        return cls(**values)


def _ulp_size(magnitude: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of `dtype` at each float64 magnitude; the subnormal step below the normals."""
    info = torch.finfo(dtype)
    spacing = magnitude.clamp_min(info.tiny)
    spacing.view(torch.int64).bitwise_and_(_F64_EXPONENT_MASK)
    return spacing.mul_(info.eps)


def _ulp_size_scalar(magnitude: float, dtype: torch.dtype) -> float:
    info = torch.finfo(dtype)
    _, exponent = math.frexp(max(abs(magnitude), info.tiny))
    return math.ldexp(info.eps, exponent - 1)


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for size in reversed(shape):
        flat, rest = divmod(flat, size)
        index.append(rest)
    return index[::-1]


def _percent(ratio: float) -> str:
    # One decimal as torch.testing prints, more when the mismatches are rare but present
    # (0.0031% matters when the budget is 0.5%).
    text = f"{100 * ratio:.4f}".rstrip("0")
    text = text + "0" if text.endswith(".") else text
    if ratio > 0 and float(text) == 0:
        text = f"{100 * ratio:.2g}"
    return text + "%"


def _allowed_mismatches(max_ratio: float, numel: int) -> int:
    """The largest mismatch count m with m / numel <= max_ratio.

    The verdict tests the ratio rather than `m <= max_ratio * numel`: the division is correctly
    rounded, as is a typed fraction such as 0.29, so 29 bad of 100 pass where 0.29 * 100 =
    28.999999999999996 would fail them.
    """
    if numel == 0:
        return 0
    count = min(numel, math.floor(max_ratio * numel))
    while count < numel and (count + 1) / numel <= max_ratio:
        count += 1
    while count > 0 and count / numel > max_ratio:
        count -= 1
    return count


def _message(
    cmp: Comparator,
    *,
    mismatches: int,
    numel: int,
    allowed: int,
    max_abs: float | None,
    max_abs_index: list[int] | None,
    max_rel: float | None,
    max_rel_index: list[int] | None,
    max_ulp: float | None,
    max_ulp_index: list[int] | None,
    nonfinite_mismatches: int,
    nonfinite_actual: int,
    nonfinite_expected: int,
) -> str:
    ratio = mismatches / numel if numel else 0.0
    lines = [
        (
            f"Mismatched elements: {mismatches} / {numel} ({_percent(ratio)}), "
            f"allowed {allowed} (max_ratio {_fmt_setting(cmp.max_ratio)})"
        )
    ]
    if numel == 0:
        return lines[0]
    # torch.testing leaves out "(up to ... allowed)" when the test is equality.
    show_tolerance = cmp.mode == "allclose" and bool(cmp.atol or cmp.rtol)
    if max_abs is None or max_abs_index is None:
        lines.append("Greatest absolute difference: none (no element is finite on both sides)")
    else:
        line = f"Greatest absolute difference: {max_abs!r} at index {tuple(max_abs_index)}"
        if show_tolerance:
            line += f" (up to {_fmt_setting(cmp.atol or 0.0)} allowed)"
        lines.append(line)
    if max_rel is None or max_rel_index is None:
        lines.append(
            "Greatest relative difference: none (no element is finite on both sides "
            "with a nonzero expected value)"
        )
    else:
        line = f"Greatest relative difference: {max_rel!r} at index {tuple(max_rel_index)}"
        if show_tolerance:
            line += f" (up to {_fmt_setting(cmp.rtol or 0.0)} allowed)"
        lines.append(line)
    if cmp.mode == "ulp":
        if max_ulp is None or max_ulp_index is None:
            lines.append("Greatest ULP difference: none (no element is finite on both sides)")
        else:
            lines.append(
                f"Greatest ULP difference: {max_ulp!r} at index {tuple(max_ulp_index)} "
                f"(up to {_fmt_setting(cmp.ulp or 0.0)} allowed)"
            )
    if nonfinite_mismatches:
        lines.append(
            f"Non-finite mismatches: {nonfinite_mismatches} ({nonfinite_actual} non-finite "
            f"only in actual, {nonfinite_expected} only in expected)"
        )
    return "\n".join(lines)


def _check_operand(name: str, tensor: object) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_complex():
        raise TypeError(f"{name} is complex ({tensor.dtype}); compare torch.view_as_real() of both outputs")
    return tensor


def compare(
    actual: torch.Tensor,
    expected: torch.Tensor,
    comparator: Comparator,
    *,
    worst: int = 5,
) -> Metrics:
    """Compare a kernel output with its reference, element by element.

    Floating references are rounded to a floating output dtype first when the comparator's
    round_expected is set. Integer and bool outputs are compared exactly. A NaN or Inf never
    passes silently: NaN against NaN and an infinity against the same-signed infinity match,
    every other non-finite value on either side is a mismatch.

    Args:
        actual: the kernel's output; its dtype is the output dtype.
        expected: the oracle's output, any real dtype, same shape.
        comparator: the settings; resolved against actual's dtype.
        worst: how many of the worst bad elements to keep in worst_points.

    Returns:
        The metrics, verdict and message.

    Raises:
        ShapeMismatch: when the shapes differ.
        TypeError: when an operand is not a tensor, is complex, or comparator is not a Comparator.
        ValueError: when worst is negative.
    """
    _check_operand("actual", actual)
    _check_operand("expected", expected)
    if not isinstance(comparator, Comparator):
        raise TypeError(f"comparator must be a Comparator, got {type(comparator).__name__}")
    if worst < 0:
        raise ValueError(f"worst must be >= 0, got {worst}")
    if actual.shape != expected.shape:
        raise ShapeMismatch(f"shapes differ: actual {tuple(actual.shape)}, expected {tuple(expected.shape)}")

    actual = actual.detach().cpu()
    expected = expected.detach().cpu()
    out_dtype = actual.dtype
    floating_output = out_dtype.is_floating_point
    cmp = comparator.resolved(out_dtype)
    shape = tuple(actual.shape)
    numel = actual.numel()
    if (
        cmp.round_expected
        and floating_output
        and expected.is_floating_point()
        and expected.dtype != out_dtype
    ):
        # What a correctly rounded kernel would return: without this, a bf16 output can never
        # equal an unrounded float64 reference in exact mode.
        expected = expected.to(out_dtype)
    actual_flat = actual.reshape(-1)
    expected_flat = expected.reshape(-1)
    a = actual_flat.to(torch.float64)
    e = expected_flat.to(torch.float64)
    diff = (a - e).abs_()
    # The norm is needed for rel-L2 anyway, and it is finite exactly when every difference is
    # (barring float64 overflow, which the careful path below also handles), so one reduction
    # tells whether the NaN/Inf bookkeeping is needed at all.
    norm_d = float(torch.linalg.vector_norm(diff))

    finite_pair: torch.Tensor | None = None
    nonfinite_mismatch: torch.Tensor | None = None
    nonfinite_actual = nonfinite_expected = nonfinite_mismatches = 0
    n_finite = numel
    a_f, e_f, diff_f = a, e, diff
    if not math.isfinite(norm_d):
        finite_a = torch.isfinite(a)
        finite_e = torch.isfinite(e)
        finite_pair = finite_a & finite_e
        # a == e holds for same-signed infinities; NaN needs its own test.
        matched = (a == e) | (torch.isnan(a) & torch.isnan(e))
        nonfinite_mismatch = ~(finite_pair | matched)
        nonfinite_mismatches = int(nonfinite_mismatch.sum())
        n_finite = int(finite_pair.sum())
        nonfinite_actual = int(finite_e.sum()) - n_finite
        nonfinite_expected = int(finite_a.sum()) - n_finite
        # Zeros stand in for non-finite pairs, so sums, norms and maxima run over the finite
        # pairs only and a zero difference there is never judged bad. Multiplying by a float
        # mask is several times faster than masked_fill on large tensors.
        keep = finite_pair.to(torch.float64)
        a_f = a.nan_to_num(0.0, 0.0, 0.0).mul_(keep)
        e_f = e.nan_to_num(0.0, 0.0, 0.0).mul_(keep)
        diff_f = (a_f - e_f).abs_()
        norm_d = float(torch.linalg.vector_norm(diff_f))

    # Full-size temporaries are few and reused in place below: on large outputs, fresh
    # allocations (page faults) cost more than the arithmetic.
    e_abs = e_f.abs()
    ulp_size = _ulp_size(e_abs, out_dtype) if floating_output else None
    allowed: torch.Tensor | float
    if cmp.mode == "ulp" and ulp_size is not None:
        allowed = ulp_size * (_DEFAULT_ULP if cmp.ulp is None else cmp.ulp)
    elif cmp.rtol:
        allowed = e_abs.mul(cmp.rtol).add_(cmp.atol or 0.0)
    else:
        allowed = cmp.atol or 0.0

    if not floating_output and not expected.is_floating_point():
        # float64 cannot tell large int64 values apart; compare the integers themselves.
        bad_finite = actual_flat.ne(expected_flat)
    else:
        bad_finite = diff_f > allowed
    n_bad_finite = int(bad_finite.sum())
    mismatches = n_bad_finite + nonfinite_mismatches

    # For finite doubles x > y exactly when x - y > 0 (subnormals keep the difference of
    # unequal values nonzero), so the bad elements are those with positive excess and topk
    # finds the worst of them without masking.
    if not floating_output and not expected.is_floating_point():
        # Rank bad integers above equal ones even where their float64 difference reads 0.
        excess = diff_f.masked_fill(~bad_finite, -1.0)
    elif isinstance(allowed, torch.Tensor):
        excess = allowed.sub_(diff_f).neg_()
    else:
        excess = diff_f - allowed if allowed else diff_f  # never written in place

    max_abs: float | None = None
    max_rel: float | None = None
    max_ulp: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    max_abs_index: list[int] | None = None
    max_rel_index: list[int] | None = None
    max_ulp_index: list[int] | None = None
    if n_finite:
        # -1 marks the zeroed non-finite pairs, so a finite pair wins even when all diffs are 0.
        source = diff_f if finite_pair is None else diff_f - (~finite_pair).to(torch.float64)
        value, index = source.max(0)
        max_abs, max_abs_index = float(value), _unravel(int(index), shape)

        if ulp_size is not None:
            distance = torch.div(diff_f, ulp_size, out=ulp_size)
            if cmp.mode == "ulp":  # only ulp mode's message names the index
                value, index = distance.max(0)
                max_ulp_index = _unravel(int(index), shape)
            else:
                value = distance.amax()
            max_ulp = float(value)

        norm_e = float(torch.linalg.vector_norm(e_f))
        norm_a = float(torch.linalg.vector_norm(a_f))
        zero_e = e_abs == 0  # also covers the zeroed non-finite pairs
        rel = torch.div(diff_f, e_abs, out=e_abs)
        rel.masked_fill_(zero_e, -1.0)
        value, index = rel.max(0)
        if value >= 0:
            max_rel, max_rel_index = float(value), _unravel(int(index), shape)

        if norm_e > 0:
            rel_l2 = norm_d / norm_e
        if norm_e > 0 and norm_a > 0:
            # a.e = (|a|^2 + |e|^2 - |a - e|^2) / 2 from the norms already at hand: no
            # full-size product and no BLAS dot (which can stall for milliseconds when its
            # threads compete for cores). The cosine's absolute error stays near 1e-16 *
            # (|a|/|e| + |e|/|a|), far below anything a comparison needs.
            dot = (norm_a * norm_a + norm_e * norm_e - norm_d * norm_d) / 2
            cosine = max(-1.0, min(1.0, dot / norm_a / norm_e))
        # inf - inf after a float64 overflow says nothing; report the metric as undefined.
        rel_l2 = None if rel_l2 is not None and math.isnan(rel_l2) else rel_l2
        cosine = None if cosine is not None and math.isnan(cosine) else cosine

    # Worst points: non-finite mismatches first (in index order, which keeps the choice
    # deterministic), then the finite bad elements by how far they exceed their bound.
    order: list[int] = []
    if nonfinite_mismatch is not None and nonfinite_mismatches:
        order = nonfinite_mismatch.nonzero().flatten()[: max(worst, 1)].tolist()
    room = min(max(worst, 1) - len(order), n_bad_finite)
    if room > 0:
        order += excess.topk(room).indices.tolist()
    if order:
        worst_flat: int | None = order[0]
        order = order[:worst]
    elif n_finite:
        # Nothing is bad: point at the element nearest its bound.
        if finite_pair is not None:
            excess = excess.masked_fill(~finite_pair, -math.inf)
        worst_flat = int(excess.max(0).indices)
    else:
        worst_flat = None

    worst_points = []
    if order:
        picked = torch.tensor(order)
        actual_values = (actual_flat if not floating_output else a)[picked].tolist()
        expected_values = (e if expected.is_floating_point() else expected_flat)[picked].tolist()
        diffs = diff[picked].tolist()
        for flat, av, ev, dv in zip(order, actual_values, expected_values, diffs, strict=True):
            if not math.isfinite(ev):
                bound = 0.0  # a non-finite reference admits only the identical value
            elif cmp.mode == "ulp" and floating_output:
                bound = (cmp.ulp or 0.0) * _ulp_size_scalar(ev, out_dtype)
            else:
                bound = (cmp.atol or 0.0) + (cmp.rtol or 0.0) * abs(ev)
            worst_points.append(
                {
                    "index": _unravel(flat, shape),
                    "actual": av,
                    "expected": ev,
                    "diff": float(dv),
                    "allowed": bound,
                }
            )

    allowed_count = _allowed_mismatches(cmp.max_ratio, numel)
    return Metrics(
        mismatches=mismatches,
        numel=numel,
        mismatch_ratio=mismatches / numel if numel else 0.0,
        passed=mismatches <= allowed_count,
        max_abs=max_abs,
        max_abs_index=max_abs_index,
        max_rel=max_rel,
        max_rel_index=max_rel_index,
        worst_index=None if worst_flat is None else _unravel(worst_flat, shape),
        rel_l2=rel_l2,
        cosine=cosine,
        nonfinite_actual=nonfinite_actual,
        nonfinite_expected=nonfinite_expected,
        nonfinite_mismatches=nonfinite_mismatches,
        max_ulp=max_ulp,
        comparator=cmp.to_dict(),
        worst_points=worst_points,
        message=_message(
            cmp,
            mismatches=mismatches,
            numel=numel,
            allowed=allowed_count,
            max_abs=max_abs,
            max_abs_index=max_abs_index,
            max_rel=max_rel,
            max_rel_index=max_rel_index,
            max_ulp=max_ulp,
            max_ulp_index=max_ulp_index,
            nonfinite_mismatches=nonfinite_mismatches,
            nonfinite_actual=nonfinite_actual,
            nonfinite_expected=nonfinite_expected,
        ),
    )
