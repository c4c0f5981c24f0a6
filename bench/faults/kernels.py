"""Kernels with seeded faults, for measuring how well a fuzzer finds faults.

Every kernel here is a correct kernel (FP32 arithmetic, one final rounding, or the tiled
sparse-attention emulation) with exactly one fault of a kind kernel teams meet (one kernel,
last below, with two), so that a case fails only where that fault shows:

- `softmax_no_max`: softmax without subtracting the row max (exp overflows past x = 88.7 and
  underflows below about -103 in FP32, giving inf/inf or 0/0);
- `rmsnorm_bf16_accumulate`: the mean of squares accumulated in BF16 registers over a long row;
- `rmsnorm_eps_after_root`: 1 / (sqrt(ms) + eps) instead of 1 / sqrt(ms + eps);
- `sparse_attn_merge_no_rescale`: the online-softmax tile merge forgets to rescale the running
  state by exp(m - m') and the tile by exp(m_j - m');
- `sparse_attn_gather_negative`: -1 padding is gathered (as Python indexing does: the last
  row) instead of skipped;
- `sparse_attn_drop_tail`: the tail tile is dropped when K is not a multiple of the tile;
- `window_attn` with `off_by_one=True`: a sliding window that also sees the key one position
  past its far edge.

Faults that are rare in their target's case space (a uniform hit rate under 1%; the measured
rates are in bench/seeded.py), each needing a shape or value that random tests seldom draw:

- `sparse_attn_tail_one_unscaled`: a tail tile of one index position is scored without the
  softmax scale (K = 1 mod the tile);
- `softmax_max_init_zero`: the row max starts at 0 instead of -inf (every logit of a row far
  below zero);
- `sparse_attn_max_init_mask`: the running max starts at the mask value -1e4 instead of -inf
  (every score of a head far below -1e4, with a sink of comparable size);
- `window_attn_full_guard`: the "window covers every key" fast path is taken one key early
  (S = window + 1);
- `rmsnorm_pow2_tree`: the power-of-two fast path's tree reduction stops one level early
  (hidden a power of two);
- `rope_rows_tail_one`: the launch grid counts blocks of (token, head) rows from the last row's
  index instead of the row count (T * H = 1 mod 128);
- `rope_fp16_head128_neox`: the FP16 head-dim-128 fast path pairs dims as NeoX (rotate-half)
  instead of interleaved.

Faults that need inputs a contract allows but narrow strategies never draw (special values,
-1 padding before a valid slot):

- `sparse_attn_prefix_length`: a token's valid slots are taken to be a prefix (their count, read
  from the start), as a kernel written for index sets padded at the end does;
- `sparse_attn_masked_rows_leak`: skipped slots are masked in the scores but their gathered row
  (row 0) stays in the weighted sum, where 0 times an Inf or NaN is NaN;
- `rmsnorm_prescale_max`: the row is divided by its largest magnitude first (an overflow guard),
  which turns a row holding +-Inf into NaN everywhere.

Two faults of different kinds on one output, for telling root causes apart (each its own
failure signature, `kfuzz.execute.findings.signature`):

- `softmax_tail_mask_bf16_store`: a tiled softmax whose tail-tile mask drops a row's last
  element (a row longer than one tile whose length is not a multiple of it: output 0 there,
  wrong by the whole probability) and whose FP16 outputs go through a BF16 staging buffer
  (rounded twice: at most 4 FP16 ULPs off, on every FP16 case).

The low-precision rsqrt fault is `kfuzz.kernels.deepseek_v4.q_norm_rope` with `inv_root="rsqrt_hw"`.
`window_attn` is also the correct sliding-window kernel, and with `compute=torch.float64` the
reference the `faults.window_attn` target compares against.
"""

from __future__ import annotations

import torch
from kfuzz.kernels.deepseek_v4.bf16 import round_to_bf16
from kfuzz.kernels.deepseek_v4.sparse_attn import (
    check_kernel_rounding,
    check_sparse_attn_inputs,
    check_tile,
    sparse_attn,
)
from kfuzz.kernels.ops import rmsnorm_fp32, rope_fp32
from torch import Tensor

