"""Diagnostics for sparse attention cases: where the exp weights sit on a BF16 rounding tie.

A weight whose FP32 bits end in exactly 0x8000 lies halfway between two BF16 values, so
round-half-even and round-half-away give different weights; everywhere else they agree. This
recomputes the kernel's per-tile exp weights (same operations, same order) to list them.
"""

from __future__ import annotations

import torch
from kfuzz.kernels.deepseek_v4.sparse_attn import check_sparse_attn_inputs, check_tile
from torch import Tensor


def exp_weight_ties(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                    tile: int = 64) -> list[dict[str, float | int]]:
    """The exp weights of `kfuzz.kernels.deepseek_v4.sparse_attn` (with this `tile`) that are BF16
    rounding ties. Takes the kernel's inputs; returns one dict per tie: token, head, slot (the
    index position), row (the KV row), weight (the FP32 value) and its two BF16 neighbours.
    Raises ValueError for bad inputs, as the kernel does."""
    check_tile(tile)
    check_sparse_attn_inputs(q, kv, indices, sink)
    t, h, d = q.shape
    n, k = kv.shape[0], indices.shape[1]
    idx = indices.long()
    valid = (idx >= 0) & (idx < n)
    rows = kv[torch.where(valid, idx, torch.zeros_like(idx))].float()
    rows = torch.where(valid[..., None], rows, torch.zeros_like(rows))
    ties = []
    for start in range(0, k, tile):
        tile_valid = valid[:, start : start + tile]
        s = torch.bmm(q.float(), rows[:, start : start + tile].transpose(1, 2)) * d**-0.5
        s = s.masked_fill(~tile_valid[:, None, :], float("-inf"))
        m_j = s.amax(dim=-1, keepdim=True)
        live = tile_valid.any(dim=1).view(t, 1, 1)
        m_j = torch.where(live, m_j, torch.zeros_like(m_j))
        w = torch.exp(s - m_j)
        bits = w.view(torch.int32)
        hit = ((bits & 0xFFFF) == 0x8000) & tile_valid[:, None, :]
        for tok, head, j in hit.nonzero().tolist():
            value = w[tok, head, j]
            below = (bits[tok, head, j] & ~0xFFFF).view(torch.float32).item()
            above = ((bits[tok, head, j] & ~0xFFFF) + 0x10000).view(torch.float32).item()
            ties.append({"token": tok, "head": head, "slot": start + j,
                         "row": int(idx[tok, start + j]), "weight": value.item(),
                         "bf16_below": below, "bf16_above": above})
    return ties
