"""Versions 2 and 3: an input's values from a distribution description, position-stable.

Every number comes from the fields of one input (`Fields`: a field by its sub-key and shape,
from `kfuzz.cases.materialise.counter.CounterGenerator`), so each element depends on the seed,
the input and its own coordinates only. Values are drawn in float64 with exact operations
(products and sums of exact terms, `pow2`), then rounded to the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from kfuzz.cases.materialise.dtypes import dtype_of
from kfuzz.cases.materialise.fields import Draws
from kfuzz.cases.strategies import NONFINITE_ENDS
from kfuzz.errors import CaseError

# The fields of one input: its field with a sub-key (relative to the input's key), of a shape.
Fields = Callable[[int, tuple[int, ...]], Draws]
# Sub-keys: the values themselves, and one value per row (over the leading dimensions).
VALUES_FIELD, ROWS_FIELD = 0, 0x5BD1E995
# Draw numbers of the values field: each use of the element hashes has its own, so that adding
# a modifier never changes the base values.
_BASE, _HIT, _SIGN, _DOMINANT, _TIE, _TIE_NUDGE, _EDGE, _NAN = 0, 2, 3, 4, 5, 6, 7, 10
# ... and of the one NaN and the one +-Inf (and its sign, the draw after) of a row.
_ONE_NAN, _ONE_INF = 12, 14
# Draw numbers of the per-row field.
_ROW_HIT, _ROW_GAP, _ROW_EDGE, _ROW_NAN, _ROW_ONE_NAN, _ROW_ONE_INF = 0, 1, 2, 3, 4, 5
# Optional keys of a distribution: the value regimes, applied in this order after the base kind.
MODIFIERS = ("row_gap", "dominant", "shift", "ties", "edge_rows", "nonfinite")
_MODIFIER_KEYS = frozenset(MODIFIERS)
_PRECISION = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24, torch.float64: 53}


def require(desc: Mapping[str, Any], key: str) -> Any:
    """`desc[key]`; raises CaseError naming the description when it lacks `key`."""
    try:
        return desc[key]
    except KeyError:
        raise CaseError(f"distribution {dict(desc)!r} lacks {key!r}") from None


def pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2.0 ** exponent for an int64 tensor in [-1022, 1023], built from the bit pattern (exact
    on every device)."""
    return ((exponent + 1023) << 52).view(torch.float64)


def build_values(fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
                 dist: Mapping[str, Any]) -> torch.Tensor:
    """A tensor of `shape` and `dtype` drawn from the description `dist` (see
    `kfuzz.cases.strategies.distributions`) with the input's `fields`: the base kind, then the
    modifiers it holds, rounded to `dtype` last (saturating to +/-Inf past its range, as a
    cast would). Raises CaseError for a malformed description."""
    f = fields(VALUES_FIELD, shape)
    kind = require(dist, "kind")
    try:
        base = _KINDS[kind]
    except (KeyError, TypeError):
        raise CaseError(f"unknown distribution kind {kind!r} in {dict(dist)!r}") from None
    x = base(f, fields, shape, dtype, dist)
    if not _MODIFIER_KEYS.isdisjoint(dist):
        x = _apply_modifiers(x, f, fields, shape, dtype, dist)
    return x if x.dtype is dtype else x.to(dtype)  # the same; the test costs less than .to


def _rows(fields: Fields, shape: tuple[int, ...]) -> Draws:
    """The input's per-row field: one value per slice of the last axis. Made only where a
    description uses it (the fields made are what a version-3 case's coordinates can name);
    made twice, it is the same field."""
    return fields(ROWS_FIELD, shape[:-1] + (1,))


def _normal(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
            dist: Mapping[str, Any]) -> torch.Tensor:
    scale = float(require(dist, "scale"))
    if _MODIFIER_KEYS.isdisjoint(dist):
        # Nothing is added after: scaled and rounded to the input's dtype as it is drawn.
        return f.normal(_BASE, scale, dtype)
    return f.normal(_BASE, scale)


