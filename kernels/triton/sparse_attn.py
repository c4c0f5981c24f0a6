"""Triton DeepSeek-V4 sparse decode attention: tiled online softmax over gathered KV rows.

Same numerics as `kfuzz.kernels.deepseek_v4.sparse_attn` (docs/case-study.md): per token, the rows named
by `indices[t]` (entries outside [0, N) skipped) serve as keys and values; tiles of `tile`
index positions; s = (q . kv) * D^-0.5 from BF16 operands with FP32 accumulation;
p = bf16(exp(s - m_j)); l_j = sum(p); o_j = p @ kv in FP32; tiles merged in order; out =
o / (l + exp(sink - m)) rounded to BF16; zeros for a token with no valid row.

One program handles one token and a block of heads (all heads in the interpreter). Rounding to
BF16 ("rounding" argument):
- "bits": round to nearest even by integer arithmetic on the FP32 bits, so that the kernel
  rounds the same way compiled and interpreted;
- "cast": Triton's `.to(tl.bfloat16)`, which rounds to nearest even when compiled and
  truncates in the CPU interpreter.
Products: on a GPU `tl.dot` takes BF16 operands (tensor cores); in the interpreter the
operands are FP32, because triton 3.9's interpreter multiplies BF16 operands of `tl.dot` as
their raw 16-bit patterns. Both give exact products of BF16 values.
"""

from __future__ import annotations

import torch
import triton.language as tl
from kfuzz.kernels.availability import common_device
from kfuzz.kernels.triton.launch import DualKernel, cdiv, interpreted, next_power_of_2

ROUNDINGS = {"bits": 0, "cast": 1}
# Heads per program on a GPU: the smallest M that tl.dot accepts, keeping o ([heads, D] FP32)
# in registers at D = 512.
GPU_HEADS = 16


