"""Golden references for DeepSeek-V4 sparse decode attention.

Three goldens, each written without reusing the kernel's code path:

* ``sparse_attn_fp64``: exact float64 softmax with the sink, built from
  per-token multiplicities of the distinct rows used rather than a gather.
* ``sparse_attn_full_fp32``: the golden as it was before PR #361, one FP32
  softmax over all gathered rows; a faithful tiled kernel is expected to
  differ from it in about a third of the BF16 outputs.
* ``sparse_attn_tiled``: the golden after PR #361, mirroring the kernel's
  tiling and BF16 cast of the exp weights, so that a correct kernel matches
  it bit for bit. It shares only the BF16 rounding helper with the kernel.
"""

from __future__ import annotations

import torch
from kfuzz.kernels.deepseek_v4.bf16 import round_to_bf16
from torch import Tensor

_ROUNDINGS = ("half_even", "half_away")


def _valid_mask(indices: Tensor, n: int) -> Tensor:
    """Return the bool mask of index entries naming a row in ``[0, n)``."""
    return (indices >= 0) & (indices < n)


def sparse_attn_fp64(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor) -> Tensor:
    """Exact float64 sparse attention with a per-head sink logit.

    Every valid index entry counts once, duplicates included, so the softmax
    runs over the distinct rows used with their multiplicity as a weight:
    ``w_r = c_r exp(s_r - m) / (sum_r c_r exp(s_r - m) + exp(sink - m))``.

    Takes: ``q`` [T, H, D], ``kv`` [N, D], ``indices`` [T, K] (entries outside
    ``[0, N)`` skipped), ``sink`` [H]; any dtypes, all promoted to float64
    with no intermediate rounding; softmax scale ``D ** -0.5``.
    Returns: [T, H, D] float64. Tokens with no valid index give zeros.
    Raises: nothing beyond torch's own shape errors.
    """
    t, h, d = q.shape
    n = kv.shape[0]
    idx = indices.long()
    valid = _valid_mask(idx, n)
    used, slot = torch.unique(idx[valid], return_inverse=True)
    if used.numel() == 0:
        return torch.zeros((t, h, d), dtype=torch.float64, device=q.device)
    counts = torch.zeros((t, used.numel()), dtype=torch.float64, device=q.device)
    token = torch.arange(t, device=q.device)[:, None].expand_as(idx)[valid]
    counts.index_put_((token, slot), torch.ones_like(slot, dtype=torch.float64), accumulate=True)

    rows = kv.double()[used]  # [U, D]
    s = torch.einsum("thd,ud->thu", q.double(), rows) / d**0.5
    present = (counts > 0)[:, None, :]
    s = s.masked_fill(~present, float("-inf"))
    sink64 = sink.double()[None, :, None].expand(t, h, 1)
    # Shifting by max(scores, sink) keeps every exponent <= 0 and finite.
    shift = torch.maximum(s.amax(dim=-1, keepdim=True), sink64)
    weights = counts[:, None, :] * torch.exp(s - shift)
    denom = weights.sum(dim=-1, keepdim=True) + torch.exp(sink64 - shift)
    out = torch.einsum("thu,ud->thd", weights, rows) / denom
    has_row = valid.any(dim=1)[:, None, None]
    return torch.where(has_row, out, torch.zeros_like(out))


def sparse_attn_full_fp32(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor) -> Tensor:
    """Pre-fix golden: one FP32 softmax with the sink over all gathered rows.

    Takes: ``q`` [T, H, D] bfloat16, ``kv`` [N, D] bfloat16, ``indices`` [T, K]
    (entries outside ``[0, N)`` skipped), ``sink`` [H] float32.
    Returns: [T, H, D] bfloat16 (FP32 result cast with round-half-even).
    Tokens with no valid index give zeros.
    Raises: nothing beyond torch's own shape errors.
    """
    t, h, d = q.shape
    n = kv.shape[0]
    idx = indices.long()
    valid = _valid_mask(idx, n)
    if n == 0:
        return torch.zeros((t, h, d), dtype=torch.bfloat16, device=q.device)
    rows = kv[idx.clamp(0, n - 1)].float().masked_fill(~valid[..., None], 0.0)
    s = torch.einsum("thd,tkd->thk", q.float(), rows) * d**-0.5
    s = s.masked_fill(~valid[:, None, :], float("-inf"))
    # The sink is one more logit whose value row is zero.
    logits = torch.cat((s, sink.float()[None, :, None].expand(t, h, 1)), dim=-1)
    weights = torch.softmax(logits, dim=-1)[..., :-1]
    out = torch.einsum("thk,tkd->thd", weights, rows)
    has_row = valid.any(dim=1)[:, None, None]
    return torch.where(has_row, out, torch.zeros_like(out)).to(torch.bfloat16)


