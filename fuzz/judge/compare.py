"""Element-wise comparison of a kernel's output against its golden reference.

`compare` works in the stages torch.testing uses: shapes must match, both tensors move to
the CPU, the reference is (optionally) rounded to the output dtype, both are promoted to
float64, and only then is each element tested. It returns `Metrics`: the mismatch count and
the verdict, plus the numbers a stored finding needs (greatest absolute and relative
difference with their indices, rel-L2, cosine, ULP distance, the worst points) and a
torch.testing-style message. A `Comparator` (`kfuzz.judge.comparator`, re-exported here) holds the
settings; `TOLERANCES` holds the per-dtype defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from kfuzz.judge.comparator import DEFAULT_ULP, MODES, Comparator, ComparatorError, format_setting

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

# Sign and mantissa bits cleared, exponent kept: turns a positive normal float64 x into
# 2**floor(log2(x)) exactly, with no rounding that log2() could introduce near powers of two.
_F64_EXPONENT_MASK = 0x7FF0000000000000


def tolerance(dtype: torch.dtype) -> Tolerance:
    """The default allclose bounds for a floating `dtype`: its TOLERANCES row, float64's for a
    dtype missing from the table."""
    return TOLERANCES.get(dtype, TOLERANCES[torch.float64])


# -- metrics ------------------------------------------------------------------------------------

_FLOAT_FIELDS = (
    "mismatch_ratio", "worst_over_allowed", "max_abs", "max_rel", "rel_l2", "cosine", "max_ulp",
)
_INDEX_FIELDS = ("max_abs_index", "max_rel_index", "worst_index")
_INT_FIELDS = (
    "mismatches",
    "numel",
    "nonfinite_actual",
    "nonfinite_expected",
    "nonfinite_mismatches",
)
# What a verdict needs, and all that a summary record (`compare(..., full=False)` on a passing
# output) holds.
SUMMARY_KEYS = (
    "mismatches", "numel", "mismatch_ratio", "passed", "worst_over_allowed", "nonfinite_actual",
    "nonfinite_expected", "nonfinite_mismatches", "comparator", "message",
)
# A full record: the summary plus the statistics and worst points a stored finding shows.
FULL_KEYS = SUMMARY_KEYS + (
    "max_abs", "max_abs_index", "max_rel", "max_rel_index", "worst_index", "rel_l2", "cosine",
    "max_ulp", "worst_points",
)
# Keys added after corpora were first written: a stored record may lack them.
_ADDED_KEYS = ("worst_over_allowed",)
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


def _encode_field(name: str, value: Any) -> Any:
    """One Metrics field as strictly JSON-safe data."""
    if name in _FLOAT_FIELDS:
        return _encode_metric(value)
    if name in _INT_FIELDS:
        return int(value)
    if name in _INDEX_FIELDS:
        return None if value is None else [int(i) for i in value]
    if name in ("passed", "complete"):
        return bool(value)
    if name == "comparator":
        return dict(value)
    if name == "worst_points":
        return [
            {
                "index": [int(i) for i in point["index"]],
                **{key: _encode_point_value(point[key]) for key in _POINT_VALUES},
            }
            for point in value
        ]
    return value


@dataclass
class Metrics(Mapping[str, Any]):
    """The outcome of one comparison.

    Attributes:
        mismatches, numel, mismatch_ratio: bad elements, all elements, and their ratio.
        passed: mismatch_ratio <= the comparator's max_ratio.
        worst_over_allowed: the greatest |a - e| / allowed over the elements: the closest call.
            allowed is atol + rtol * |e| (allclose) or `ulp` spacings of the output dtype at |e|
            (ulp mode). Above 1 exactly when some element is outside its bound. In exact mode
            nothing is allowed and the value is the greatest ULP distance in the output dtype
            (0 when every element is equal; any value above 0 is outside). A non-finite
            mismatch counts as inf. None only in a record stored before this metric existed.
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
        complete: False for a summary (`compare(..., full=False)` on a passing output): the
            fields from max_abs on were not computed and are None (worst_points empty).

    Undefined numbers (no finite pair, zero norm) are None. Indices are lists of ints.

    A Metrics object is also a read-only mapping of its serialised form: `m["mismatch_ratio"]`,
    `m.get("max_abs")`, `dict(m)` give what `to_dict()` holds, so code written against the
    stored dicts reads live metrics unchanged. A summary has only SUMMARY_KEYS and "complete".
    """

    mismatches: int
    numel: int
    mismatch_ratio: float
    passed: bool
    worst_over_allowed: float | None
    nonfinite_actual: int
    nonfinite_expected: int
    nonfinite_mismatches: int
    comparator: dict[str, Any]
    message: str
    max_abs: float | None = None
    max_abs_index: list[int] | None = None
    max_rel: float | None = None
    max_rel_index: list[int] | None = None
    worst_index: list[int] | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    max_ulp: float | None = None
    worst_points: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True

    def _keys(self) -> tuple[str, ...]:
        return FULL_KEYS if self.complete else SUMMARY_KEYS + ("complete",)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return _encode_field(key, getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as strictly JSON-safe data.

        Returns:
            A dict that `json.dumps(..., allow_nan=False)` accepts: undefined numbers are None,
            infinite metrics and non-finite point values are the strings "nan", "inf", "-inf".
            A full record has FULL_KEYS; a summary has SUMMARY_KEYS and "complete": False.
        """
        return {key: _encode_field(key, getattr(self, key)) for key in self._keys()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        """Rebuild metrics from `to_dict()` output (for example a stored finding).

        Args:
            d: a mapping with the keys `to_dict()` writes; a record stored before
                worst_over_allowed existed may lack it (it reads as None).

        Returns:
            The metrics, with "nan"/"inf"/"-inf" strings turned back into floats.

        Raises:
            ValueError: on a missing or unknown key, or a string that is not a non-finite name.
            ComparatorError: when the stored comparator is not valid.
        """
        complete = d.get("complete", True)
        if not isinstance(complete, bool):
            raise ValueError(f"metrics key 'complete' must be true or false, got {complete!r}")
        known = FULL_KEYS if complete else SUMMARY_KEYS
        missing = [name for name in known if name not in d and name not in _ADDED_KEYS]
        if missing:
            raise ValueError(f"metrics record lacks key {missing[0]!r}")
        unknown = [key for key in d if key not in known and key != "complete"]
        if unknown:
            raise ValueError(f"unknown metrics key {unknown[0]!r}; known keys: {', '.join(known)}")
        values: dict[str, Any] = {name: d.get(name) for name in known}
        for name in _FLOAT_FIELDS:
            if name in values:
                value = _decode_number(values[name])
                values[name] = None if value is None else float(value)
        for name in _INDEX_FIELDS:
            if name in values:
                values[name] = None if values[name] is None else [int(i) for i in values[name]]
        values["comparator"] = Comparator.from_dict(values["comparator"]).to_dict()
        if "worst_points" in values:
            values["worst_points"] = [
                {
                    "index": [int(i) for i in point["index"]],
                    **{key: _decode_number(point[key]) for key in _POINT_VALUES},
                }
                for point in values["worst_points"]
            ]
        return cls(**values, complete=complete)


# -- helpers ------------------------------------------------------------------------------------


def _ulp_size(magnitude: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of `dtype` at each float64 magnitude; the subnormal step below the normals.
    Always a power of two, so multiplying or dividing by it is exact."""
    info = torch.finfo(dtype)
    spacing = magnitude.clamp_min(info.tiny)
    spacing.view(torch.int64).bitwise_and_(_F64_EXPONENT_MASK)
    return spacing.mul_(info.eps)


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


def _check_operand(name: str, tensor: object) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_complex():
        raise TypeError(f"{name} is complex ({tensor.dtype}); compare torch.view_as_real() of both outputs")
    return tensor


# -- stage 1: prepare ---------------------------------------------------------------------------


@dataclass
class _Operands:
    """Both outputs flat on the CPU, the reference rounded to the output dtype when the
    comparator says so, and both promoted to float64."""

    cmp: Comparator  # resolved for the output dtype
    shape: tuple[int, ...]
    dtype: torch.dtype  # the output dtype
    integral: bool  # no floating side: the integers themselves are compared
    actual: torch.Tensor  # flat, output dtype
    expected: torch.Tensor  # flat, after rounding
    a: torch.Tensor  # float64
    e: torch.Tensor  # float64
    diff: torch.Tensor  # |a - e|, NaN where either side is NaN

    @property
    def numel(self) -> int:
        return self.a.numel()


def _prepare(actual: torch.Tensor, expected: torch.Tensor, comparator: Comparator) -> _Operands:
    _check_operand("actual", actual)
    _check_operand("expected", expected)
    if not isinstance(comparator, Comparator):
        raise TypeError(f"comparator must be a Comparator, got {type(comparator).__name__}")
    if actual.shape != expected.shape:
        raise ShapeMismatch(f"shapes differ: actual {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    actual = actual.detach().cpu()
    expected = expected.detach().cpu()
    dtype = actual.dtype
    cmp = comparator.resolved(dtype)
    if cmp.round_expected and dtype.is_floating_point and expected.is_floating_point() and (
        expected.dtype != dtype
    ):
        # What a correctly rounded kernel would return: without this, a bf16 output can never
        # equal an unrounded float64 reference in exact mode.
        expected = expected.to(dtype)
    actual_flat = actual.reshape(-1)
    expected_flat = expected.reshape(-1)
    a = actual_flat.to(torch.float64)
    e = expected_flat.to(torch.float64)
    return _Operands(
        cmp=cmp, shape=tuple(actual.shape), dtype=dtype,
        integral=not dtype.is_floating_point and not expected.is_floating_point(),
        actual=actual_flat, expected=expected_flat, a=a, e=e, diff=(a - e).abs_(),
    )


# -- stage 2: the non-finite split --------------------------------------------------------------


@dataclass
class _Pairs:
    """The float64 operands with zeros standing in for the pairs that are not finite on both
    sides (so sums, norms and maxima run over finite pairs, and a zero difference there is
    never judged bad), and the counts of those pairs."""

    a: torch.Tensor
    e: torch.Tensor
    diff: torch.Tensor
    finite: torch.Tensor | None  # None: every pair is finite
    nonfinite_mismatch: torch.Tensor | None
    n_finite: int
    nonfinite_actual: int = 0
    nonfinite_expected: int = 0
    nonfinite_mismatches: int = 0
    norm_diff: float | None = None  # ||diff||_2 when already computed


def _split_nonfinite(ops: _Operands) -> _Pairs:
    # The norm of the differences (needed for rel-L2 anyway) is finite exactly when every
    # difference is (barring float64 overflow, which the careful path below also handles), so
    # one reduction tells whether the NaN/Inf bookkeeping is needed at all.
    norm = float(torch.linalg.vector_norm(ops.diff))
    if math.isfinite(norm):
        return _Pairs(ops.a, ops.e, ops.diff, None, None, ops.numel, norm_diff=norm)
    finite_a = torch.isfinite(ops.a)
    finite_e = torch.isfinite(ops.e)
    finite = finite_a & finite_e
    # a == e holds for same-signed infinities; NaN needs its own test.
    matched = (ops.a == ops.e) | (torch.isnan(ops.a) & torch.isnan(ops.e))
    nonfinite_mismatch = ~(finite | matched)
    n_finite = int(finite.sum())
    # Multiplying by a float mask is several times faster than masked_fill on large tensors.
    keep = finite.to(torch.float64)
    a = ops.a.nan_to_num(0.0, 0.0, 0.0).mul_(keep)
    e = ops.e.nan_to_num(0.0, 0.0, 0.0).mul_(keep)
    return _Pairs(
        a, e, (a - e).abs_(), finite, nonfinite_mismatch, n_finite,
        nonfinite_actual=int(finite_e.sum()) - n_finite,
        nonfinite_expected=int(finite_a.sum()) - n_finite,
        nonfinite_mismatches=int(nonfinite_mismatch.sum()),
    )


# -- stage 3: the bound and the verdict ---------------------------------------------------------


def _bound(
    magnitude: torch.Tensor, cmp: Comparator, dtype: torch.dtype, spacing: torch.Tensor | None = None
) -> torch.Tensor | float:
    """The |a - e| allowed where the reference's magnitude is `magnitude` (float64, finite):
    atol + rtol * |e|, or `ulp` spacings of `dtype` at |e| in ulp mode (`spacing`, when given,
    is `_ulp_size(magnitude, dtype)` already computed). A float when the bound is the same for
    every element (exact mode, or rtol = 0). Used for the mask and for the worst points alike."""
    if cmp.mode == "ulp" and dtype.is_floating_point:
        steps = DEFAULT_ULP if cmp.ulp is None else cmp.ulp
        return (_ulp_size(magnitude, dtype) if spacing is None else spacing).mul(steps)
    if cmp.rtol:
        return magnitude.mul(cmp.rtol).add_(cmp.atol or 0.0)
    return cmp.atol or 0.0


class _Work:
    """The operands of one comparison and what later stages share, computed once on demand.

    Later stages reuse some of these buffers in place; each one is last read before that.
    """

    def __init__(self, ops: _Operands, pairs: _Pairs) -> None:
        self.ops = ops
        self.pairs = pairs
        self._e_abs: torch.Tensor | None = None
        self._spacing: torch.Tensor | None = None
        self._max_ulp: tuple[float, int] | None = None

    @property
    def e_abs(self) -> torch.Tensor:
        if self._e_abs is None:
            self._e_abs = self.pairs.e.abs()
        return self._e_abs

    @property
    def spacing(self) -> torch.Tensor:
        """The output dtype's spacing at each |e| (floating outputs only)."""
        if self._spacing is None:
            self._spacing = _ulp_size(self.e_abs, self.ops.dtype)
        return self._spacing

    def max_ulp(self) -> tuple[float, int]:
        """The greatest ULP distance over the finite pairs, and its flat index. Consumes the
        spacing buffer: call it after the bound is made."""
        if self._max_ulp is None:
            spacing = self.spacing
            value, index = torch.div(self.pairs.diff, spacing, out=spacing).max(0)
            self._max_ulp = (float(value), int(index))
        return self._max_ulp


@dataclass
class _Verdict:
    allowed: torch.Tensor | float  # from `_bound`; a tensor over the flat elements
    bad: torch.Tensor  # finite pairs outside their bound (bool, flat)
    n_bad_finite: int
    mismatches: int
    allowed_count: int  # mismatches the max_ratio allows
    worst_over_allowed: float


def _judge(w: _Work) -> _Verdict:
    ops, pairs, cmp = w.ops, w.pairs, w.ops.cmp
    floating = ops.dtype.is_floating_point
    allowed = _bound(w.e_abs if cmp.rtol or cmp.mode == "ulp" else pairs.e, cmp, ops.dtype,
                     w.spacing if cmp.mode == "ulp" and floating else None)
    if ops.integral:
        # float64 cannot tell large int64 values apart; compare the integers themselves.
        bad = ops.actual.ne(ops.expected)
    else:
        bad = pairs.diff > allowed
    n_bad_finite = int(bad.sum())
    mismatches = n_bad_finite + pairs.nonfinite_mismatches
    allowed_count = _allowed_mismatches(cmp.max_ratio, ops.numel)
    return _Verdict(allowed, bad, n_bad_finite, mismatches, allowed_count,
                    _worst_over_allowed(w, allowed, n_bad_finite))


def _worst_over_allowed(w: _Work, allowed: torch.Tensor | float, n_bad_finite: int) -> float:
    """See `Metrics.worst_over_allowed`."""
    ops, pairs, cmp = w.ops, w.pairs, w.ops.cmp
    if pairs.nonfinite_mismatches:
        return math.inf
    if not pairs.n_finite:
        return 0.0
    if cmp.mode == "exact":
        if not n_bad_finite:
            return 0.0
        if ops.integral:
            # One integer step is one ULP; two int64s a float64 cannot tell apart are one apart.
            return max(float(pairs.diff.max()), 1.0)
        if not ops.dtype.is_floating_point:
            return float(pairs.diff.max())
        return w.max_ulp()[0]
    if cmp.mode == "ulp":
        steps = DEFAULT_ULP if cmp.ulp is None else cmp.ulp
        distance = w.max_ulp()[0]
        # Spacings are powers of two: distance / steps > 1 exactly when an element is bad.
        return distance / steps if steps else (math.inf if distance else 0.0)
    if isinstance(allowed, torch.Tensor):
        ratio = torch.div(pairs.diff, allowed)
        if not cmp.atol:  # 0 / 0 where the reference is 0: nothing allowed, nothing off
            ratio.nan_to_num_(0.0, math.inf)
        worst = float(ratio.max())
    else:
        largest = float(pairs.diff.max())
        worst = largest / allowed if allowed else (math.inf if largest else 0.0)
    if n_bad_finite and worst <= 1.0:
        # d / bound can round to 1.0 when d exceeds the bound by the last bit.
        worst = math.nextafter(1.0, math.inf)
    return worst


# -- stage 4: statistics ------------------------------------------------------------------------


@dataclass
class _Statistics:
    max_abs: float | None = None
    max_abs_index: list[int] | None = None
    max_rel: float | None = None
    max_rel_index: list[int] | None = None
    max_ulp: float | None = None
    max_ulp_index: list[int] | None = None
    rel_l2: float | None = None
    cosine: float | None = None


def _statistics(w: _Work) -> _Statistics:
    ops, pairs = w.ops, w.pairs
    stats = _Statistics()
    if not pairs.n_finite:
        return stats
    shape = ops.shape
    diff = pairs.diff
    # -1 marks the zeroed non-finite pairs, so a finite pair wins even when all diffs are 0.
    source = diff if pairs.finite is None else diff - (~pairs.finite).to(torch.float64)
    value, index = source.max(0)
    stats.max_abs, stats.max_abs_index = float(value), _unravel(int(index), shape)
    if ops.dtype.is_floating_point:
        stats.max_ulp, flat = w.max_ulp()
        stats.max_ulp_index = _unravel(flat, shape)

    norm_d = pairs.norm_diff
    if norm_d is None:
        norm_d = float(torch.linalg.vector_norm(diff))
    norm_e = float(torch.linalg.vector_norm(pairs.e))
    norm_a = float(torch.linalg.vector_norm(pairs.a))
    e_abs = w.e_abs
    zero_e = e_abs == 0  # also covers the zeroed non-finite pairs
    rel = torch.div(diff, e_abs, out=e_abs)  # e_abs is not read again
    rel.masked_fill_(zero_e, -1.0)
    value, index = rel.max(0)
    if value >= 0:
        stats.max_rel, stats.max_rel_index = float(value), _unravel(int(index), shape)

    if norm_e > 0:
        stats.rel_l2 = norm_d / norm_e
    if norm_e > 0 and norm_a > 0:
        # a.e = (|a|^2 + |e|^2 - |a - e|^2) / 2 from the norms already at hand: no
        # full-size product and no BLAS dot (which can stall for milliseconds when its
        # threads compete for cores). The cosine's absolute error stays near 1e-16 *
        # (|a|/|e| + |e|/|a|), far below anything a comparison needs.
        dot = (norm_a * norm_a + norm_e * norm_e - norm_d * norm_d) / 2
        stats.cosine = max(-1.0, min(1.0, dot / norm_a / norm_e))
    # inf - inf after a float64 overflow says nothing; report the metric as undefined.
    if stats.rel_l2 is not None and math.isnan(stats.rel_l2):
        stats.rel_l2 = None
    if stats.cosine is not None and math.isnan(stats.cosine):
        stats.cosine = None
    return stats


# -- stage 5: worst points ----------------------------------------------------------------------


def _worst_points(w: _Work, verdict: _Verdict, worst: int) -> tuple[list[int] | None, list[dict[str, Any]]]:
    """The worst element's index and up to `worst` bad points: non-finite mismatches first
    (in index order, which keeps the choice deterministic), then the finite bad elements by
    how far they exceed their bound. With nothing bad, the index of the element nearest its
    bound and no points."""
    ops, pairs = w.ops, w.pairs
    diff = pairs.diff
    # For finite doubles x > y exactly when x - y > 0 (subnormals keep the difference of
    # unequal values nonzero), so the bad elements are those with positive excess and topk
    # finds the worst of them without masking.
    if ops.integral:
        # Rank bad integers above equal ones even where their float64 difference reads 0.
        excess = diff.masked_fill(~verdict.bad, -1.0)
    elif isinstance(verdict.allowed, torch.Tensor):
        excess = verdict.allowed.sub_(diff).neg_()  # the bound is not read again
    else:
        excess = diff - verdict.allowed if verdict.allowed else diff  # never written in place

    order: list[int] = []
    if pairs.nonfinite_mismatch is not None and pairs.nonfinite_mismatches:
        order = pairs.nonfinite_mismatch.nonzero().flatten()[: max(worst, 1)].tolist()
    room = min(max(worst, 1) - len(order), verdict.n_bad_finite)
    if room > 0:
        order += excess.topk(room).indices.tolist()
    if order:
        worst_flat: int | None = order[0]
        order = order[:worst]
    elif pairs.n_finite:
        if pairs.finite is not None:
            excess = excess.masked_fill(~pairs.finite, -math.inf)
        worst_flat = int(excess.max(0).indices)
    else:
        worst_flat = None

    points: list[dict[str, Any]] = []
    if order:
        picked = torch.tensor(order)
        e_picked = ops.e[picked]
        finite_e = torch.isfinite(e_picked)
        bound = _bound(e_picked.abs().nan_to_num_(0.0, 0.0), ops.cmp, ops.dtype)
        # A non-finite reference admits only the identical value.
        bounds = (torch.where(finite_e, bound, 0.0) if isinstance(bound, torch.Tensor)
                  else finite_e.to(torch.float64) * bound).tolist()
        actual_values = (ops.a if ops.dtype.is_floating_point else ops.actual)[picked].tolist()
        expected_values = (e_picked if ops.expected.is_floating_point()
                           else ops.expected[picked]).tolist()
        diffs = ops.diff[picked].tolist()
        for flat, av, ev, dv, bv in zip(order, actual_values, expected_values, diffs, bounds,
                                        strict=True):
            points.append({"index": _unravel(flat, ops.shape), "actual": av, "expected": ev,
                           "diff": float(dv), "allowed": float(bv)})
    return None if worst_flat is None else _unravel(worst_flat, ops.shape), points


# -- stage 6: the message -----------------------------------------------------------------------


def _message(cmp: Comparator, m: Metrics, allowed: int, max_ulp_index: list[int] | None) -> str:
    """A torch.testing-style report of `m`; a summary gets the counts only."""
    lines = [
        f"Mismatched elements: {m.mismatches} / {m.numel} ({_percent(m.mismatch_ratio)}), "
        f"allowed {allowed} (max_ratio {format_setting(cmp.max_ratio)})"
    ]
    if m.numel == 0:
        return lines[0]
    if m.complete:
        # torch.testing leaves out "(up to ... allowed)" when the test is equality.
        show_tolerance = cmp.mode == "allclose" and bool(cmp.atol or cmp.rtol)
        if m.max_abs is None or m.max_abs_index is None:
            lines.append("Greatest absolute difference: none (no element is finite on both sides)")
        else:
            line = f"Greatest absolute difference: {m.max_abs!r} at index {tuple(m.max_abs_index)}"
            if show_tolerance:
                line += f" (up to {format_setting(cmp.atol or 0.0)} allowed)"
            lines.append(line)
        if m.max_rel is None or m.max_rel_index is None:
            lines.append(
                "Greatest relative difference: none (no element is finite on both sides "
                "with a nonzero expected value)"
            )
        else:
            line = f"Greatest relative difference: {m.max_rel!r} at index {tuple(m.max_rel_index)}"
            if show_tolerance:
                line += f" (up to {format_setting(cmp.rtol or 0.0)} allowed)"
            lines.append(line)
        if cmp.mode == "ulp":
            if m.max_ulp is None or max_ulp_index is None:
                lines.append("Greatest ULP difference: none (no element is finite on both sides)")
            else:
                lines.append(
                    f"Greatest ULP difference: {m.max_ulp!r} at index {tuple(max_ulp_index)} "
                    f"(up to {format_setting(cmp.ulp or 0.0)} allowed)"
                )
    if m.nonfinite_mismatches:
        lines.append(
            f"Non-finite mismatches: {m.nonfinite_mismatches} ({m.nonfinite_actual} non-finite "
            f"only in actual, {m.nonfinite_expected} only in expected)"
        )
    return "\n".join(lines)


# -- compare ------------------------------------------------------------------------------------


def compare(
    actual: torch.Tensor,
    expected: torch.Tensor,
    comparator: Comparator,
    *,
    worst: int = 5,
    full: bool = True,
) -> Metrics:
    """Compare a kernel output with its reference, element by element.

    Floating references are rounded to a floating output dtype first when the comparator's
    round_expected is set. Integer and bool outputs are compared exactly. A NaN or Inf never
    passes silently: NaN against NaN and an infinity against the same-signed infinity match,
    every other non-finite value on either side is a mismatch.

    Stages, as in torch.testing: prepare (checks, rounding, float64), the non-finite split,
    the bound and verdict (one `_bound` for the mask and the worst points), statistics,
    worst points, message.

    Args:
        actual: the kernel's output; its dtype is the output dtype.
        expected: the oracle's output, any real dtype, same shape.
        comparator: the settings; resolved against actual's dtype.
        worst: how many of the worst bad elements to keep in worst_points.
        full: False computes only what the verdict needs (mismatches, passed,
            worst_over_allowed, mismatch_ratio, the non-finite counts) and returns a summary
            (complete=False) when the output passes; a failing output always gets everything.

    Returns:
        The metrics, verdict and message.

    Raises:
        ShapeMismatch: when the shapes differ.
        TypeError: when an operand is not a tensor, is complex, or comparator is not a Comparator.
        ValueError: when worst is negative.
    """
    if worst < 0:
        raise ValueError(f"worst must be >= 0, got {worst}")
    ops = _prepare(actual, expected, comparator)
    pairs = _split_nonfinite(ops)
    work = _Work(ops, pairs)
    verdict = _judge(work)
    numel = ops.numel
    metrics = Metrics(
        mismatches=verdict.mismatches,
        numel=numel,
        mismatch_ratio=verdict.mismatches / numel if numel else 0.0,
        passed=verdict.mismatches <= verdict.allowed_count,
        worst_over_allowed=verdict.worst_over_allowed,
        nonfinite_actual=pairs.nonfinite_actual,
        nonfinite_expected=pairs.nonfinite_expected,
        nonfinite_mismatches=pairs.nonfinite_mismatches,
        comparator=ops.cmp.to_dict(),
        message="",
        complete=full or not (verdict.mismatches <= verdict.allowed_count),
    )
    stats = _Statistics()
    if metrics.complete:
        stats = _statistics(work)
        metrics.worst_index, metrics.worst_points = _worst_points(work, verdict, worst)
        for name in ("max_abs", "max_abs_index", "max_rel", "max_rel_index", "max_ulp",
                     "rel_l2", "cosine"):
            setattr(metrics, name, getattr(stats, name))
    metrics.message = _message(ops.cmp, metrics, verdict.allowed_count, stats.max_ulp_index)
    return metrics
