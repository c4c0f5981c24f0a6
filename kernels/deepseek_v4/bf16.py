"""Float32 -> BFloat16 rounding with a selectable rounding mode.

torch's ``.to(torch.bfloat16)`` rounds to nearest, ties to even. Ascend NPUs
round ties away from zero, and the Triton CPU interpreter truncates; a kernel
emulation has to be able to reproduce each of them bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

ROUNDING_MODES = ("half_even", "half_away", "truncate")

# Masks on the int32 view of float32 bits. Python ints outside the int32 range
# cannot be used directly, so the sign and high-half masks are written as
# their two's-complement int32 values.
_MAGNITUDE_MASK = 0x7FFFFFFF
_SIGN_MASK = -0x80000000  # 0x80000000
_HIGH_HALF_MASK = -0x10000  # 0xFFFF0000
_HALF_BF16_ULP = 0x8000


def check_rounding(mode: str) -> None:
    """Validate a rounding mode name.

    Takes: ``mode``, the name to check.
    Returns: None.
    Raises: ValueError if ``mode`` is not one of ``ROUNDING_MODES``.
    """
    if mode not in ROUNDING_MODES:
        raise ValueError(f"unknown bf16 rounding mode {mode!r}; valid choices: {', '.join(ROUNDING_MODES)}")


def round_to_bf16(x: Tensor, mode: str = "half_even") -> Tensor:
    """Round a float32 tensor to bfloat16 with the given rounding mode.

    Takes: ``x``, a float32 tensor on any device; ``mode``, one of
    ``"half_even"`` (torch's cast), ``"half_away"`` (nearest, ties away from
    zero, as the NPU rounds) or ``"truncate"`` (toward zero).
    Returns: a bfloat16 tensor of the same shape and device. NaN stays NaN;
    finite values that round past the largest bfloat16 become +-inf under the
    two round-to-nearest modes.
    Raises: ValueError for an unknown ``mode``; TypeError if ``x`` is not
    float32.
    """
    check_rounding(mode)
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_bf16 expects a float32 tensor, got {x.dtype}")
    if mode == "half_even":
        return x.to(torch.bfloat16)

    bits = x.contiguous().view(torch.int32)
    sign = bits & _SIGN_MASK
    magnitude = bits & _MAGNITUDE_MASK
    nan = torch.isnan(x)
    # Zero the NaN magnitudes before adding so the int32 add cannot overflow;
    # NaNs are put back at the end, since truncating a NaN whose payload sits
    # in the low 16 bits would turn it into inf.
    magnitude = torch.where(nan, torch.zeros_like(magnitude), magnitude)
    if mode == "half_away":
        # Adding half a bf16 ulp to the magnitude and truncating rounds ties
        # up in magnitude, i.e. away from zero; a carry into the exponent is
        # the correct next binade (or inf past the largest finite value).
        magnitude = magnitude + _HALF_BF16_ULP
    rounded = (sign | (magnitude & _HIGH_HALF_MASK)).view(torch.float32)
    rounded = torch.where(nan, x, rounded)
    # The low 16 bits are zero now, so this cast is exact whatever its mode.
    return rounded.to(torch.bfloat16)
