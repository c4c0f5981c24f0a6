"""Version-1 materialisation, frozen: tensors drawn sequentially from a `torch.Generator`.

Every case stored before position-stable values existed carries no "materialise" field and is
built here, bit for bit as when it was stored (tests/test_position_stable.py pins the digests).
Nothing here may change what it builds; new behaviour goes into `kfuzz.cases.materialise` (version 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kfuzz.cases.materialise.base import index_spec
from kfuzz.errors import CaseError


def _field(dist: Mapping[str, Any], key: str) -> Any:
    try:
        return dist[key]
    except KeyError:
        raise CaseError(f"distribution {dict(dist)!r} lacks {key!r}") from None


def values(
    gen: torch.Generator, shape: Sequence[int], dtype: torch.dtype, dist: Mapping[str, Any]
) -> torch.Tensor:
    """A CPU tensor of `shape` and `dtype` drawn from the distribution description `dist`
    (see `kfuzz.cases.strategies.distributions`). Values are drawn in float64, then rounded to
    `dtype` (saturating to +/-Inf past its range, as a cast would). Raises CaseError for a
    malformed description."""
    if not isinstance(dist, Mapping):
        raise CaseError(f"distribution {dist!r} is not a mapping")
    shape = tuple(int(s) for s in shape)
    kind = _field(dist, "kind")
    f64 = torch.float64
    if kind == "normal":
        x = torch.randn(shape, generator=gen, dtype=f64) * float(_field(dist, "scale"))
    elif kind == "uniform":
        low, high = float(_field(dist, "low")), float(_field(dist, "high"))
        x = low + (high - low) * torch.rand(shape, generator=gen, dtype=f64)
    elif kind == "log_uniform":
        lo, hi = float(_field(dist, "min_exp")), float(_field(dist, "max_exp"))
        x = torch.exp2(lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=f64))
        if dist.get("signed", True):
            x = x * _signs(gen, shape)
    elif kind == "outliers":
        x = torch.randn(shape, generator=gen, dtype=f64) * float(_field(dist, "scale"))
        hit = torch.rand(shape, generator=gen, dtype=f64) < float(_field(dist, "fraction"))
        big = float(_field(dist, "magnitude")) * _signs(gen, shape)
        x = torch.where(hit, big, x)
    elif kind == "constant_rows":
        x = torch.randn(shape, generator=gen, dtype=f64)
        if len(shape) >= 1 and shape[-1] > 0:
            rows = torch.rand(shape[:-1] + (1,), generator=gen, dtype=f64)
            hit = rows < float(_field(dist, "fraction"))
            x = torch.where(hit, torch.full_like(x, float(_field(dist, "value"))), x)
    elif kind == "edge":
        x = _edge_values(gen, shape, dtype, _field(dist, "edge"), int(dist.get("spread", 0)))
    else:
        raise CaseError(f"unknown distribution kind {kind!r} in {dict(dist)!r}")
    nonfinite = dist.get("nonfinite")
    if nonfinite:
        x = _inject_nonfinite(gen, x, float(nonfinite.get("nan", 0)), float(nonfinite.get("inf", 0)))
    return x.to(dtype)


def _signs(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def _edge_values(
    gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype, edge: str, spread: int
) -> torch.Tensor:
    if not dtype.is_floating_point:
        raise CaseError(f"edge distributions need a floating dtype, got {dtype}")
    info = torch.finfo(dtype)
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    if edge == "overflow":
        # Within 2**spread of the largest finite value, below it.
        mag = info.max * torch.exp2(-spread * u - 1e-3)
    elif edge == "underflow":
        # Around the smallest normal, up to 2**spread above it.
        mag = info.tiny * torch.exp2(spread * u)
    elif edge == "subnormal":
        mag = info.tiny * u
    else:
        raise CaseError(f"unknown edge {edge!r}; choose from overflow, underflow, subnormal")
    return mag * _signs(gen, shape)


def _inject_nonfinite(gen: torch.Generator, x: torch.Tensor, nan: float, inf: float) -> torch.Tensor:
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    x = torch.where(u < nan, torch.full_like(x, math.nan), x)
    infs = torch.full_like(x, math.inf) * _signs(gen, tuple(x.shape))
    return torch.where((u >= nan) & (u < nan + inf), infs, x)


def sparse_indices(gen: torch.Generator, tokens: int, spec: Mapping[str, Any]) -> torch.Tensor:
    """A [tokens, k] int32 index tensor from a `kfuzz.cases.strategies.sparse_index_sets` description.

    Per token: the first min(window, valid) slots are the most recent rows (n_rows-1 down),
    the next valid slots scattered rows (drawn without replacement unless `duplicates`), the
    rest -1. With `out_of_range`, about one valid slot in eight names a row >= n_rows.
    Raises CaseError for a malformed description."""
    n, k, n_valid, window = index_spec(spec)
    out = torch.full((tokens, k), -1, dtype=torch.int32)
    if spec.get("ragged"):
        lengths = torch.randint(0, n_valid + 1, (tokens,), generator=gen).tolist()
    else:
        lengths = [n_valid] * tokens
    for t, valid in enumerate(lengths):
        # Without duplicates a token cannot name more distinct rows than exist.
        valid = valid if spec.get("duplicates") else min(valid, n)
        w = min(window, valid, n)
        recent = torch.arange(n - 1, n - 1 - w, -1, dtype=torch.int32)
        rest = valid - w
        if spec.get("duplicates"):
            scattered = torch.randint(0, n, (rest,), generator=gen, dtype=torch.int32)
        else:
            pool = torch.randperm(max(n - w, 0), generator=gen).to(torch.int32)[:rest]
            scattered = pool
        row = torch.cat([recent, scattered])
        if spec.get("sorted"):
            row = torch.sort(row).values
        if spec.get("out_of_range") and row.numel():
            hit = torch.rand(row.shape, generator=gen) < 0.125
            row = torch.where(hit, row + n, row)
        out[t, : row.numel()] = row
    return out