# Width of the BF16 accumulator of `rmsnorm_bf16_accumulate`: a vector unit keeps one partial
# sum per lane and adds the lanes at the end. With eight lanes the fault shows on normal BF16
# rows from about a thousand elements (bench/seeded.py); a single scalar accumulator would
# fail on shorter rows but cost a Python step per element.
BF16_ACCUMULATOR_LANES = 8
# The finite stand-in for -inf that `sparse_attn_max_init_mask` starts its running max at: the
# mask value of FP16-era attention code (FP16 has no room for -FLT_MAX).
MASK_VALUE = -1e4
# Rows of (token, head) pairs per program of `rope_rows_tail_one`'s launch grid.
ROPE_ROWS_PER_BLOCK = 128
# Elements per tile of `softmax_tail_mask_bf16_store` (a vector of 8 FP32 lanes): rows longer
# than one tile are walked tile by tile.
SOFTMAX_TILE = 8


def softmax_no_max(x: Tensor) -> Tensor:
    """Softmax over the last axis in FP32 without the max subtraction, rounded once to x.dtype.

    Takes: ``x`` [..., n] floating tensor.
    Returns: tensor of x's shape and dtype; NaN on rows where exp overflows (an element above
    ~88.7) or every exp underflows (all elements below ~-103).
    Raises: nothing beyond torch's own errors.
    """
    e = torch.exp(x.float())
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


def softmax_max_init_zero(x: Tensor) -> Tensor:
    """Softmax over the last axis in FP32, max-subtracted, except that the row max starts at
    0 instead of -inf (a zero-initialised accumulator), so the shift is max(0, max(x)): exact
    while some element is above about -87, but a row whose every element is far below zero
    loses its exps to FP32 underflow, to subnormals (precision lost from about -96 for FP16
    outputs, -99 for BF16) and then to 0 (every element below about -104: 0/0 = NaN).

    Shows only when every element of a row is below about -96 (-104 for a row of one).

    Takes: ``x`` [..., n] floating tensor.
    Returns: tensor of x's shape and dtype.
    Raises: nothing beyond torch's own errors.
    """
    xf = x.float()
    # The fault: the accumulator of the max starts at 0, not at -inf.
    m = torch.clamp(xf.amax(dim=-1, keepdim=True), min=0.0)
    e = torch.exp(xf - m)
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


