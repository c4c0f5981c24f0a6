"""The counter hash of versions 2 to 5: random bits as a hash of (key, coordinates, draw), and
the maps from those bits to numbers.

Written once for three kinds of operand, so that the torch, NumPy and pure-Python fields
(`kfuzz.cases.materialise.fields`) cannot drift apart: a Python int, an int64 torch tensor of
values in [0, 2**32) (a product wraps past 2**63 and is masked back to 32 bits) and a uint32
NumPy array (a product wraps at 2**32 by itself, so the hash skips the mask: `wrap`). The
functions use only operators the three share, augmented assignments updating a tensor or an
array in place, plus what the caller passes: `f64`, an exact conversion of integers to float64
(None for Python ints, which arithmetic with a float converts exactly by itself), and the
normal table in a form whose `table[index]` is a pair (low, slope) of new arrays of the index's
shape (a list of pairs for a Python int). Integer operations and correctly rounded float64
arithmetic (+, -, *) only, so the same bits on every device; version 4's FP32 normals
(`normal32_of`) use correctly rounded float32 arithmetic instead, which Python floats reproduce
exactly (`round32`), and version 5's BF16 and FP16 normals (`range_normal_of`) the value at the
start of the hash's range of positions.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from collections.abc import Callable
from typing import Any

import torch

M32 = 0xFFFFFFFF
# 2**32 / golden ratio: spaces the salts of axes and of draws over the 32-bit range.
GOLDEN = 0x9E3779B9
# The multipliers of Wellons' lowbias32.
MIX_A, MIX_B = 0x21F0AAAD, 0xD35A2D97
# A second multiplier: 16 more bits of an element's position inside its normal-table interval.
REMIX = 0x2C1B3C6D
# The normal table has 2**TABLE_BITS intervals, picked by the hash's high bits.
TABLE_BITS = 16
LOW_BITS = 0xFFFF
INV32 = 2.0**-32
# Each interval's 2**32 positions fall into 2**RANGE_BITS ranges, picked by the top bits of the
# position, which are the hash's bits just below the interval's (`range_normal_of`, and the
# tables of `kfuzz.cases.materialise.rounded`). Each bit about halves the elements whose range
# straddles a rounding boundary (two: 4.1% -> 1.2% for BF16, 22% -> 7.3% for FP16) and doubles
# the rounded tables (4 x 64K int16 = 512 KiB; a larger one gathers slower than the float64 path
# it saves, measured at 24K and 196K elements).
RANGE_BITS = 2
RANGE_SHIFT = 32 - TABLE_BITS - RANGE_BITS
# The first materialisation version whose FP32 normals are computed in float32 arithmetic
# (`normal32_of`), and the first whose BF16 and FP16 normals take their range's value
# (`range_normal_of`); a field follows the rules of the version it is given.
FLOAT32_NORMALS = 4
RANGED_NORMALS = 5

Convert = Callable[[Any], Any] | None


def lowbias32(x: Any, wrap: bool = True) -> Any:
    """Wellons' lowbias32 32-bit integer hash of `x` (values in [0, 2**32)): of a Python int,
    or, in place, of every element of an int64 tensor or a uint32 array. `wrap`: mask each
    product back to 32 bits (False only for a uint32 array, whose products wrap by
    themselves). Returns the hash (`x` itself for a tensor or an array)."""
    x ^= x >> 16
    x *= MIX_A
    if wrap:
        x &= M32
    x ^= x >> 15
    x *= MIX_B
    if wrap:
        x &= M32
    x ^= x >> 15
    return x


def mix(x: int) -> int:
    """`lowbias32` of the low 32 bits of a Python int."""
    return lowbias32(x & M32)


def axis_salt(axis: int) -> int:
    """The constant added to the coordinates of axis number `axis` before they are hashed."""
    return mix((axis + 1) * GOLDEN)


def draw_key(key: int, draw: int) -> int:
    """The constant xored into every coordinate hash of a field with key `key` for draw
    number `draw`; the element's bits are `lowbias32` of the result."""
    return key ^ lowbias32((key + (draw + 1) * GOLDEN) & M32)  # mix(), one call less


_BLAKE2B_4 = hashlib.blake2b(digest_size=4)


def key_of(*parts: int | str) -> int:
    """A 32-bit key from ints and strings (stable across processes and platforms)."""
    h = _BLAKE2B_4.copy()  # a copy costs less than a hash object made with parameters
    h.update(repr(parts).encode())
    return int.from_bytes(h.digest(), "little")


def uniform_of(h: Any, f64: Convert) -> Any:
    """float64 in (0, 1) from 32-bit hashes: (h + 0.5) / 2**32, exact."""
    x = h if f64 is None else f64(h)
    x += 0.5
    x *= INV32
    return x