def sparse_attn_tiled(
    q: Tensor,
    kv: Tensor,
    indices: Tensor,
    sink: Tensor,
    *,
    tile: int = 64,
    rounding: str = "half_even",
) -> Tensor:
    """Post-fix golden: tiled online softmax with BF16-rounded exp weights.

    Walks the index positions in tiles of ``tile`` (padding and out-of-range
    entries keep their positions and are masked), rounds each tile's
    ``exp(s - m_j)`` to bfloat16 with ``rounding``, merges the tiles in order
    and divides by ``l + exp(sink - m)``. Arithmetic is FP32 in the kernel's
    operation order and its per-tile products use the same batched matmul
    shapes, so a correct kernel matches it bit for bit (a per-token matmul
    would not: CPU GEMM blocking, and the GEMV path at tile = 1, reorder the
    FP32 accumulation; a per-token version of this golden left 8e-5 of BF16
    outputs differing in their low bits over 60 random shapes on 2 threads).

    Takes: ``q`` [T, H, D] bfloat16, ``kv`` [N, D] bfloat16, ``indices``
    [T, K], ``sink`` [H] float32; ``tile`` > 0; ``rounding`` one of
    ``"half_even"`` or ``"half_away"``.
    Returns: [T, H, D] bfloat16; zeros for tokens with no valid index.
    Raises: ValueError for a bad ``tile`` or ``rounding``.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0:
        raise ValueError(f"tile must be a positive int, got {tile!r}")
    if rounding not in _ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; valid choices: {', '.join(_ROUNDINGS)}")
    t, h, d = q.shape
    n = kv.shape[0]
    qf = q.float()
    flat_kv = kv.float()
    neg_inf = float("-inf")
    if n == 0 or indices.shape[1] == 0:
        return torch.zeros((t, h, d), dtype=torch.bfloat16, device=q.device)
    # State of an empty softmax: merging a tile into it yields that tile's
    # (m_j, l_j, o_j) exactly, since exp(-inf) = 0 and 0 + x = x.
    m = torch.full((t, h, 1), neg_inf, device=q.device)
    l_sum = torch.zeros((t, h, 1), device=q.device)
    o = torch.zeros((t, h, d), device=q.device)
    seen = torch.zeros((t,), dtype=torch.bool, device=q.device)

    for pos in indices.long().split(tile, dim=1):
        ok = (pos >= 0) & (pos < n)  # [T, k]
        live = ok.any(dim=1)
        seen |= live
        rows = flat_kv.index_select(0, pos.clamp(0, n - 1).flatten())
        rows = rows.view(t, -1, d).masked_fill(~ok[..., None], 0.0)
        s = torch.bmm(qf, rows.transpose(1, 2)) * d**-0.5
        s = s.masked_fill(~ok[:, None, :], neg_inf)
        # Tokens with no valid entry here shift by 0 so exp() stays NaN-free;
        # their tile is dropped below.
        m_j = s.amax(dim=-1, keepdim=True).masked_fill(~live[:, None, None], 0.0)
        p = round_to_bf16(torch.exp(s - m_j), rounding).float()
        l_j = p.sum(dim=-1, keepdim=True)
        o_j = torch.bmm(p, rows)

        m_new = torch.maximum(m, m_j)
        a = torch.exp(m - m_new)
        b = torch.exp(m_j - m_new)
        upd = live[:, None, None]
        l_sum = torch.where(upd, a * l_sum + b * l_j, l_sum)
        o = torch.where(upd, a * o + b * o_j, o)
        m = torch.where(upd, m_new, m)

    out = o / (l_sum + torch.exp(sink.float()[None, :, None] - m))
    return out.masked_fill(~seen[:, None, None], 0.0).to(torch.bfloat16)
