"""Emulation of the DeepSeek-V4 decode query path: per-head RMSNorm, then RoPE.

The precision fault this models is the inverse square root: PR #361 found the
backend's ``rsqrt`` was not numerically ``1 / sqrt`` and the exact BF16
mismatch of q jumped from ~0.003% to ~21%. The inverse root is therefore
selectable, including a model of a low-precision hardware unit.
"""

from __future__ import annotations

import torch
from torch import Tensor

INV_ROOTS = ("recip_sqrt", "torch_rsqrt", "rsqrt_hw")

# Fast inverse square root seed constant (Quake III); with one Newton step it
# is a plausible stand-in for a hardware rsqrt good to ~11 bits.
_RSQRT_MAGIC = 0x5F3759DF


def check_inv_root(name: str) -> None:
    """Validate an inverse-root variant name.

    Takes: ``name``, the variant to check.
    Returns: None.
    Raises: ValueError unless ``name`` is one of ``INV_ROOTS``.
    """
    if name not in INV_ROOTS:
        raise ValueError(f"unknown inv_root {name!r}; valid choices: {', '.join(INV_ROOTS)}")


def rsqrt_hw(x: Tensor) -> Tensor:
    """Model of a low-precision hardware rsqrt: bit-trick seed plus one Newton step.

    This is a MODEL of a low-precision hardware inverse-square-root unit, not
    the real NPU instruction: the seed ``0x5f3759df - (bits >> 1)`` on the
    float32 bits, then one Newton step ``y * (1.5 - 0.5 * x * y * y)`` in
    float32. Its error is what matters. Measured max relative error against
    float64 ``1 / sqrt(x)``: 1.7523e-3 over 1,000,000 log-spaced float32 x in
    [1e-6, 1e6] (``torch.logspace(-6, 6, 10**6, dtype=torch.float64)`` cast
    to float32; mean 9.3e-4), and 1.7523e-3 over every float32 in [1, 4)
    (the error repeats with period two binades, so that sweep is exhaustive
    for normal inputs). For comparison ``torch.rsqrt`` gives 8.9e-8 and
    ``1 / sqrt`` 1.2e-7 on the same sweep. Error near 1e-3 is what turns a
    BF16 RMSNorm output into tens of percent exact mismatches.

    Takes: ``x``, a float32 tensor of positive finite values.
    Returns: float32 tensor approximating ``x ** -0.5``. Zero, negative,
    subnormal-heavy or non-finite inputs give meaningless values, as on a
    hardware unit without special-case handling.
    Raises: TypeError if ``x`` is not float32.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"rsqrt_hw expects a float32 tensor, got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    y = (_RSQRT_MAGIC - (bits >> 1)).view(torch.float32)
    return y * (1.5 - 0.5 * x * y * y)


def inverse_root(x: Tensor, name: str) -> Tensor:
    """Compute ``x ** -0.5`` in float32 with the named variant.

    Takes: ``x``, a float32 tensor; ``name``, one of ``INV_ROOTS``:
    ``"recip_sqrt"`` (``1 / torch.sqrt(x)``, two correctly rounded ops),
    ``"torch_rsqrt"`` (``torch.rsqrt``) or ``"rsqrt_hw"`` (see ``rsqrt_hw``).
    Returns: float32 tensor of the same shape.
    Raises: ValueError for an unknown ``name``.
    """
    check_inv_root(name)
    if name == "recip_sqrt":
        return 1.0 / torch.sqrt(x)
    if name == "torch_rsqrt":
        return torch.rsqrt(x)
    return rsqrt_hw(x)


def check_rope_dim(rope_dim: int, d: int) -> None:
    """Validate the RoPE width against the head dimension.

    Takes: ``rope_dim``, rotated dims at the end of each head; ``d``, head dim.
    Returns: None.
    Raises: ValueError unless ``rope_dim`` is an even int in ``[0, d]``.
    """
    if isinstance(rope_dim, bool) or not isinstance(rope_dim, int) or rope_dim % 2 or not 0 <= rope_dim <= d:
        raise ValueError(f"rope_dim must be an even int in [0, {d}], got {rope_dim!r}")


def q_norm_rope(
    q: Tensor,
    positions: Tensor,
    *,
    rope_dim: int = 64,
    eps: float = 1e-6,
    inv_root: str = "recip_sqrt",
    base: float = 10000.0,
) -> Tensor:
    """Per-head RMSNorm (no weight) followed by interleaved RoPE on the tail dims.

    Takes: ``q`` [T, H, D] float32 projection output; ``positions`` [T]
    integer token positions; ``rope_dim``, how many trailing dims of D are
    rotated as (even, odd) pairs; ``eps`` added to the mean square;
    ``inv_root``, one of ``INV_ROOTS``; ``base``, the RoPE frequency base.
    Computation runs on ``q``'s device.
    Returns: [T, H, D] bfloat16. The normalised value is rounded to bfloat16
    before RoPE and each rotated value is rounded again, as the kernel does.
    Raises: ValueError for a bad ``rope_dim``, ``inv_root`` or input shape.
    """
    check_inv_root(inv_root)
    if q.dim() != 3:
        raise ValueError(f"q must be [T, H, D], got shape {tuple(q.shape)}")
    t, _, d = q.shape
    check_rope_dim(rope_dim, d)
    if positions.shape != (t,):
        raise ValueError(f"positions must be [{t}], got shape {tuple(positions.shape)}")

    qf = q.float()
    ms = (qf * qf).mean(dim=-1, keepdim=True)
    y = (qf * inverse_root(ms + eps, inv_root)).to(torch.bfloat16)
    if rope_dim == 0:
        return y

    # The cos/sin tables are built on the host in float64 and handed to the kernel as FP32,
    # as production decode kernels receive them: FP32 angles would be off by ~4e-3 rad at
    # position 6e4, a table fault rather than a kernel one.
    exponent = torch.arange(0, rope_dim, 2, dtype=torch.float64, device=q.device) / rope_dim
    angle = positions.to(device=q.device, dtype=torch.float64)[:, None] * base ** -exponent
    cos = torch.cos(angle).float()[:, None, :]  # [T, 1, rope_dim / 2]
    sin = torch.sin(angle).float()[:, None, :]

    rot = y[..., d - rope_dim :]
    e = rot[..., 0::2].float()
    o = rot[..., 1::2].float()
    e_out = (e * cos - o * sin).to(torch.bfloat16)
    o_out = (e * sin + o * cos).to(torch.bfloat16)
    rotated = torch.stack((e_out, o_out), dim=-1).flatten(-2)
    return torch.cat((y[..., : d - rope_dim], rotated), dim=-1)