def softmax_tail_mask_bf16_store(x: Tensor, *, tile: int = SOFTMAX_TILE) -> Tensor:
    """Softmax over the last axis in FP32, rounded once, except for two faults of different
    kinds on the one output:

    - masking: a row longer than one tile is walked tile by tile, and the tail tile's mask is
      `lane < n % tile - 1` instead of `lane < n % tile`, so when n % tile != 0 the row's last
      element is taken for padding (an additive -inf mask): left out of the max and the sum,
      its output 0, the others normalised without it. A row of at most one tile takes the
      single-tile path, which masks right. Shows when n > tile and n % tile != 0, unless the
      last element's probability is below what the comparator notices (a relative error of
      1 there: a "wrong" finding). A +inf or NaN there still makes the row NaN, as it should.
    - rounding: the result is stored through a BF16 staging buffer, so an FP16 output is
      rounded to BF16 first, then to FP16: up to 4 FP16 ULPs off the correctly rounded
      value (a "rounding" finding, on FP16 cases of any shape), and an FP32 output keeps
      BF16's 8 bits (a "precision" finding); BF16 outputs are unaffected.

    Takes: ``x`` [..., n] floating tensor; ``tile`` >= 1.
    Returns: tensor of x's shape and dtype.
    Raises: ValueError when ``tile`` < 1.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile!r}")
    n = x.shape[-1]
    # An additive mask, 0 on the lanes read and -inf on padding (so a padding lane holding +inf
    # or NaN gives NaN, as the row does without the fault).
    mask = torch.zeros(n, dtype=torch.float32, device=x.device)
    if n > tile and n % tile:
        mask[-1] = float("-inf")  # the fault: the tail mask stops one lane short
    xf = x.float() + mask
    e = torch.exp(xf - xf.amax(dim=-1, keepdim=True))
    p = e / e.sum(dim=-1, keepdim=True)
    # The fault: the store path of BF16 outputs is used for every dtype.
    return p.to(torch.bfloat16).to(x.dtype)


def _bf16_sum_of_squares(x: Tensor, lanes: int) -> Tensor:
    """Sum over the last axis of x**2 (FP32 squares) with BF16 per-lane partial sums."""
    squares = x.float() * x.float()
    n = squares.shape[-1]
    pad = (-n) % lanes
    if pad:
        squares = torch.nn.functional.pad(squares, (0, pad))
    chunks = squares.reshape(*squares.shape[:-1], -1, lanes)
    acc = torch.zeros((*squares.shape[:-1], lanes), dtype=torch.bfloat16, device=x.device)
    for i in range(chunks.shape[-2]):
        # One BF16 add per lane: FP32 sum, rounded back to the BF16 register.
        acc = (acc.float() + chunks[..., i, :]).to(torch.bfloat16)
    return acc.float().sum(dim=-1, keepdim=True)


def rmsnorm_bf16_accumulate(x: Tensor, weight: Tensor, *, eps: float,
                            lanes: int = BF16_ACCUMULATOR_LANES) -> Tensor:
    """RMSNorm over the last axis in FP32, except that the sum of squares is accumulated in
    `lanes` BF16 partial sums (each add rounded to BF16), as a kernel without an FP32
    accumulator does. Small rows are within tolerance; long rows lose the small addends once a
    partial sum is a few hundred times larger than them.

    Takes: ``x`` [rows, hidden] floating, ``weight`` [hidden], ``eps``, ``lanes`` >= 1.
    Returns: [rows, hidden] in x.dtype.
    Raises: ValueError when ``lanes`` < 1.
    """
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes!r}")
    ms = _bf16_sum_of_squares(x, lanes) / x.shape[-1]
    inv = torch.rsqrt(ms + eps)
    return (x.float() * inv * weight.float()).to(x.dtype)


def rmsnorm_eps_after_root(x: Tensor, weight: Tensor, *, eps: float) -> Tensor:
    """RMSNorm over the last axis in FP32 with eps added after the root:
    x / (sqrt(mean(x^2)) + eps). Indistinguishable from the correct kernel unless mean(x^2) is
    within a few hundred eps (small activations).

    Takes: ``x`` [rows, hidden] floating, ``weight`` [hidden], ``eps``.
    Returns: [rows, hidden] in x.dtype.
    Raises: nothing beyond torch's own errors.
    """
    xf = x.float()
    root = torch.sqrt((xf * xf).mean(dim=-1, keepdim=True))
    return (xf / (root + eps) * weight.float()).to(x.dtype)


def sparse_attn_merge_no_rescale(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                                 tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` whose tile merge forgets to rescale: l = l + l_j and
    o = o + o_j while m takes the running max, so tiles with different maxima are weighted
    wrongly. Equal to the correct kernel when at most one tile of a token has a valid row.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    return _sparse_attn_departing(q, kv, indices, sink, tile=tile, rounding=rounding,
                                  rescale=False)


def sparse_attn_gather_negative(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                                tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` that gathers -1 padding instead of skipping it: a
    negative index reads row n + index (the last row for -1), as Python and torch indexing
    do. Rows at or past N are still skipped. Equal to the correct kernel on index sets
    without padding.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    n = kv.shape[0]
    wrapped = torch.where(indices < 0, indices + n, indices) if n else indices
    return sparse_attn(q, kv, wrapped, sink, tile=tile, rounding=rounding)


def sparse_attn_drop_tail(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                          tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` that walks only the full tiles: the last K % tile
    index positions are never read, so a token whose valid rows all sit there outputs zeros.
    Equal to the correct kernel when K is a multiple of the tile.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    check_tile(tile)
    full = indices.shape[1] // tile * tile
    return sparse_attn(q, kv, indices[:, :full], sink, tile=tile, rounding=rounding)


def window_attn(q: Tensor, k: Tensor, v: Tensor, *, window: int, off_by_one: bool = False,
                compute: torch.dtype = torch.float32) -> Tensor:
    """Sliding-window attention for the last T positions of a sequence of S keys.

    Query t sits at position p = S - T + t and sees the keys j with p - window < j <= p, with
    softmax scale D**-0.5. Computed in `compute` (FP32 for the kernel, float64 for the
    reference); with `off_by_one` the window also admits j = p - window, the fault.

    Takes: ``q`` [T, H, D], ``k`` and ``v`` [S, H, D] with S >= T, ``window`` >= 1.
    Returns: [T, H, D], bfloat16 when ``compute`` is FP32, else in ``compute``.
    Raises: ValueError for a bad window or inconsistent shapes.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if q.dim() != 3 or k.shape != v.shape or k.dim() != 3 or k.shape[1:] != q.shape[1:]:
        raise ValueError(f"q must be [T, H, D] and k, v [S, H, D]; got {list(q.shape)}, "
                         f"{list(k.shape)}, {list(v.shape)}")
    t, s = q.shape[0], k.shape[0]
    if s < t:
        raise ValueError(f"S = {s} keys cannot hold T = {t} queries; need S >= T")
    pos = torch.arange(s - t, s, device=q.device)[:, None]
    key = torch.arange(s, device=q.device)[None, :]
    far = pos - window - (1 if off_by_one else 0)
    visible = (key > far) & (key <= pos)  # [T, S]
    scores = torch.einsum("thd,shd->hts", q.to(compute), k.to(compute)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~visible[None], float("-inf"))
    out = torch.einsum("hts,shd->thd", torch.softmax(scores, dim=-1), v.to(compute))
    return out.to(torch.bfloat16) if compute == torch.float32 else out


