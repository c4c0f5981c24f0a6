"""The stages of a comparison, as torch.testing's: prepare (checks, the reference rounded to
the output dtype, both flat in float64 on the CPU), the non-finite split, the bound and the
verdict (one `bound` for the mask and the worst points), statistics and worst points.

`kfuzz.judge.compare.compare` runs them in order; a summary stops after the verdict. The
report's per-element errors start from the first stage (`prepare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from kfuzz.judge.comparator import DEFAULT_ULP, Comparator
from kfuzz.judge.tolerance import ulp_size


class ShapeMismatch(ValueError):
    """The actual and expected outputs have different shapes."""


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """The index in `shape` of the flat (row-major) position `flat`."""
    index = []
    for size in reversed(shape):
        flat, rest = divmod(flat, size)
        index.append(rest)
    return index[::-1]


def allowed_mismatches(max_ratio: float, numel: int) -> int:
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
class Operands:
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
        """The number of elements compared."""
        return self.a.numel()


def prepare(actual: torch.Tensor, expected: torch.Tensor, comparator: Comparator) -> Operands:
    """Stage 1: check the operands, round the reference to the output dtype when the comparator
    says so, and flatten both on the CPU in float64.

    Args:
        actual: the kernel's output; its dtype is the output dtype.
        expected: the oracle's output, any real dtype, same shape.
        comparator: the settings; resolved here against actual's dtype.

    Returns:
        The operands (`Operands`), with the resolved comparator.

    Raises:
        ShapeMismatch: when the shapes differ.
        TypeError: when an operand is not a tensor or is complex, or comparator is not a
            Comparator.
    """
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
    return Operands(
        cmp=cmp, shape=tuple(actual.shape), dtype=dtype,
        integral=not dtype.is_floating_point and not expected.is_floating_point(),
        actual=actual_flat, expected=expected_flat, a=a, e=e, diff=(a - e).abs_(),
    )


# -- stage 2: the non-finite split --------------------------------------------------------------


@dataclass
class Pairs:
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


def split_nonfinite(ops: Operands) -> Pairs:
    """Stage 2: set the pairs that are not finite on both sides apart.

    Args:
        ops: the prepared operands (not modified).

    Returns:
        The pairs (`Pairs`): zeros stand in for the non-finite ones, whose matches (NaN on
        both sides, the same infinity) and mismatches are counted.
    """
    # The norm of the differences (needed for rel-L2 anyway) is finite exactly when every
    # difference is (barring float64 overflow, which the careful path below also handles), so
    # one reduction tells whether the NaN/Inf bookkeeping is needed at all.
    norm = float(torch.linalg.vector_norm(ops.diff))
    if math.isfinite(norm):
        return Pairs(ops.a, ops.e, ops.diff, None, None, ops.numel, norm_diff=norm)
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
    return Pairs(
        a, e, (a - e).abs_(), finite, nonfinite_mismatch, n_finite,
        nonfinite_actual=int(finite_e.sum()) - n_finite,
        nonfinite_expected=int(finite_a.sum()) - n_finite,
        nonfinite_mismatches=int(nonfinite_mismatch.sum()),
    )


# -- stage 3: the bound and the verdict ---------------------------------------------------------


def bound(
    magnitude: torch.Tensor, cmp: Comparator, dtype: torch.dtype, spacing: torch.Tensor | None = None
) -> torch.Tensor | float:
    """The |a - e| allowed where the reference's magnitude is `magnitude` (float64, finite):
    atol + rtol * |e|, or `ulp` spacings of `dtype` at |e| in ulp mode (`spacing`, when given,
    is `ulp_size(magnitude, dtype)` already computed). A float when the bound is the same for
    every element (exact mode, or rtol = 0). Used for the mask and for the worst points alike."""
    if cmp.mode == "ulp" and dtype.is_floating_point:
        steps = DEFAULT_ULP if cmp.ulp is None else cmp.ulp
        return (ulp_size(magnitude, dtype) if spacing is None else spacing).mul(steps)
    if cmp.rtol:
        return magnitude.mul(cmp.rtol).add_(cmp.atol or 0.0)
    return cmp.atol or 0.0


class Work:
    """The operands of one comparison and what later stages share, computed once on demand.

    Later stages reuse some of these buffers in place; each one is last read before that.
    """

    def __init__(self, ops: Operands, pairs: Pairs) -> None:
        self.ops = ops
        self.pairs = pairs
        self._e_abs: torch.Tensor | None = None
        self._spacing: torch.Tensor | None = None
        self._max_ulp: tuple[float, int] | None = None

    @property
    def e_abs(self) -> torch.Tensor:
        """|e| over the pairs (zeros at the non-finite ones)."""
        if self._e_abs is None:
            self._e_abs = self.pairs.e.abs()
        return self._e_abs

    @property
    def spacing(self) -> torch.Tensor:
        """The output dtype's spacing at each |e| (floating outputs only)."""
        if self._spacing is None:
            self._spacing = ulp_size(self.e_abs, self.ops.dtype)
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
class Verdict:
    """What stage 3 decided: the bound, the bad elements and the counts."""

    allowed: torch.Tensor | float  # from `bound`; a tensor over the flat elements
    bad: torch.Tensor  # finite pairs outside their bound (bool, flat)
    n_bad_finite: int
    mismatches: int
    allowed_count: int  # mismatches the max_ratio allows
    worst_over_allowed: float


