"""Error classes: how far a failing output is from its reference, in units in the last place
of the output dtype and as a relative error. A finer bucket than "mismatch", so that a
rounding fault and a wrong answer on one output are two findings (see `Outcome.buckets`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from kfuzz.judge.tolerance import ulp_size

# Bounds of the error classes (`error_class`): units in the last place of the output dtype,
# and the relative error (ULPs times the dtype's epsilon).
ROUNDING_ULPS = 4.0
PRECISION_RELATIVE = 1 / 16
ERROR_CLASSES = ("rounding", "precision", "wrong")


def _ulps(point: Mapping[str, Any], dtype: torch.dtype) -> float:
    """A worst point's distance from its reference in ULPs of `dtype` at the reference (the
    subnormal step below the normals): `kfuzz.judge.tolerance.ulp_size`, the one formula."""
    magnitude = torch.tensor(abs(float(point["expected"])), dtype=torch.float64)
    return float(point["diff"]) / float(ulp_size(magnitude, dtype))


def error_class(metrics: Mapping[str, Any], dtype: str | None) -> str | None:
    """How far a failing output is from its reference, one of ERROR_CLASSES: "rounding" (its
    bad elements at most ROUNDING_ULPS units in the last place of the output dtype off: an
    extra rounding, a rounding mode), "precision" (further, but within a relative
    PRECISION_RELATIVE, i.e. ULPs x eps(dtype) <= 1/16: lost bits, a low-precision
    accumulator), "wrong" (beyond that, or infinite: a masked element, a wrong index, a
    missing scale). An integer output that mismatches is "wrong".

    The distance is `max_ulp` in exact and ulp mode (every element that differs, or is over
    the bound, is bad there); in allclose mode the largest over the worst points (bad
    elements only: an element within atol can be many ULPs off a tiny reference). None when
    it cannot be told: a passing output, a non-finite mismatch (bucketed apart), a record
    without ULP data, or no dtype (`Outcome.dtypes`)."""
    if metrics.get("passed", True) or metrics.get("nonfinite_mismatches") or not dtype:
        return None
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        return None
    if not torch_dtype.is_floating_point:
        return "wrong"
    mode = (metrics.get("comparator") or {}).get("mode")
    points = metrics.get("worst_points") or []
    try:
        if mode == "allclose" and points:
            ulps = max(_ulps(p, torch_dtype) for p in points)
        elif metrics.get("max_ulp") is not None:
            ulps = float(metrics["max_ulp"])  # "inf" (stored form) reads as inf
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    if math.isnan(ulps):
        return None
    if ulps <= ROUNDING_ULPS:
        return "rounding"
    if ulps * torch.finfo(torch_dtype).eps <= PRECISION_RELATIVE:
        return "precision"
    return "wrong"
