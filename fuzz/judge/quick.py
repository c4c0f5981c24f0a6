"""The summary of an output that passes, at what its verdict costs.

A search judges many outputs that pass, and for those it needs only the verdict and the
closest call (`Metrics.worst_over_allowed`). `summary` decides them in one pass in float32
(every BF16, FP16 and FP32 value is exact there) instead of the stages' float64 operands,
statistics and worst points: an element surely passes when its float32 ratio |a - e| /
(atol + rtol * |e|) is below 1 - 2**-16, a margin far wider than the few float32 roundings in
it, so that the float64 test the stages make passes it too. The closest call is then the
float64 ratio of the few elements whose float32 ratio is within that margin of the largest,
computed as the stages compute it, so it is the same number. Outputs of up to `SMALL`
elements are judged with Python floats, which are float64.

Anything else (a mode other than allclose, atol below 2**-100 or rtol or atol above 1, a
float64 output, a NaN or Inf, an element near or past its bound) gets None, and the caller
runs the stages: the verdict, the mismatch count and the failure are always theirs.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch
from kfuzz.judge.comparator import Comparator, format_setting
from kfuzz.judge.metrics import Metrics
from kfuzz.judge.stages import allowed_mismatches

# Output dtypes whose values float32 holds exactly.
EXACT_IN_FLOAT32 = (torch.bfloat16, torch.float16, torch.float32)
# Outputs of at most this many elements are judged element by element with Python floats.
SMALL = 64
# An element whose float32 ratio is at most SAFE passes in float64 (see the module docstring).
SAFE = 1.0 - 2.0**-16
# The smallest atol judged here: every float32 bound is then a normal number, whose rounding
# error is relative.
MIN_ATOL = 2.0**-100
# Outputs of up to this many elements are judged in buffers kept between calls (per thread, per
# use and dtype): for temporaries of a large output, fresh pages cost more than the arithmetic.
SCRATCH_MAX = 1 << 21
_SCRATCH = threading.local()


def _eligible(actual: object, expected: object, cmp: Comparator) -> bool:
    """Whether `summary` can judge these operands: tensors of one shape, the comparator
    resolved to allclose with bounds float32 computes with a small relative error."""
    return (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)
            and actual.dtype in EXACT_IN_FLOAT32 and actual.shape == expected.shape
            and expected.is_floating_point() and actual.numel() > 0
            and cmp.mode == "allclose" and cmp.atol is not None and cmp.rtol is not None
            and MIN_ATOL <= cmp.atol <= 1.0 and cmp.rtol <= 1.0)


def summary(actual: torch.Tensor, expected: torch.Tensor,
            comparator: Comparator) -> Metrics | None:
    """The summary `compare(actual, expected, comparator, full=False)` returns, when every
    element surely passes; None otherwise (the caller then runs the stages, which also raise
    for operands they refuse)."""
    if not isinstance(comparator, Comparator) or not isinstance(actual, torch.Tensor):
        return None
    cmp = comparator.resolved(actual.dtype)
    if not _eligible(actual, expected, cmp):
        return None
    atol, rtol = float(cmp.atol or 0.0), float(cmp.rtol or 0.0)
    a = actual.detach().cpu().reshape(-1)
    e = expected.detach().cpu().reshape(-1)
    numel = a.numel()
    if cmp.round_expected and e.dtype != a.dtype:
        # The same rounding as e.to(a.dtype), into a kept buffer.
        e = e.to(a.dtype) if numel <= SMALL else _buffer("rounded", numel, a.dtype).copy_(e)
    if e.dtype not in EXACT_IN_FLOAT32:
        return None
    worst = _worst_small(a, e, atol, rtol) if numel <= SMALL else _worst(a, e, atol, rtol)
    if worst is None:
        return None
    return Metrics(mismatches=0, numel=numel, mismatch_ratio=0.0, passed=True,
                   worst_over_allowed=worst, nonfinite_actual=0, nonfinite_expected=0,
                   nonfinite_mismatches=0, comparator=_as_dict(cmp),
                   message=_message(numel, cmp.max_ratio), complete=False)


def _worst_small(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> float | None:
    """The closest call over a few elements in float64 (Python floats), as the stages compute
    it; None when an element is not finite or is outside its bound."""
    worst = 0.0
    for av, ev in zip(a.tolist(), e.tolist(), strict=True):
        diff = abs(av - ev)
        allowed = abs(ev) * rtol + atol
        if not diff <= allowed or not math.isfinite(allowed):  # NaN fails the first test
            return None
        worst = max(worst, diff / allowed)
    return worst


def _worst(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> float | None:
    """The closest call: a float32 pass over every element, then float64 over the candidates
    for the largest ratio; None when some element does not surely pass."""
    numel = a.numel()
    diff = _buffer("diff", numel, torch.float32)
    allowed = _buffer("allowed", numel, torch.float32)
    # The float32 differences and |e|: every value of the operands' dtypes is a float32 value,
    # and float32 operands are read where they are, with no copy.
    if a.dtype is torch.float32 and e.dtype is torch.float32:
        torch.sub(a, e, out=diff)
        torch.abs(e, out=allowed)
    else:
        diff.copy_(a).sub_(e)  # computed in float32, diff's dtype
        allowed.copy_(e).abs_()
    diff.abs_()
    # atol + rtol * |e| in one pass (fused or not, within the margin SAFE leaves).
    torch.add(_scalar(atol), allowed, alpha=rtol, out=allowed)
    ratio = diff.div_(allowed)
    largest = float(ratio.max())  # NaN where any element is NaN or Inf
    if not largest <= SAFE:
        return None
    if largest == 0.0:  # every element equal: every float64 difference is 0 as well
        return 0.0
    # The candidates through NumPy: on a CPU its comparison and flatnonzero take a fraction
    # of the time of torch's (a bool tensor, then nonzero).
    near = _buffer("near", numel, torch.bool).numpy()  # on the CPU, as every operand here
    np.greater_equal(ratio.numpy(), np.float32(largest * (1.0 - 2.0**-15)), out=near)
    picked = torch.from_numpy(np.flatnonzero(near))
    if picked.numel() <= SMALL:  # as a few elements are judged: Python floats are float64
        return _worst_small(torch.index_select(a, 0, picked), torch.index_select(e, 0, picked),
                            atol, rtol)
    a64 = torch.index_select(a, 0, picked).to(torch.float64)
    e64 = torch.index_select(e, 0, picked).to(torch.float64)
    diff64 = (a64 - e64).abs_()
    allowed64 = e64.abs().mul_(rtol).add_(atol)
    return float(torch.div(diff64, allowed64).max())


@functools.lru_cache(maxsize=64)
def _scalar(value: float) -> torch.Tensor:
    """`value` as a 0-d float32 tensor (an operand of `torch.add`), made once."""
    return torch.tensor(value, dtype=torch.float32)


def _buffer(use: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A 1-d CPU tensor of `numel` elements of `dtype` for one `use` in this thread: the
    start of a buffer kept between calls, or a new tensor past SCRATCH_MAX elements. Its
    values are whatever was left there."""
    if numel > SCRATCH_MAX:
        return torch.empty(numel, dtype=dtype)
    views = getattr(_SCRATCH, "views", None)
    if views is None:
        views = _SCRATCH.views = {}
        _SCRATCH.buffers = {}
    key = (use, dtype, numel)
    found = views.get(key)
    if found is None:  # a view per size, kept too: a search judges a few sizes many times
        buffers = _SCRATCH.buffers
        base = buffers.get((use, dtype))
        if base is None or base.numel() < numel:
            base = buffers[use, dtype] = torch.empty(numel, dtype=dtype)
            views.clear()  # views of a smaller buffer would keep its memory
        if len(views) >= 256:
            views.clear()
        found = views[key] = base[:numel]
    return found


@functools.lru_cache(maxsize=64)
def _comparator_dict(cmp: Comparator) -> tuple[tuple[str, object], ...]:
    return tuple(cmp.to_dict().items())


def _as_dict(cmp: Comparator) -> dict[str, object]:
    return dict(_comparator_dict(cmp))


@functools.lru_cache(maxsize=256)
def _message(numel: int, max_ratio: float) -> str:
    """The summary message of an output with no mismatch (as `compare` writes it)."""
    return (f"Mismatched elements: 0 / {numel} (0.0%), allowed "
            f"{allowed_mismatches(max_ratio, numel)} (max_ratio {format_setting(max_ratio)})")
