"""Element-wise comparison of a kernel's output against its golden reference.

`compare` works in the stages torch.testing uses (`kfuzz.judge.stages`): shapes must match,
both tensors move to the CPU, the reference is (optionally) rounded to the output dtype, both
are promoted to float64, and only then is each element tested. It returns `Metrics`
(`kfuzz.judge.metrics`): the mismatch count and the verdict, plus the numbers a stored finding
needs (greatest absolute and relative difference with their indices, rel-L2, cosine, ULP
distance, the worst points) and a torch.testing-style message, or raises `ShapeMismatch`
(both importable from here). A `Comparator` (`kfuzz.judge.comparator`) holds the settings;
`kfuzz.judge.tolerance` the per-dtype defaults and the ULP spacing.
"""

from __future__ import annotations

import torch
from kfuzz.judge.comparator import Comparator, format_setting
from kfuzz.judge.metrics import Metrics
from kfuzz.judge.quick import summary
from kfuzz.judge.stages import (
    ShapeMismatch,
    Statistics,
    Work,
    decide,
    prepare,
    split_nonfinite,
    statistics,
    worst_points,
)

# What a comparison returns and raises travel with it.
__all__ = ["Metrics", "ShapeMismatch", "compare"]


def _percent(ratio: float) -> str:
    # One decimal as torch.testing prints, more when the mismatches are rare but present
    # (0.0031% matters when the budget is 0.5%).
    text = f"{100 * ratio:.4f}".rstrip("0")
    text = text + "0" if text.endswith(".") else text
    if ratio > 0 and float(text) == 0:
        text = f"{100 * ratio:.2g}"
    return text + "%"


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
    the bound and verdict (one `bound` for the mask and the worst points), statistics,
    worst points, message.

    Args:
        actual: the kernel's output; its dtype is the output dtype.
        expected: the oracle's output, any real dtype, same shape.
        comparator: the settings; resolved against actual's dtype.
        worst: how many of the worst bad elements to keep in worst_points.
        full: False computes only what the verdict needs (mismatches, passed,
            worst_over_allowed, mismatch_ratio, the non-finite counts) and returns a summary
            (complete=False) when the output passes; a failing output always gets everything.
            An output that surely passes is summarised by `kfuzz.judge.quick.summary`, with
            the same numbers.

    Returns:
        The metrics, verdict and message.

    Raises:
        ShapeMismatch: when the shapes differ.
        TypeError: when an operand is not a tensor, is complex, or comparator is not a Comparator.
        ValueError: when worst is negative.
    """
    if worst < 0:
        raise ValueError(f"worst must be >= 0, got {worst}")
    if not full:
        # An output that surely passes is decided in one float32 pass; the rest, here.
        quick = summary(actual, expected, comparator)
        if quick is not None:
            return quick
    ops = prepare(actual, expected, comparator)
    pairs = split_nonfinite(ops)
    work = Work(ops, pairs)
    verdict = decide(work)
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
    stats = Statistics()
    if metrics.complete:
        stats = statistics(work)
        metrics.worst_index, metrics.worst_points = worst_points(work, verdict, worst)
        for name in ("max_abs", "max_abs_index", "max_rel", "max_rel_index", "max_ulp",
                     "rel_l2", "cosine"):
            setattr(metrics, name, getattr(stats, name))
    metrics.message = _message(ops.cmp, metrics, verdict.allowed_count, stats.max_ulp_index)
    return metrics
