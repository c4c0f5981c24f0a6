"""References for scaled dot-product attention, and FlashAttention's acceptance rule.

- `sdpa_fp64`: the exact math in float64 on the inputs' values.
- `sdpa_lowp`: a plain implementation in the inputs' dtype, as FlashAttention's tests write
  their low-precision reference (`attention_ref(upcast=False)`): q scaled, q k^T, softmax and
  the product with v each rounded to the input dtype.
- `gqa_fp64`: grouped-query attention (key/value heads shared by groups of query heads,
  causal masks bottom-right aligned) in float64, the reference of `ops.gqa`.
- `fa_rule_ratio`: FlashAttention's rule. Its tests accept a kernel when
  `max|out - ref| <= 2 * max|out_lowp - ref| + fwd_atol`, with `fwd_atol =
  2 * max|(ref + 0.3 - 0.3) - ref|` in the low dtype (the rounding noise near the outputs'
  magnitude). The ratio per element, |out - ref| / (factor * max|out_lowp - ref| + floor), is
  above 1 exactly where an element breaks the rule, so "no element above 1" is their test and
  the fraction above 1 is a mismatch ratio.
"""

from __future__ import annotations

import math

import torch


def _causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    # torch's is_causal: top-left aligned, query i sees keys 0..i.
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()


def sdpa_fp64(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float
) -> torch.Tensor:
    """Attention in float64.

    Takes: q [B, H, Lq, D], k and v [B, H, Lk, D], any floating dtype; causal; scale.
    Returns: [B, H, Lq, D] float64. Raises: nothing beyond torch's shape errors.
    """
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(~_causal_mask(s.shape[-2], s.shape[-1], s.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.double()


def sdpa_lowp(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float
) -> torch.Tensor:
    """Attention in the inputs' dtype, each step rounded to it (FlashAttention's `out_pt`).

    Takes: as `sdpa_fp64`. Returns: [B, H, Lq, D] in q's dtype. Raises: as `sdpa_fp64`.
    """
    s = (q * scale) @ k.transpose(-1, -2)
    if causal:
        s = s.masked_fill(~_causal_mask(s.shape[-2], s.shape[-1], s.device), float("-inf"))
    return torch.softmax(s, dim=-1).to(v.dtype) @ v


def fa_rule_ratio(
    actual: torch.Tensor, reference: torch.Tensor, baseline: torch.Tensor, *, factor: float = 2.0
) -> torch.Tensor:
    """Each element's error as a fraction of what FlashAttention's rule allows.

    Takes: actual, the kernel's output (low dtype); reference, the float64 result; baseline,
    the plain low-precision result (`sdpa_lowp`); factor, how many times the baseline's worst
    error the kernel may reach (FlashAttention's tests use 2). All on one device, one shape.
    Returns: float64 tensor |actual - reference| / (factor * max|baseline - reference| + floor),
    floor = 2 * max|(r + 0.3 - 0.3) - r| for r = reference rounded to actual's dtype, computed
    in that dtype. Above 1 breaks the rule. Non-finite actual values give inf (or NaN), which
    the comparator counts as mismatches.
    Raises: ValueError when the shapes differ or factor is negative.
    """
    if not actual.shape == reference.shape == baseline.shape:
        raise ValueError(f"shapes differ: actual {list(actual.shape)}, reference "
                         f"{list(reference.shape)}, baseline {list(baseline.shape)}")
    if factor < 0:
        raise ValueError(f"factor must be >= 0, got {factor!r}")
    ref = reference.double()
    rounded = reference.to(actual.dtype)
    floor = 2 * float(((rounded + 0.3 - 0.3) - rounded).abs().max()) if rounded.numel() else 0.0
    # A non-finite baseline element is an unbounded baseline error: the rule then allows any
    # finite kernel output, as FlashAttention's inequality would with an inf on its right.
    baseline_diff = (baseline.double() - ref).abs().nan_to_num(nan=math.inf)
    baseline_error = float(baseline_diff.max()) if ref.numel() else 0.0
    allowed = factor * baseline_error + floor
    error = (actual.double() - ref).abs()
    if allowed == 0:
        # Exact reference and baseline: any error at all breaks the rule.
        return torch.where(error > 0, torch.full_like(error, float("inf")), error)
    return error / allowed


def gqa_fp64(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float
) -> torch.Tensor:
    """Grouped-query attention in float64, as ONNX Runtime's GroupQueryAttention defines it.

    Query head h attends with key/value head h // G, G = Hq / Hkv. The Lq queries are the last
    Lq of the Lk positions (a past of Lk - Lq keys, then the new ones), so with `causal` query i
    attends keys j <= i + Lk - Lq (bottom-right aligned; top-left when Lq = Lk).

    Takes: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], any floating dtype, Hq a multiple of Hkv
    and Lq <= Lk; causal; scale.
    Returns: [B, Hq, Lq, D] float64.
    Raises: ValueError when Hq is not a multiple of Hkv or Lq > Lk.
    """
    heads, kv_heads = q.shape[1], k.shape[1]
    q_len, k_len = q.shape[2], k.shape[2]
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"query heads {heads} are not a multiple of key/value heads {kv_heads}")
    if q_len > k_len:
        raise ValueError(f"{q_len} queries but {k_len} keys; the queries are the last Lq of "
                         "the Lk positions, so Lq <= Lk")
    group = torch.arange(heads, device=q.device) // (heads // kv_heads)
    keys, vals = k.double()[:, group], v.double()[:, group]
    s = (q.double() @ keys.transpose(-1, -2)) * scale
    if causal:
        rows = torch.arange(q_len, device=q.device)[:, None]
        cols = torch.arange(k_len, device=q.device)[None, :]
        s = s.masked_fill(cols > rows + (k_len - q_len), float("-inf"))
    return torch.softmax(s, dim=-1) @ vals
