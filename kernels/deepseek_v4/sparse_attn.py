"""Emulation of the DeepSeek-V4 sparse decode attention kernel's numerics.

The NPU kernel gathers the KV rows a token's index list names, walks them in
tiles with an online softmax, and rounds each tile's exp weights to bfloat16
before the PV product. Those casts and the tile order are what make it differ
from a single FP32 softmax, so this emulation reproduces them exactly while
staying vectorised over tokens and heads (only the tile loop is in Python).
"""

from __future__ import annotations

import torch
from kfuzz.kernels.deepseek_v4.bf16 import round_to_bf16
from torch import Tensor

# The exp-weight roundings a sparse attention kernel is modelled with.
ROUNDINGS = ("half_even", "half_away")


def check_tile(tile: int) -> None:
    """Validate a tile size.

    Takes: ``tile``, the number of index positions per tile.
    Returns: None.
    Raises: ValueError unless ``tile`` is a positive int (bools are refused).
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0:
        raise ValueError(f"tile must be a positive int, got {tile!r}")


def check_kernel_rounding(rounding: str) -> None:
    """Validate the exp-weight rounding mode of sparse attention.

    Takes: ``rounding``, the name to check.
    Returns: None.
    Raises: ValueError unless ``rounding`` is one of ``ROUNDINGS``.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; valid choices: {', '.join(ROUNDINGS)}")


def check_sparse_attn_inputs(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor) -> None:
    """Validate the shapes of sparse attention inputs.

    Takes: ``q`` [T, H, D], ``kv`` [N, D], ``indices`` [T, K] (integer),
    ``sink`` [H].
    Returns: None.
    Raises: ValueError naming the first inconsistent shape or dtype.
    """
    if q.dim() != 3:
        raise ValueError(f"q must be [T, H, D], got shape {tuple(q.shape)}")
    t, h, d = q.shape
    if kv.dim() != 2 or kv.shape[1] != d:
        raise ValueError(f"kv must be [N, {d}], got shape {tuple(kv.shape)}")
    if indices.dim() != 2 or indices.shape[0] != t:
        raise ValueError(f"indices must be [{t}, K], got shape {tuple(indices.shape)}")
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
    if sink.shape != (h,):
        raise ValueError(f"sink must be [{h}], got shape {tuple(sink.shape)}")


def sparse_attn(
    q: Tensor,
    kv: Tensor,
    indices: Tensor,
    sink: Tensor,
    *,
    tile: int = 64,
    rounding: str = "half_even",
) -> Tensor:
    """Tiled online-softmax sparse attention with a per-head sink logit.

    Takes: ``q`` [T, H, D] bfloat16 queries; ``kv`` [N, D] bfloat16 rows, each
    gathered row used as both key and value; ``indices`` [T, K] int32/int64
    row ids, where entries outside ``[0, N)`` (such as -1 padding) are skipped;
    ``sink`` [H] float32 per-head sink logits; ``tile``, index positions per
    tile; ``rounding``, how the exp weights are rounded to bfloat16
    (``"half_even"`` as torch casts, ``"half_away"`` as the NPU rounds). All
    tensors must be on one device; the work runs there.
    Returns: [T, H, D] bfloat16. Tokens with no valid index give zeros.
    Raises: ValueError for a bad ``tile``, ``rounding`` or input shape.
    """
    check_tile(tile)
    check_kernel_rounding(rounding)
    check_sparse_attn_inputs(q, kv, indices, sink)
    t, h, d = q.shape
    n, k = kv.shape[0], indices.shape[1]
    scale = d**-0.5

    if n == 0:
        # Nothing can be gathered, so every token has no valid row.
        return torch.zeros((t, h, d), dtype=torch.bfloat16, device=q.device)
    idx = indices.long()
    valid = (idx >= 0) & (idx < n)
    # Invalid positions read row 0 and are then zeroed, so that non-finite
    # data in row 0 cannot leak into the masked products as 0 * inf.
    rows = kv[torch.where(valid, idx, torch.zeros_like(idx))].float()
    rows = torch.where(valid[..., None], rows, torch.zeros_like(rows))
    qf = q.float()
    sink_f = sink.float().view(1, h, 1)

    m = torch.full((t, h, 1), float("-inf"), dtype=torch.float32, device=q.device)
    l_sum = torch.zeros((t, h, 1), dtype=torch.float32, device=q.device)
    o = torch.zeros((t, h, d), dtype=torch.float32, device=q.device)
    started = torch.zeros((t, 1, 1), dtype=torch.bool, device=q.device)

    for start in range(0, k, tile):
        tile_valid = valid[:, start : start + tile]  # [T, k_j]
        tile_rows = rows[:, start : start + tile]  # [T, k_j, D]
        live = tile_valid.any(dim=1).view(t, 1, 1)
        s = torch.bmm(qf, tile_rows.transpose(1, 2)) * scale  # [T, H, k_j]
        s = s.masked_fill(~tile_valid[:, None, :], float("-inf"))
        m_j = s.amax(dim=-1, keepdim=True)
        # A token with no valid position here has m_j = -inf; shifting by 0
        # instead keeps exp() free of NaN, and ``live`` discards the tile.
        m_j = torch.where(live, m_j, torch.zeros_like(m_j))
        p = round_to_bf16(torch.exp(s - m_j), rounding).float()
        l_j = p.sum(dim=-1, keepdim=True)
        o_j = torch.bmm(p, tile_rows)

        m_new = torch.maximum(m, m_j)
        a = torch.exp(m - m_new)
        b = torch.exp(m_j - m_new)
        merged_l = a * l_sum + b * l_j
        merged_o = a * o + b * o_j
        # The first live tile initialises the state outright rather than
        # merging into (-inf, 0, 0), matching the NPU kernel's control flow.
        m = torch.where(live, torch.where(started, m_new, m_j), m)
        l_sum = torch.where(live, torch.where(started, merged_l, l_j), l_sum)
        o = torch.where(live, torch.where(started, merged_o, o_j), o)
        started = started | live

    out = o / (l_sum + torch.exp(sink_f - m))
    out = torch.where(started, out, torch.zeros_like(out))
    return out.to(torch.bfloat16)