def window_attn_fp64(q: Tensor, k: Tensor, v: Tensor, *, window: int) -> Tensor:
    """The float64 reference of `window_attn`: the same window, no rounding anywhere.

    Takes and raises: as `window_attn`. Returns: [T, H, D] float64.
    """
    return window_attn(q, k, v, window=window, compute=torch.float64)


def _sparse_attn_departing(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *, tile: int,
                           rounding: str, single_row_unscaled: bool = False,
                           max_start: float = float("-inf"), rescale: bool = True,
                           zero_masked: bool = True) -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn`'s tile loop, operation for operation, with the
    departures its callers switch on (each described where it is used): with neither, the
    same bits as the correct kernel."""
    check_tile(tile)
    check_kernel_rounding(rounding)
    check_sparse_attn_inputs(q, kv, indices, sink)
    t, h, d = q.shape
    n, k = kv.shape[0], indices.shape[1]
    if n == 0:
        return torch.zeros((t, h, d), dtype=torch.bfloat16, device=q.device)
    idx = indices.long()
    valid = (idx >= 0) & (idx < n)
    rows = kv[torch.where(valid, idx, torch.zeros_like(idx))].float()
    masked_rows = rows
    # zero_masked: masked positions' rows zeroed; without it their scores are masked but row 0's
    # values stay in the products, where a weight of 0 times a non-finite value is NaN.
    rows = torch.where(valid[..., None], rows, torch.zeros_like(rows))
    qf = q.float()
    # max_start: where the running max starts (-inf in the correct kernel).
    m = torch.full((t, h, 1), max_start, dtype=torch.float32, device=q.device)
    l_sum = torch.zeros((t, h, 1), dtype=torch.float32, device=q.device)
    o = torch.zeros((t, h, d), dtype=torch.float32, device=q.device)
    started = torch.zeros((t, 1, 1), dtype=torch.bool, device=q.device)
    for start in range(0, k, tile):
        tile_valid = valid[:, start : start + tile]
        tile_rows = rows[:, start : start + tile]
        live = tile_valid.any(dim=1).view(t, 1, 1)
        s = torch.bmm(qf, tile_rows.transpose(1, 2))
        # single_row_unscaled: a tile of one position goes down the vector path, which has
        # no scale (the matrix path applies it in its epilogue).
        if not (single_row_unscaled and tile_rows.shape[1] == 1):
            s = s * d**-0.5
        s = s.masked_fill(~tile_valid[:, None, :], float("-inf"))
        m_j = s.amax(dim=-1, keepdim=True)
        m_j = torch.where(live, m_j, torch.zeros_like(m_j))
        p = round_to_bf16(torch.exp(s - m_j), rounding).float()
        l_j = p.sum(dim=-1, keepdim=True)
        o_j = torch.bmm(p, tile_rows if zero_masked else masked_rows[:, start : start + tile])
        m_new = torch.maximum(m, m_j)
        a = torch.exp(m - m_new)
        b = torch.exp(m_j - m_new)
        merged_l = a * l_sum + b * l_j
        merged_o = a * o + b * o_j
        if not rescale:
            # No exp(m - m') on the state and no exp(m_j - m') on the tile.
            merged_l, merged_o = l_sum + l_j, o + o_j
        # A state started at a finite max is merged into like any other (0 * a + l_j = l_j),
        # where the correct kernel sets the first live tile's state outright.
        merge = torch.ones_like(started) if max_start > float("-inf") else started
        m = torch.where(live, torch.where(merge, m_new, m_j), m)
        l_sum = torch.where(live, torch.where(merge, merged_l, l_j), l_sum)
        o = torch.where(live, torch.where(merge, merged_o, o_j), o)
        started = started | live
    out = o / (l_sum + torch.exp(sink.float().view(1, h, 1) - m))
    out = torch.where(started, out, torch.zeros_like(out))
    return out.to(torch.bfloat16)


def sparse_attn_tail_one_unscaled(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                                  tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` whose tail tile, when it holds a single index
    position, is scored on the vector path (one dot product per head) and misses the softmax
    scale D**-0.5 that the matrix path applies: that row's score is sqrt(D) times too large.

    Shows only when K = 1 (mod tile) and the token's last index slot names a valid row (K = 1
    with one valid slot is the simplest), and the wrong score moves the output: against the
    sink when the row is the token's only one (the sink is not far below the score), against
    the other tiles' rows otherwise.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    return _sparse_attn_departing(q, kv, indices, sink, tile=tile, rounding=rounding,
                                  single_row_unscaled=True)