def _sparse_attn_kernel(q_ptr, kv_ptr, idx_ptr, sink_ptr, out_ptr, H, D, N, K, TILE, scale,
                        BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
                        ROUNDING: tl.constexpr, BF16_DOT: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    dim = tl.arange(0, BLOCK_D)
    hd_mask = (head[:, None] < H) & (dim[None, :] < D)
    q = tl.load(q_ptr + (t * H + head[:, None]) * D + dim[None, :], mask=hd_mask, other=0.0)
    if not BF16_DOT:
        q = q.to(tl.float32)
    sink = tl.load(sink_ptr + head, mask=head < H, other=0.0).to(tl.float32)

    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_H], tl.float32)
    o = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    started = tl.full([], 0, tl.int1)
    lane = tl.arange(0, BLOCK_T)
    for start in range(0, K, TILE):
        pos = start + lane
        in_tile = (lane < TILE) & (pos < K)
        idx = tl.load(idx_ptr + t * K + pos, mask=in_tile, other=-1).to(tl.int64)
        ok = in_tile & (idx >= 0) & (idx < N)
        rows = tl.load(kv_ptr + idx[:, None] * D + dim[None, :],
                       mask=ok[:, None] & (dim[None, :] < D), other=0.0)
        if not BF16_DOT:
            rows = rows.to(tl.float32)
        if BF16_DOT:
            s = tl.dot(q, tl.trans(rows))
        else:
            s = tl.dot(q, tl.trans(rows), input_precision="ieee")
        s = s * scale
        s = tl.where(ok[None, :], s, float("-inf"))
        live = tl.max(ok.to(tl.int32), axis=0) > 0
        # A tile with no valid row shifts by 0 so that exp() stays NaN-free; it is dropped below.
        m_j = tl.where(live, tl.max(s, axis=1), 0.0)
        p = tl.exp(s - m_j[:, None])
        if ROUNDING == 0:
            bits = p.to(tl.int32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
            p = bits.to(tl.float32, bitcast=True)
        else:
            p = p.to(tl.bfloat16).to(tl.float32)
        l_j = tl.sum(p, axis=1)
        if BF16_DOT:
            o_j = tl.dot(p.to(tl.bfloat16), rows)  # exact: p holds BF16 values
        else:
            o_j = tl.dot(p, rows, input_precision="ieee")
        m_new = tl.maximum(m, m_j)
        a = tl.exp(m - m_new)
        b = tl.exp(m_j - m_new)
        merged_l = a * l_sum + b * l_j
        merged_o = a[:, None] * o + b[:, None] * o_j
        # The first live tile initialises the state outright, as the kernel being modelled does.
        m = tl.where(live, tl.where(started, m_new, m_j), m)
        l_sum = tl.where(live, tl.where(started, merged_l, l_j), l_sum)
        o = tl.where(live, tl.where(started, merged_o, o_j), o)
        started = started | live

    out = o / (l_sum + tl.exp(sink - m))[:, None]
    out = tl.where(started, out, 0.0)
    if ROUNDING == 0:
        bits = out.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        out = bits.to(tl.float32, bitcast=True)
    tl.store(out_ptr + (t * H + head[:, None]) * D + dim[None, :], out.to(tl.bfloat16), mask=hd_mask)


_KERNEL = DualKernel(_sparse_attn_kernel, do_not_specialize=["H", "D", "N", "K", "TILE"])


def sparse_attn(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sink: torch.Tensor,
    *,
    tile: int = 64,
    rounding: str = "bits",
) -> torch.Tensor:
    """Tiled online-softmax sparse attention with a per-head sink logit.

    Takes: q [T, H, D] bfloat16; kv [N, D] bfloat16 (each row is key and value); indices
    [T, K] integer row ids (entries outside [0, N) skipped); sink [H] float32; tile > 0 index
    positions per tile; rounding one of ROUNDINGS. All on one device: cuda runs compiled
    Triton, cpu the interpreter.
    Returns: [T, H, D] bfloat16; zeros for tokens with no valid index.
    Raises: ValueError for a bad tile, rounding or shape; Unavailable for a device Triton
    cannot run on.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0:
        raise ValueError(f"tile must be a positive int, got {tile!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose from {', '.join(ROUNDINGS)}")
    if q.dim() != 3 or kv.dim() != 2 or kv.shape[1] != q.shape[2] or indices.dim() != 2 \
            or indices.shape[0] != q.shape[0] or sink.shape != (q.shape[1],):
        raise ValueError(f"expected q [T, H, D], kv [N, D], indices [T, K], sink [H]; got "
                         f"{list(q.shape)}, {list(kv.shape)}, {list(indices.shape)}, {list(sink.shape)}")
    device = common_device((q, kv, indices, sink))
    t, h, d = q.shape
    n, k = kv.shape[0], indices.shape[1]
    out = torch.zeros((t, h, d), dtype=torch.bfloat16, device=device)
    if out.numel() == 0 or n == 0 or k == 0:
        return out
    on_gpu = not interpreted(device)
    # tl.dot needs every block dimension >= 16 when compiled.
    block_h = GPU_HEADS if on_gpu else max(16, next_power_of_2(h))
    block_d = max(16, next_power_of_2(d))
    block_t = max(16, next_power_of_2(min(tile, k)))
    grid = (t, cdiv(h, block_h))
    _KERNEL.launch(
        device, grid, q.to(torch.bfloat16).contiguous(), kv.to(torch.bfloat16).contiguous(),
        indices.contiguous(), sink.to(torch.float32).contiguous(), out,
        h, d, n, k, min(tile, k), d**-0.5,
        BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_T=block_t,
        ROUNDING=ROUNDINGS[rounding], BF16_DOT=on_gpu, num_warps=4,
        # One stage: a [tile, D] BF16 block of gathered rows is 128 KiB at tile 128, D = 512,
        # and software pipelining would keep several in shared memory.
        num_stages=1,
    )
    return out