def _uniform(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
             dist: Mapping[str, Any]) -> torch.Tensor:
    low, high = float(require(dist, "low")), float(require(dist, "high"))
    return low + (high - low) * f.uniform(_BASE)


def _log_uniform(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
                 dist: Mapping[str, Any]) -> torch.Tensor:
    lo, hi = float(require(dist, "min_exp")), float(require(dist, "max_exp"))
    # A uniform binade, then a uniform mantissa in it: log-uniform up to a piecewise-linear
    # mantissa, and exact on every device (no exp2).
    t = lo + (hi - lo) * f.uniform(_BASE)
    e = torch.floor(t)
    x = (1.0 + (t - e)) * pow2(e.to(torch.int64).clamp_(-1022, 1023))
    return x * f.signs(_SIGN) if dist.get("signed", True) else x


def _outliers(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
              dist: Mapping[str, Any]) -> torch.Tensor:
    x = f.normal(_BASE) * float(require(dist, "scale"))
    hit = f.uniform(_HIT) < float(require(dist, "fraction"))
    return torch.where(hit, float(require(dist, "magnitude")) * f.signs(_SIGN), x)


def _constant_rows(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
                   dist: Mapping[str, Any]) -> torch.Tensor:
    x = f.normal(_BASE)
    if shape and shape[-1] > 0:
        hit = _rows(fields, shape).uniform(_ROW_HIT) < float(require(dist, "fraction"))
        x = torch.where(hit, float(require(dist, "value")), x)
    return x


def _edge_kind(f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
               dist: Mapping[str, Any]) -> torch.Tensor:
    return _edge(f, dtype, require(dist, "edge"), int(dist.get("spread", 0)), _BASE)


# The base kinds, by the description's "kind".
_KINDS: dict[str, Callable[..., torch.Tensor]] = {
    "normal": _normal,
    "uniform": _uniform,
    "log_uniform": _log_uniform,
    "outliers": _outliers,
    "constant_rows": _constant_rows,
    "edge": _edge_kind,
}


def _edge(f: Draws, dtype: torch.dtype, edge: str, spread: int, draw: int) -> torch.Tensor:
    if not dtype.is_floating_point:
        raise CaseError(f"edge distributions need a floating dtype, got {dtype}")
    info = torch.finfo(dtype)
    u = f.uniform(draw)
    steps = f.below(draw + 1, max(spread, 0) + 1)
    if edge == "overflow":
        # Within 2**(spread + 1) of the largest finite value, at most that value.
        mag = info.max * (1.0 - 0.5 * u) * pow2(-steps)
    elif edge == "underflow":
        # From the smallest normal up to 2**(spread + 1) above it.
        mag = info.tiny * (1.0 + u) * pow2(steps)
    elif edge == "subnormal":
        mag = info.tiny * u
    else:
        raise CaseError(f"unknown edge {edge!r}; choose from overflow, underflow, subnormal")
    return mag * f.signs(draw + 2)


def _apply_modifiers(
    x: torch.Tensor, f: Draws, fields: Fields, shape: tuple[int, ...], dtype: torch.dtype,
    dist: Mapping[str, Any],
) -> torch.Tensor:
    """The value regimes of `dist` (see `kfuzz.cases.strategies.regimes`), each optional."""
    if dist.get("row_gap"):
        # Rows far apart: each row shifted by its own offset in [-gap, gap].
        x = x + (2.0 * _rows(fields, shape).uniform(_ROW_GAP) - 1.0) * float(dist["row_gap"])
    if dist.get("dominant") and shape and shape[-1] > 0:
        # One element per row far above the rest (one dominant score): the one with the largest
        # hash in its row, which stays the same element when other columns are cut away.
        score = f.bits(_DOMINANT)
        top = score == score.amax(dim=-1, keepdim=True)
        x = x + top.to(torch.float64) * float(dist["dominant"])
    if dist.get("shift"):
        x = x + float(dist["shift"])
    if dist.get("ties"):
        x = _ties(x, f, dtype, dtype_of(dist["ties"]))
    edge_rows = dist.get("edge_rows")
    if edge_rows:
        hit = _rows(fields, shape).uniform(_ROW_EDGE) < float(require(edge_rows, "fraction"))
        x = torch.where(hit, _edge(f, dtype, require(edge_rows, "edge"), 2, _EDGE), x)
    nonfinite = dist.get("nonfinite")
    if nonfinite:
        x = _nonfinite(x, f, fields, shape, nonfinite)
    return x