def signs_of(h: Any, f64: Convert) -> Any:
    """float64 +1 or -1 from 32-bit hashes (their lowest bit)."""
    x = h & 1 if f64 is None else f64(h & 1)
    x *= 2.0
    x -= 1.0
    return x


def below_of(h: Any, n: int) -> Any:
    """Integers in [0, n) from 32-bit hashes, by modulo (n < 1 counts as 1)."""
    return h % max(int(n), 1)


def normal_of(h: Any, f64: Convert, table: Any, wrap: bool = True) -> Any:
    """float64 standard normals (truncated at +-4.33) from 32-bit hashes, by linear
    interpolation in the table of quantiles `normal_table` gives (read as `low, slope =
    table[index]`, see the module docstring): the high 16 bits of a hash pick the interval,
    its low 16 bits and 16 more from a cheap remix of it give 32 bits of position inside it.
    `wrap` as in `lowbias32`."""
    index = h >> TABLE_BITS
    rest = h * REMIX
    if wrap:
        rest &= M32
    rest >>= 16
    # The 32 bits of position as one integer, then one exact conversion: the same value as
    # (low 16 bits) * 65536.0 + (remix >> 16) in float64, where every step is exact too.
    position = h & LOW_BITS
    position <<= 16
    position |= rest
    # The slope is stored times 2**-32, so the product is slope * (position / 2**32) rounded
    # once (a power of two scales a float64 exactly).
    low, slope = table[index]
    x = slope * (position if f64 is None else f64(position))
    x += low
    return x


def range_normal_of(h: Any, f64: Convert, table: Any) -> Any:
    """Version 5's BF16 and FP16 normals, in float64 before they are scaled and rounded: the
    value `normal_of` gives at the first position of the hash's range, the range being the top
    RANGE_BITS bits of the position (the hash's bits below its interval's), so that every
    element of one range of one interval has one value. `kfuzz.cases.materialise.rounded`
    looks the rounded values up from the hash's top TABLE_BITS + RANGE_BITS bits; this is the
    arithmetic they come from (`f64` and `table` as in `normal_of`)."""
    index = h >> TABLE_BITS
    position = h >> RANGE_SHIFT
    position &= (1 << RANGE_BITS) - 1
    position <<= 32 - RANGE_BITS
    low, slope = table[index]
    x = slope * (position if f64 is None else f64(position))
    x += low
    return x


def normal32_of(h: Any, f32: Convert, table: Any, scale: float = 1.0) -> Any:
    """Version 4's FP32 standard normals (truncated at +-4.33) times `scale` from 32-bit
    hashes, in float32 arithmetic: the high 16 bits of a hash pick the interval of the table
    `normal32_table` gives (read as `normal_of` reads its table), its low 16 bits the position
    inside it; the value is low + slope * position, times `scale` rounded to float32 (skipped
    for 1), each operation rounded to float32. `f32`: an exact conversion of integers below
    2**16 to float32, into an array or tensor the result is then computed in (None for Python
    ints: the arithmetic then rounds each float64 step with `round32`, which gives the float32
    operation's result)."""
    index = h >> TABLE_BITS
    position = h & LOW_BITS
    low, slope = table[index]
    if f32 is None:
        x = round32(round32(slope * position) + low)
        return x if scale == 1.0 else round32(x * round32(scale))
    x = f32(position)  # a new array (or one the caller gives), updated in place
    x *= slope
    x += low
    if scale != 1.0:
        x *= round32(scale)  # a float32 value: a float32 operand multiplies by it exactly
    return x


_FLOAT32 = struct.Struct("f")


def round32(x: float) -> float:
    """The Python float `x` rounded to the nearest float32 value (ties to even; past float32's
    range an infinity, as a float32 operation gives). A sum, difference or product of two
    float32 values computed in float64 and rounded by this is the float32 operation's result:
    float64 has more than twice float32's precision, so the double rounding is innocuous."""
    try:
        return float(_FLOAT32.unpack(_FLOAT32.pack(x))[0])
    except OverflowError:  # struct refuses what rounds past float32's largest value
        return math.copysign(math.inf, x)


@functools.cache
def normal_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Normal quantiles at (i + 0.5) / 65537 for i < 65536, and the slope to the next one
    times 2**-32 (the scale of a position, see `normal_of`): float64 CPU tensors, computed
    once; each field copies them into its own form, so the table is the same data on every
    device."""
    n = 1 << TABLE_BITS
    p = (torch.arange(n + 1, dtype=torch.float64) + 0.5) / (n + 1)
    q = torch.special.ndtri(p)
    return q[:-1].contiguous(), ((q[1:] - q[:-1]) * INV32).contiguous()


@functools.cache
def normal32_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Version 4's table (see `normal32_of`): the quantiles of `normal_table` and the slope to
    the next one over 2**16 positions, each rounded to float32 (CPU tensors, computed once)."""
    low, slope = normal_table()
    return low.float(), (slope * 2.0**16).float()
