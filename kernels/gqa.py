"""Grouped-query attention in torch: query heads in groups of G sharing one key/value head.

Both kernels take q [B, Hq, Lq, D] and k, v [B, Hkv, Lk, D] with Hq = Hkv * G and Lq <= Lk,
the queries being the last Lq of the Lk positions (a KV cache of Lk - Lq keys, then the new
ones); with `causal` query i attends keys j <= i + Lk - Lq, the bottom-right alignment of ONNX
Runtime's GroupQueryAttention (`torch.nn.attention.bias.causal_lower_right`; top-left when
Lq = Lk).

- `sdpa_gqa`: `F.scaled_dot_product_attention(..., enable_gqa=True)`, the backend torch picks.
- `repeat_kv`: each key/value head repeated G times (`repeat_interleave` on the head axis, what
  Hugging Face's `repeat_kv` does), then plain multi-head SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right


def _mask(q: torch.Tensor, k: torch.Tensor, causal: bool) -> object:
    return causal_lower_right(q.shape[-2], k.shape[-2]) if causal else None


def sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
             scale: float) -> torch.Tensor:
    """Grouped-query attention by torch's SDPA with `enable_gqa=True`.

    Takes: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], one device and floating dtype, Hq a
    multiple of Hkv; causal (bottom-right aligned); scale.
    Returns: [B, Hq, Lq, D] in q's dtype. Raises: RuntimeError from torch for shapes it refuses.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_mask(q, k, causal), scale=scale,
                                          enable_gqa=True)


def repeat_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
              scale: float) -> torch.Tensor:
    """Grouped-query attention with the key/value heads repeated to the query heads.

    Takes, returns and raises as `sdpa_gqa`.
    """
    group = q.shape[1] // k.shape[1]
    keys, vals = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, keys, vals, attn_mask=_mask(q, k, causal),
                                          scale=scale)