def _nonfinite(x: torch.Tensor, f: Draws, fields: Fields, shape: tuple[int, ...],
               entry: Mapping[str, Any]) -> torch.Tensor:
    """The "nonfinite" entry (see `kfuzz.cases.strategies.distributions`): NaN ("nan") and
    +-Inf ("inf") scattered at a rate per element; whole rows of NaN ("rows", a rate per row);
    one +-Inf ("row_inf") and one NaN ("row_nan") in a share of the rows, each the element of
    its row with the largest hash of its draw (the same element when other columns are cut
    away); the first, last or both ends of the leading axis all NaN ("ends")."""
    nan, inf = float(entry.get("nan", 0)), float(entry.get("inf", 0))
    u = f.uniform(_NAN)
    x = torch.where(u < nan, math.nan, x)
    x = torch.where((u >= nan) & (u < nan + inf), math.inf * f.signs(_NAN + 1), x)
    rows = float(entry.get("rows", 0))
    if rows and shape:
        # Whole rows of NaN, as uninitialised or poisoned rows of a cache hold.
        x = torch.where(_rows(fields, shape).uniform(_ROW_NAN) < rows, math.nan, x)
    if shape and shape[-1] > 0:
        for key, draw, row_draw in (("row_inf", _ONE_INF, _ROW_ONE_INF),
                                    ("row_nan", _ONE_NAN, _ROW_ONE_NAN)):
            share = float(entry.get(key, 0))
            if not share:
                continue
            score = f.bits(draw)
            one = (score == score.amax(dim=-1, keepdim=True))
            one = one & (_rows(fields, shape).uniform(row_draw) < share)
            value = math.inf * f.signs(draw + 1) if key == "row_inf" else math.nan
            x = torch.where(one, value, x)
    ends = entry.get("ends")
    if ends and ends not in NONFINITE_ENDS:
        raise CaseError(f"unknown nonfinite ends {ends!r}; choose from {', '.join(NONFINITE_ENDS)}")
    if ends and shape and shape[0] > 0:
        # The rows a masked gather reads in place of a skipped slot: an index of -1 clamped
        # reads the first, wrapped the last.
        at = torch.arange(shape[0], device=x.device).view(-1, *(1,) * (len(shape) - 1))
        hit = torch.zeros_like(at, dtype=torch.bool)
        if ends in ("first", "both"):
            hit = hit | (at == 0)
        if ends in ("last", "both"):
            hit = hit | (at == shape[0] - 1)
        x = torch.where(hit, math.nan, x)
    return x


def _ties(x: torch.Tensor, f: Draws, dtype: torch.dtype, tie_dtype: torch.dtype) -> torch.Tensor:
    """Half of the elements moved onto a rounding tie of `tie_dtype` (the midpoint of the two
    `tie_dtype` values around them), or one unit of `dtype` below or above it."""
    if tie_dtype not in _PRECISION or dtype not in _PRECISION:
        raise CaseError(f"ties need floating dtypes, got {tie_dtype} for a {dtype} input")
    finite = torch.isfinite(x) & (x != 0)
    r = x.to(tie_dtype).to(torch.float64)
    _, exp = torch.frexp(torch.where(finite, r, 1.0))
    exp = exp.to(torch.int64)
    half_step = pow2((exp - _PRECISION[tie_dtype] - 1).clamp_(-1022, 1023))
    mid = r + torch.where(r < 0, -half_step, half_step)
    nudge = (f.below(_TIE_NUDGE, 3) - 1).to(torch.float64)
    mid = mid + nudge * pow2((exp - _PRECISION[dtype]).clamp_(-1022, 1023))
    pick = finite & torch.isfinite(mid) & (f.uniform(_TIE) < 0.5)
    return torch.where(pick, mid, x)