def decide(w: Work) -> Verdict:
    """Stage 3: the bound, the bad elements and the mismatches they make.

    Args:
        w: the comparison's operands and pairs.

    Returns:
        The verdict's numbers (`Verdict`), including the closest call (worst_over_allowed).
    """
    ops, pairs, cmp = w.ops, w.pairs, w.ops.cmp
    floating = ops.dtype.is_floating_point
    allowed = bound(w.e_abs if cmp.rtol or cmp.mode == "ulp" else pairs.e, cmp, ops.dtype,
                    w.spacing if cmp.mode == "ulp" and floating else None)
    if ops.integral:
        # float64 cannot tell large int64 values apart; compare the integers themselves.
        bad = ops.actual.ne(ops.expected)
    else:
        bad = pairs.diff > allowed
    n_bad_finite = int(bad.sum())
    mismatches = n_bad_finite + pairs.nonfinite_mismatches
    allowed_count = allowed_mismatches(cmp.max_ratio, ops.numel)
    return Verdict(allowed, bad, n_bad_finite, mismatches, allowed_count,
                   _worst_over_allowed(w, allowed, n_bad_finite))


def _worst_over_allowed(w: Work, allowed: torch.Tensor | float, n_bad_finite: int) -> float:
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
class Statistics:
    """What stage 4 measured (indices unravelled to the output's shape)."""

    max_abs: float | None = None
    max_abs_index: list[int] | None = None
    max_rel: float | None = None
    max_rel_index: list[int] | None = None
    max_ulp: float | None = None
    max_ulp_index: list[int] | None = None
    rel_l2: float | None = None
    cosine: float | None = None


def statistics(w: Work) -> Statistics:
    """Stage 4: the greatest absolute, relative and ULP differences, rel-L2 and cosine.

    Args:
        w: the comparison's operands and pairs; call after `decide` (buffers are reused).

    Returns:
        The statistics over the pairs finite on both sides; None where undefined.
    """
    ops, pairs = w.ops, w.pairs
    stats = Statistics()
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


def worst_points(w: Work, verdict: Verdict,
                 worst: int) -> tuple[list[int] | None, list[dict[str, Any]]]:
    """Stage 5: the worst element's index and up to `worst` bad points: non-finite mismatches
    first (in index order, which keeps the choice deterministic), then the finite bad elements
    by how far they exceed their bound. With nothing bad, the index of the element nearest its
    bound and no points. Consumes the verdict's bound tensor (call it last).

    Returns:
        (the worst index or None when no pair is finite, [{index, actual, expected, diff,
        allowed}]).
    """
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
        limit = bound(e_picked.abs().nan_to_num_(0.0, 0.0), ops.cmp, ops.dtype)
        # A non-finite reference admits only the identical value.
        bounds = (torch.where(finite_e, limit, 0.0) if isinstance(limit, torch.Tensor)
                  else finite_e.to(torch.float64) * limit).tolist()
        actual_values = (ops.a if ops.dtype.is_floating_point else ops.actual)[picked].tolist()
        expected_values = (e_picked if ops.expected.is_floating_point()
                           else ops.expected[picked]).tolist()
        diffs = ops.diff[picked].tolist()
        for flat, av, ev, dv, bv in zip(order, actual_values, expected_values, diffs, bounds,
                                        strict=True):
            points.append({"index": _unravel(flat, ops.shape), "actual": av, "expected": ev,
                           "diff": float(dv), "allowed": float(bv)})
    return None if worst_flat is None else _unravel(worst_flat, ops.shape), points
