"""torch's scaled_dot_product_attention, one backend at a time.

`sdpa(q, k, v, causal=, scale=, backend=)` runs F.scaled_dot_product_attention inside
`torch.nn.attention.sdpa_kernel(<backend>)`, so that the backend under test is the one that
runs (without the context manager torch picks one itself). Backends: "math" (the reference
composite, CPU and CUDA), "flash" (FlashAttention-2 on CUDA; a CPU flash kernel on the CPU),
"efficient" (memory-efficient attention, CUDA only), "cudnn" (cuDNN attention, CUDA only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kfuzz.kernels.availability import Unavailable, common_device
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS: dict[str, SDPBackend] = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
CPU_BACKENDS = ("math", "flash")


def sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float, backend: str
) -> torch.Tensor:
    """Attention softmax(q k^T * scale [+ causal mask]) v with one SDPA backend.

    Takes: q [B, H, Lq, D], k and v [B, H, Lk, D] on one device, one floating dtype; causal
    (top-left aligned, torch's is_causal); scale; backend, a key of BACKENDS.
    Returns: [B, H, Lq, D] in q's dtype, on q's device.
    Raises: ValueError for an unknown backend; Unavailable when the backend has no kernel for
    this device type at all (efficient or cudnn on a CPU); RuntimeError from torch when the
    backend refuses this particular case.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown SDPA backend {backend!r}; choose from {', '.join(BACKENDS)}")
    device = common_device((q, k, v))
    if device.type != "cuda" and backend not in CPU_BACKENDS:
        raise Unavailable(f"SDPA backend {backend!r} runs only on CUDA, not on {device.type}; "
                          f"on {device.type} use one of {', '.join(CPU_BACKENDS)}")
    with sdpa_kernel(BACKENDS[backend]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
