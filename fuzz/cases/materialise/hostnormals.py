"""Normals built on the host (NumPy, the CPU) for `kfuzz.cases.materialise.fields.HostField` and
the batches of `kfuzz.cases.materialise.batch`, chunk by chunk: the float64 path
(`core.normal_of`, or version 5's `core.range_normal_of`, scaled and rounded), BF16 and FP16
normals looked up from the tables of `kfuzz.cases.materialise.rounded` where that costs less,
and version 4's FP32 normals in float32 (`core.normal32_of`). The same bits as the torch and
Python implementations of the fields (tests/test_position_stable.py checks)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from kfuzz.cases.materialise.core import (
    FLOAT32_NORMALS,
    normal32_of,
    normal32_table,
    normal_of,
    normal_table,
    range_normal_of,
)
from kfuzz.cases.materialise.rounded import applies, ranged, ranged_normals, rounded_normals

# Elements per chunk of `HostField.normal` (256 KiB of float64): measured, per element, as fast
# as a single pass up to 64K elements, and three times faster than one from about 96K.
NORMAL_CHUNK = 1 << 15
# From this many elements on, BF16 and FP16 normals are looked up (`rounded`): below it, the
# float64 path costs less than the lookup, whose gathers from a 512 KiB table and whose pass
# over the elements that straddle a boundary (1.2% in BF16, 7.3% in FP16) cost more than the
# arithmetic they save. Measured on a 2-core CPU with the caches cleared between calls (a
# case's kernel runs between two builds), µs per field, float64 path / lookup: BF16 1K 43/67,
# 8K 70/84, 16K 101/101, 32K 163/132, 192K 927/675; FP16 8K 74/105, 32K 161/182, 128K
# 637/633, 192K 975/937.
LOOKUP_MIN = {torch.bfloat16: 1 << 14, torch.float16: 1 << 17}
# From this many elements on, version 5's BF16 and FP16 normals are looked up: with no element
# left to the float64 path, the lookup costs less from about 1K elements on. Measured on a
# 2-core CPU with the caches cleared between calls, µs per BF16 field, float64 path / lookup
# (torch.randn in float32, rounded): 512 36/28 (9), 1K 38/29 (11), 4K 51/35 (21), 16K 94/53
# (64), 32K 150/75 (121), 192K 910/389 (692); FP16 the same within 3 µs.
RANGED_LOOKUP_MIN = 1 << 10
# Elements per chunk of version 4's FP32 normals (float32 throughout: half the bytes per element
# of the float64 path's chunks). Measured with the caches cleared between builds, µs per
# 196,608-element field: 16K 810, 32K 666, 64K 633, 128K 606 (torch.randn: 664).
NORMAL32_CHUNK = 1 << 16


def host_normals(hashes: Callable[[int, int], np.ndarray], size: int, scale: float,
                 dtype: torch.dtype, version: int = 2) -> torch.Tensor:
    """The 1-d tensor of `size` normals of `dtype` at `scale` (as `Draws.normal` in a field of
    `version`) whose uint32 hashes `hashes(start, stop)` gives, chunk by chunk."""
    if version >= FLOAT32_NORMALS and dtype is torch.float32:
        return _host_normals32(hashes, size, scale)
    lowp_ranged = ranged(version, dtype)
    # In chunks, each scaled and rounded to `dtype` as it is made: the map makes seven
    # temporaries of the tensor's size, and on a large tensor fresh pages for them (and
    # for a float64 tensor of the whole size) cost more than the arithmetic (a chunk's
    # come from the heap and stay in cache).
    if applies(dtype, scale) and size >= (RANGED_LOOKUP_MIN if lowp_ranged else LOOKUP_MIN[dtype]):
        bits = torch.empty(size, dtype=torch.int16)
        exact = functools.partial(_host_normal, scale=scale)
        for start in range(0, size, NORMAL_CHUNK):
            h = hashes(start, min(start + NORMAL_CHUNK, size))
            if lowp_ranged:  # looked up, every one
                ranged_normals(h, scale, dtype, bits.narrow(0, start, h.size))
            else:  # mostly looked up
                rounded_normals(h, scale, dtype, bits.narrow(0, start, h.size), exact)
        return bits.view(dtype)
    of = range_normal_of if lowp_ranged else None
    if 0 < size <= NORMAL_CHUNK:  # one chunk: rounded as it is, no buffer to fill
        x = _host_normal(hashes(0, size), scale, of)
        return x if dtype is torch.float64 else x.to(dtype)
    out = torch.empty(size, dtype=dtype)
    for start in range(0, size, NORMAL_CHUNK):
        x = _host_normal(hashes(start, min(start + NORMAL_CHUNK, size)), scale, of)
        out.narrow(0, start, x.numel()).copy_(x)  # the rounding .to(dtype) makes
    return out


def _host_normals32(hashes: Callable[[int, int], np.ndarray], size: int,
                    scale: float) -> torch.Tensor:
    """Version 4's FP32 normals (see `host_normals`): float32 arithmetic throughout, each chunk
    computed where the output keeps it."""
    out = np.empty(size, dtype=np.float32)
    with np.errstate(over="ignore"):  # a scale past float32's range gives infinities, silently
        for start in range(0, size, NORMAL32_CHUNK):
            stop = min(start + NORMAL32_CHUNK, size)
            normal32_of(hashes(start, stop), functools.partial(_into, out[start:stop]),
                        _host_table32(), scale)
    return torch.from_numpy(out)


def _into(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`x` converted into `out` (exactly: integers below 2**16 into float32)."""
    np.copyto(out, x, casting="unsafe")
    return out


def _host_normal(hashes: np.ndarray, scale: float,
                 of: Callable[..., np.ndarray] | None = None) -> torch.Tensor:
    """float64 normals times `scale` of uint32 hashes (`core.normal_of`'s, or `of`'s, such as
    `core.range_normal_of`), as a tensor over a new NumPy array. NumPy scales: float64 products,
    the same bits as torch's, at less cost."""
    if of is None:
        x = normal_of(hashes, host_f64, _host_table(), wrap=False)
    else:
        x = of(hashes, host_f64, _host_table())
    if scale != 1.0:  # x * 1.0 is x, bit for bit
        x *= scale
    return torch.from_numpy(x)


def host_f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


class _HostTable:
    """The normal table on the host, read as `core.normal_of` (`normal32_of` for version 4's
    table) reads it: `table[index]` is a pair of new arrays of the index's shape, for a 1-d
    uint32 index below 2**31."""

    __slots__ = ("pairs", "part")

    def __init__(self, low: torch.Tensor, slope: torch.Tensor) -> None:
        # Each interval's low end and slope side by side (as one complex number), so that one
        # gather reads both from one place.
        self.pairs = torch.complex(low, slope)
        self.part = low.dtype  # float64, or float32 for version 4's table

    def __getitem__(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # torch's index_select reads the uint32 index as int32 in place: about half the time
        # of NumPy's fancy indexing, which converts the index to intp first.
        found = torch.index_select(self.pairs, 0, torch.from_numpy(index.view(np.int32)))
        pairs = found.view(self.part).numpy()
        return pairs[0::2], pairs[1::2]


@functools.cache
def _host_table() -> _HostTable:
    return _HostTable(*normal_table())


@functools.cache
def _host_table32() -> _HostTable:
    return _HostTable(*normal32_table())
