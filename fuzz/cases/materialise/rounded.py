"""Normals rounded to a 16-bit dtype straight from the hash: the table of what each interval
of the normal table rounds to, where every position in it rounds to one value (versions 2 to
4), and version 5's table, where each range has the value of its first position.

A normal is `low + slope * position` (`kfuzz.cases.materialise.core.normal_of`), times the
input's scale, rounded to the input's dtype. Each of those steps is monotone in the position,
so when both ends of a range of positions round to the same bits, every position in it
does. The table splits each interval into 2**RANGE_BITS ranges (the top bits of the position,
which are the hash's bits below the interval's): an element's value is the table's entry for
its range, looked up from the hash's top 16 + RANGE_BITS bits with no float64 arithmetic at
all. Only elements whose range straddles a rounding boundary of the dtype (about 1.2% of them
for BF16 and 7% for FP16 at every scale) take the float64 path, so the bits are exactly those
`(normal * scale).to(dtype)` gives.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from kfuzz.cases.materialise.core import RANGE_BITS, RANGE_SHIFT, RANGED_NORMALS, normal_table

# The dtypes a table is made for: 16 bits wide, so one entry is one int16.
LOWP = (torch.bfloat16, torch.float16)
# The entry of an interval that straddles a rounding boundary: a NaN's bits in BF16 and FP16,
# which no normal rounds to (the table and the scale are finite: an overflow gives an Inf).
STRADDLES = 0x7FFF
# Positions per range (32 bits per interval, see `core.normal_of`).
_RANGE = 1 << (32 - RANGE_BITS)


def ranged(version: int, dtype: torch.dtype) -> bool:
    """Whether normals of `dtype` take their range's first value in a case of `version`
    (`core.range_normal_of`)."""
    return version >= RANGED_NORMALS and dtype in LOWP


def applies(dtype: torch.dtype, scale: float) -> bool:
    """Whether `rounded_normals` builds normals of `dtype` at `scale`."""
    return dtype in LOWP and math.isfinite(scale)


@functools.lru_cache(maxsize=64)
def rounded_table(dtype: torch.dtype, scale: float) -> torch.Tensor:
    """int16 bits of what each range of positions of each interval of the normal table gives at
    `scale` in `dtype` (interval-major: entry i * 2**RANGE_BITS + j is range j of interval i),
    or STRADDLES where the range's two ends round apart: the same operations as
    `core.normal_of` and `fields._scaled`, at the first and the last position of each range."""
    first, last = _at(dtype, scale, 0), _at(dtype, scale, _RANGE - 1)
    return torch.where(first == last, first, torch.full_like(first, STRADDLES)).contiguous()


@functools.lru_cache(maxsize=64)
def ranged_table(dtype: torch.dtype, scale: float) -> torch.Tensor:
    """int16 bits of version 5's normals (`core.range_normal_of`) at `scale` in `dtype`, one
    entry per range of each interval, ordered as `rounded_table`: each range's first position's
    value, with no exception."""
    return _at(dtype, scale, 0)


def _at(dtype: torch.dtype, scale: float, offset: int) -> torch.Tensor:
    """int16 bits of the normal at position `offset` of every range of every interval, times
    `scale`, rounded to `dtype`: the operations of `core.normal_of` and `fields._scaled`."""
    low, slope = normal_table()
    position = torch.arange(0, 1 << 32, _RANGE, dtype=torch.float64) + offset
    x = slope[:, None] * position  # as normal_of: the product rounded once, then + low
    x += low[:, None]
    if scale != 1.0:
        x *= scale
    return x.to(dtype).view(torch.int16).reshape(-1).contiguous()


def _index(hashes: np.ndarray) -> torch.Tensor:
    """The table entry of each uint32 hash: its top TABLE_BITS + RANGE_BITS bits, as the int32
    index `torch.index_select` reads in place."""
    return torch.from_numpy((hashes >> RANGE_SHIFT).view(np.int32))


def rounded_normals(hashes: np.ndarray, scale: float, dtype: torch.dtype, out: torch.Tensor,
                    exact: Callable[[np.ndarray], torch.Tensor]) -> None:
    """Write into `out` (int16, as many elements as `hashes`) the bits of the normals of the
    uint32 `hashes` at `scale`, rounded to `dtype`; `exact(h)`: the float64 normals times
    `scale` of the hashes `h`, for the elements whose range straddles a boundary."""
    index = _index(hashes)
    torch.index_select(rounded_table(dtype, scale), 0, index, out=out)
    bits = out.numpy()
    straddle = np.flatnonzero(bits == STRADDLES)
    if straddle.size:
        bits[straddle] = exact(hashes[straddle]).to(dtype).view(torch.int16).numpy()


def ranged_normals(hashes: np.ndarray, scale: float, dtype: torch.dtype,
                   out: torch.Tensor) -> None:
    """Write into `out` (int16, as many elements as `hashes`) the bits of version 5's normals
    of the uint32 `hashes` at `scale` in `dtype`: looked up, every one."""
    index = _index(hashes)
    torch.index_select(ranged_table(dtype, scale), 0, index, out=out)