def sparse_attn_max_init_mask(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                              tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` whose running max starts at `MASK_VALUE` (-1e4,
    the finite "minus infinity" of FP16-era attention code) instead of -inf, so the running
    max is max(-1e4, scores). The online softmax is exact for any start value as long as
    nothing underflows: here, when every score of a token's head is below about -1e4 - 87,
    each tile's rescale exp(m_j + 1e4) underflows in FP32 (to subnormals, then to 0), l and o
    are lost, and the output is 0, or 0/0 = NaN when exp(sink + 1e4) underflows too.

    Shows only when a head's every score is below about -10087 (one-sided q and kv of
    opposite signs, tens in magnitude) and that head's sink is below about -10104 (0/0,
    whatever the correct output), or, for a max score just below -10087, within ~10 of it:
    scores and sink both far below -1e4.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    return _sparse_attn_departing(q, kv, indices, sink, tile=tile, rounding=rounding,
                                  max_start=MASK_VALUE)


def window_attn_full_guard(q: Tensor, k: Tensor, v: Tensor, *, window: int) -> Tensor:
    """`window_attn` (FP32) with a fast path for windows that cover every key, plain causal
    attention, guarded by `window >= S - 1` ("the farthest key is S - 1 positions back")
    instead of `window >= S`: the window admits keys fewer than `window` positions back, so at
    window = S - 1 the last query wrongly sees key 0.

    Shows only when S = window + 1 (every other S and window agree with the correct kernel).

    Takes, returns and raises: as `window_attn`.
    """
    s = k.shape[0]
    # The causal path is the window kernel with a window of S: no key is out of reach.
    # The fault: the farthest distance, S - 1, compared with window instead of window - 1.
    return window_attn(q, k, v, window=max(window, s) if window >= s - 1 else window)


def rmsnorm_pow2_tree(x: Tensor, weight: Tensor, *, eps: float) -> Tensor:
    """RMSNorm over the last axis in FP32 (as `kfuzz.kernels.ops.rmsnorm_fp32`), except that
    rows whose length is a power of two take a fast path that sums the squares by a tree
    reduction (a[i] += a[i + stride], stride halving) whose loop runs while stride > 1
    instead of >= 1: the last level is skipped and the sum holds only the even positions,
    about half the mean square.

    Shows only when hidden is a power of two, at least 2 (hidden = 1 has no tree level).

    Takes: ``x`` [rows, hidden] floating, ``weight`` [hidden], ``eps``.
    Returns: [rows, hidden] in x.dtype.
    Raises: nothing beyond torch's own errors.
    """
    xf = x.float()
    n = xf.shape[-1]
    squares = xf * xf
    if n < 2 or n & (n - 1):
        ms = squares.mean(dim=-1, keepdim=True)
    else:
        partial, stride = squares, n // 2
        while stride > 1:  # the fault: `stride >= 1` adds the last pair
            partial = partial[..., :stride] + partial[..., stride : 2 * stride]
            stride //= 2
        ms = partial[..., :1] / n
    return (xf * torch.rsqrt(ms + eps) * weight.float()).to(x.dtype)


def rope_rows_tail_one(x: Tensor, positions: Tensor, *, base: float,
                       block: int = ROPE_ROWS_PER_BLOCK) -> Tensor:
    """Interleaved RoPE in FP32 (as `kfuzz.kernels.ops.rope_fp32`), rotating in place: the
    output starts as a copy of x and each program of the launch grid rotates `block` of the
    T * H (token, head) rows. The grid is sized cdiv(T * H - 1, block), from the last row's
    index instead of the row count, one program short exactly when T * H = 1 (mod block):
    the last row (the last token's last head) is left unrotated.

    Shows only when T * H = 1 (mod block), T = H = 1 the simplest, and the last token's
    position is not 0 (position 0 rotates by nothing).

    Takes: ``x`` [T, H, D] floating, D even; ``positions`` [T] integer; ``base``; ``block``
    >= 1.
    Returns: [T, H, D] in x.dtype.
    Raises: ValueError when ``block`` < 1.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block!r}")
    t, h, d = x.shape
    rows = t * h
    programs = (rows - 1 + block - 1) // block  # the fault: cdiv(rows - 1, block)
    done = min(rows, programs * block)
    out = x.clone().reshape(rows, d)
    out[:done] = rope_fp32(x, positions, base=base).reshape(rows, d)[:done]
    return out.reshape(t, h, d)


def rope_fp16_head128_neox(x: Tensor, positions: Tensor, *, base: float) -> Tensor:
    """Interleaved RoPE in FP32 (as `kfuzz.kernels.ops.rope_fp32`), except for a vectorised
    fast path taken for FP16 inputs with head dim 128, written for the NeoX (rotate-half)
    layout: it rotates the pairs (x[i], x[i + 64]) instead of (x[2i], x[2i + 1]), each pair
    with the frequency of its pair index i, as the general path does.

    Shows only on FP16 inputs with D = 128 and a token whose position is not 0.

    Takes: ``x`` [T, H, D] floating, D even; ``positions`` [T] integer; ``base``.
    Returns: [T, H, D] in x.dtype.
    Raises: nothing beyond torch's own errors.
    """
    d = x.shape[-1]
    if x.dtype != torch.float16 or d != 128:
        return rope_fp32(x, positions, base=base)
    exponent = torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d
    angle = positions.to(device=x.device, dtype=torch.float64)[:, None] * base**-exponent
    cos = torch.cos(angle).float()[:, None, :]
    sin = torch.sin(angle).float()[:, None, :]
    xf = x.float()
    first, second = xf[..., : d // 2], xf[..., d // 2 :]
    rotated = torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rotated.to(x.dtype)


def sparse_attn_prefix_length(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                              tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` that takes a token's valid slots to be a prefix:
    it counts the valid slots and reads only that many from the start, as a kernel written for
    index sets padded at the end does. A valid slot after a -1 (an index producer that pads a
    window part and a top-k part each, or leaves holes) is never read, and the -1 slots inside
    the prefix are skipped. Equal to the correct kernel where every token's padding is a suffix.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    n, k = kv.shape[0], indices.shape[1]
    valid = (indices >= 0) & (indices < n)
    count = valid.sum(dim=1, keepdim=True)
    in_prefix = torch.arange(k, device=indices.device).view(1, k) < count
    return sparse_attn(q, kv, torch.where(in_prefix, indices, torch.full_like(indices, -1)),
                       sink, tile=tile, rounding=rounding)


def sparse_attn_masked_rows_leak(q: Tensor, kv: Tensor, indices: Tensor, sink: Tensor, *,
                                 tile: int = 64, rounding: str = "half_even") -> Tensor:
    """`kfuzz.kernels.deepseek_v4.sparse_attn` that masks skipped slots in the scores only: the
    row they gather (row 0) stays in the weighted sum with weight 0, and 0 times an Inf or
    NaN in that row is NaN. Equal to the correct kernel unless a token skips a slot while the
    cache's row 0 holds a non-finite value.

    Takes, returns and raises: as `kfuzz.kernels.deepseek_v4.sparse_attn`.
    """
    return _sparse_attn_departing(q, kv, indices, sink, tile=tile, rounding=rounding,
                                  zero_masked=False)


def rmsnorm_prescale_max(x: Tensor, weight: Tensor, *, eps: float) -> Tensor:
    """RMSNorm in FP32 that first divides the row by its largest magnitude, to keep x^2 from
    overflowing: y = (x / a) * rsqrt(mean((x / a)^2) + eps / a^2) * weight with a = max|x|.
    The same value as the correct kernel up to FP32 rounding on finite rows; on a row holding
    +-Inf, a = Inf and x / a is NaN for every element, where the correct result is 0 at every
    finite element (and NaN at the infinite one).
    """
    xf = x.float()
    a = xf.abs().amax(dim=-1, keepdim=True)
    a = torch.where(a > 0, a, torch.ones_like(a))
    xs = xf / a
    inv = torch.rsqrt((xs * xs).mean(dim=-1, keepdim=True) + eps / (a * a))
    return (xs * inv * weight.float()).to(x.dtype)


def rmsnorm_daz(x: Tensor, weight: Tensor, *, eps: float) -> Tensor:
    """RMSNorm in FP32 on a unit that reads subnormal inputs as zero (denormals-are-zero, the
    default of many vector units): every input below the dtype's smallest normal is taken as 0.
    Equal to the correct kernel on inputs without subnormals. In BF16 the lost outputs are
    below 1e-30 and pass; in FP16 a row of subnormals (|x| < 6.1e-5) has an RMS far below
    sqrt(eps), so its correct outputs are x / sqrt(eps), up to about 0.06, and the kernel's are 0.
    """
    tiny = torch.finfo(x.dtype).tiny
    flushed = torch.where(x.abs() < tiny, torch.zeros_like(x), x)
    return rmsnorm_fp32(flushed, weight, eps=eps)


def softmax_nan_as_mask(x: Tensor) -> Tensor:
    """Softmax over the last axis in FP32, rounded once, that reads a NaN logit as a masked one
    (-inf), as a fused masked softmax does when it marks masked positions with NaN and tests
    `x != x`. Equal to the correct kernel on rows without NaN; a row holding a NaN (and a finite
    element) gets finite weights where the op's contract, torch's softmax, makes the row NaN.
    """
    xf = x.float()
    xf = torch.where(torch.isnan(xf), torch.full_like(xf, float("-inf")), xf)
    return torch.softmax(xf, dim=-1).to(x.dtype)


# Rows per block of `rmsnorm_block_sum`.
BLOCK_ROWS = 4


def rmsnorm_block_sum(x: Tensor, weight: Tensor, *, eps: float) -> Tensor:
    """RMSNorm in FP32 whose squares go through a matrix unit BLOCK_ROWS rows at a time, as a
    product with the identity (the unit reduces and moves data by matrix products): on finite
    values the same bits as the correct kernel (each product adds only exact zeros); a NaN or an
    Inf in one row reaches every other row of its block through 0 * NaN = NaN and 0 * Inf = NaN,
    where their correct results are finite. A block of one row is unaffected.
    """
    xf = x.float()
    sq = (xf * xf).reshape(-1, xf.shape[-1])
    pad = (-sq.shape[0]) % BLOCK_ROWS
    blocks = torch.nn.functional.pad(sq, (0, 0, 0, pad)).view(-1, BLOCK_ROWS, sq.shape[-1])
    eye = torch.eye(BLOCK_ROWS, dtype=torch.float32, device=x.device)
    moved = torch.matmul(eye, blocks).reshape(-1, sq.shape[-1])[: sq.shape[0]]
    inv = torch.rsqrt(moved.view(xf.shape).mean(dim=-1, keepdim=True) + eps)
    return (xf * inv * weight.float()).to(x.dtype)
