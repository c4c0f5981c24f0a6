"""What an output dtype allows: the default allclose bounds per dtype (`TOLERANCES`) and its
spacing, the unit in the last place (`ulp_size`).

The comparator resolves its defaults from this table and the comparison measures ULP
distances with this spacing; both import it, and it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    """The default allclose bounds for a floating dtype.

    Args:
        dtype: the output dtype.

    Returns:
        Its TOLERANCES row, float64's for a dtype missing from the table.
    """
    return TOLERANCES.get(dtype, TOLERANCES[torch.float64])


def ulp_size(magnitude: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of a floating `dtype` at each magnitude.

    Args:
        magnitude: float64 magnitudes (|e|, finite and >= 0); not modified.
        dtype: a floating dtype.

    Returns:
        A new float64 tensor: eps(dtype) * 2**floor(log2(magnitude)), the subnormal step
        below the normal range. Always a power of two, so multiplying or dividing by it is
        exact.
    """
    info = torch.finfo(dtype)
    spacing = magnitude.clamp_min(info.tiny)
    spacing.view(torch.int64).bitwise_and_(_F64_EXPONENT_MASK)
    return spacing.mul_(info.eps)
