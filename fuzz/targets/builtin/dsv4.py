"""DeepSeek-V4 decode targets: `dsv4.sparse_attn` and `dsv4.q_norm_rope`.

Default comparator for both: pypto-lib's `ratio_allclose(atol=1e-4, rtol=1/128)` with a 0.5%
budget, the thresholds its decode tests apply to q and attn_out. Use `--compare exact` to see
every bit of difference.

Case spaces shrink toward one token, one head, D = 64 and a single index slot.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import sparse_indices, values
from kfuzz.judge.comparator import Comparator
from kfuzz.shrink.cuts import index_set_reductions
from kfuzz.targets.builtin.ops import TRAINED, late_positions, positions
from kfuzz.targets.declare import define, tensor, variant

PYPTO = Comparator(mode="allclose", atol=1e-4, rtol=1 / 128, max_ratio=0.005)
PYPTO_DOC = ("pypto-lib ratio_allclose(atol=1e-4, rtol=1/128) with a 0.5% budget, the "
             "thresholds of its DeepSeek-V4 decode tests for q and attn_out")
DSV4_MAX_NUMEL = 1 << 21
TILES = (64, 32, 128)
ROUNDING_SUFFIX = {"half_even": "", "half_away": "_away"}
KERNELS = "kfuzz.kernels.deepseek_v4"
ORACLES = "kfuzz.oracles.deepseek_v4"


# The model's decode sizes: 4 tokens, 64 query heads, head dim 512 (RoPE on its last 64), a
# 4096-row KV cache read through top-512 index sets whose first 128 slots are the sliding
# window; unit-normal activations, positions up to 65536. Each target runs its production case
# first in every campaign (`examples`).
PRODUCTION_SHAPE = [4, 64, 512]
NORMAL = {"kind": "normal", "scale": 1.0}
PRODUCTION_INDEX = {"n_rows": 4096, "k": 512, "n_valid": 512, "window": 128, "ragged": False,
                    "duplicates": False, "sorted": False, "out_of_range": False}
SPARSE_EXAMPLE = {"shape": PRODUCTION_SHAPE, "index": PRODUCTION_INDEX, "q": NORMAL,
                  "kv": NORMAL, "sink": NORMAL, "seed": 0}
Q_EXAMPLE = {"shape": PRODUCTION_SHAPE, "rope_dim": 64, "q": NORMAL, "max_position": 65536,
             "eps": 1e-6, "seed": 0}


def _values_strategy() -> st.SearchStrategy[dict[str, Any]]:
    return fst.distributions(kinds=("normal", "uniform", "outliers", "constant_rows"),
                             min_scale_exp=-4, max_scale_exp=4, specials=fst.SPECIALS)


# -- dsv4.sparse_attn -------------------------------------------------------------------------

HEAD_DIMS = (fst.Dim(1, 8), fst.Dim(1, 64), fst.Dim(64, 512, multiple_of=64))


def _score_regime(draw: st.DrawFn, q: dict[str, Any], kv: dict[str, Any]) -> tuple[dict, dict]:
    """One case in six shifts q and kv by opposite (scores far below zero) or equal (far above)
    amounts: every score of a token moves by about 2**(a + b) * sqrt(D)."""
    regime = draw(st.integers(0, 5))
    if regime < 4 or fst.plain():
        return q, kv
    a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    sign = -1.0 if regime == 4 else 1.0
    return {**q, "shift": 2.0 ** a}, {**kv, "shift": sign * 2.0 ** b}


def sparse_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def cases(draw: st.DrawFn) -> dict[str, Any]:
        # The case-level regime first: Hypothesis varies a case's first choices most in its
        # early examples (a random prefix, the simplest choices after it).
        production = draw(st.integers(0, 15)) * (not fst.plain())  # same draws either way
        shape = draw(fst.shapes(*HEAD_DIMS, max_numel=max_numel))
        t, _, d = shape
        # Cache rows and the gathered [T, K, D] block stay within max_numel too.
        index = fst.sparse_index_sets(max_rows=max(1, min(4096, max_numel // d)),
                                      max_k=max(1, min(512, max_numel // (t * d))))
        case = {
            "shape": shape,
            "index": draw(index),
            "q": draw(_values_strategy()),
            "kv": draw(_values_strategy()),
            # Per-head sinks, distinct and possibly extreme (log-uniform over 2**-2..2**6).
            "sink": draw(fst.distributions(kinds=("normal", "uniform", "log_uniform"),
                                           min_scale_exp=-2, max_scale_exp=6)),
            "seed": draw(fst.seeds()),
        }
        if production >= 13:
            # Production size (three cases in sixteen): the largest shape with a full index set
            # (k at its largest, n_valid = k), where faults that show once in many thousands of
            # weights (a rounding tie) live. The set's flags stay drawn: a ragged set (-1
            # padding per token) or rows past the cache can still leave some slots invalid.
            t, h, d = fst.largest_shape(*HEAD_DIMS, max_numel=max_numel)
            k = max(1, min(512, max_numel // (t * d)))
            case["shape"] = [t, h, d]
            case["index"] = {**case["index"], "k": k, "n_valid": k,
                             "n_rows": max(1, min(4096, max_numel // d)),
                             "window": min(case["index"]["window"], k)}
        case["q"], case["kv"] = _score_regime(draw, case["q"], case["kv"])
        near = draw(st.integers(0, 3)) == 3 and not fst.plain()
        offset = draw(st.integers(-16, 16))
        if production >= 14:
            # Production values as well, in two thirds of those: q, kv and sinks as a model feeds
            # them (normal, unit scale, no regime), so that scores spread and the exp weights
            # take many distinct values that all reach the output. Drawn regimes (constant
            # rows, scores past exp's underflow, a sink far above every score) would leave a
            # production-sized case with a handful of weights that matter.
            case["q"] = case["kv"] = case["sink"] = {"kind": "normal", "scale": 1.0}
        elif near:
            # Sinks of the scores' own size: each head's sink at its largest score plus an offset.
            case["sink_near_scores"] = offset
        return case

    return cases()


def sparse_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    t, h, d = case["shape"]
    out = {
        "q": values(gen, [t, h, d], torch.bfloat16, case["q"], name="q"),
        "kv": values(gen, [case["index"]["n_rows"], d], torch.bfloat16, case["kv"], name="kv"),
        "indices": sparse_indices(gen, t, case["index"], name="indices"),
        "sink": values(gen, [h], torch.float32, case["sink"], name="sink"),
    }
    if "sink_near_scores" in case:
        out["sink"] = _sink_near_scores(out, float(case["sink_near_scores"]))
    return out


def _sink_near_scores(inputs: dict[str, torch.Tensor], offset: float) -> torch.Tensor:
    """Per head: the largest score q . kv * D**-0.5 over the valid rows of every token, plus
    `offset`, in float32 (the sink itself where no row is valid)."""
    q, kv, idx = inputs["q"].double(), inputs["kv"].double(), inputs["indices"].long()
    valid = (idx >= 0) & (idx < kv.shape[0])
    rows = kv[idx.clamp(0, kv.shape[0] - 1)]  # [T, K, D]
    scores = torch.einsum("thd,tkd->thk", q, rows) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~valid[:, None, :], -torch.inf)
    top = scores.amax(dim=(0, 2))
    return torch.where(torch.isfinite(top), top + offset, inputs["sink"].double()).float()


def exp_weight_features(inputs: dict[str, torch.Tensor], actual: Any, expected: Any,
                        tile: int = 64) -> dict[str, float]:
    """What the search climbs besides the errors: the FP32 exp weights exp(s - m_j) of the
    tile-64 online softmax (scores in FP32 from BF16 operands, as the kernel model computes
    them), how many sit exactly on a BF16 rounding tie (where half-even and half-away rounding
    part), and how many underflow to zero (log2 of 1 + each count)."""
    q, kv, idx = inputs["q"], inputs["kv"], inputs["indices"].long()
    n, d = kv.shape
    valid = (idx >= 0) & (idx < n)
    rows = kv[idx.clamp(0, max(n - 1, 0))].float() * valid[..., None]
    s = torch.bmm(q.float(), rows.transpose(1, 2)) * d**-0.5  # [T, H, K]
    s = s.masked_fill(~valid[:, None, :], float("-inf"))
    ties = underflow = 0
    for start in range(0, s.shape[-1], tile):
        part = s[..., start:start + tile]
        m = part.amax(dim=-1, keepdim=True)
        live = torch.isfinite(part)
        p = torch.exp(part - torch.where(torch.isfinite(m), m, 0.0))
        ties += int(((p.view(torch.int32) & 0xFFFF) == 0x8000)[live].sum())
        underflow += int((p == 0)[live].sum())
    return {"bf16_ties": math.log2(1 + ties), "exp_underflow": math.log2(1 + underflow)}


def _sparse_variants(fn: str, prefix: str, what: str) -> dict[str, Any]:
    return {f"{prefix}{tile}{suffix}": variant(
        fn, f"{what}, tile {tile}, exp weights rounded to BF16 {rounding.replace('_', '-')}",
        tile=tile, rounding=rounding)
        for tile in TILES for rounding, suffix in ROUNDING_SUFFIX.items()}


# The case layout, inputs and oracles of every target over this case space (e.g.
# triton.sparse_attn): N and K are the index set's cache rows and slots per token.
SPARSE_SHAPE = dict(zip(("T", "H", "D"), HEAD_DIMS, strict=True))
SPARSE_SIZES = {"N": "index.n_rows", "K": "index.k"}
SPARSE_INPUTS = {
    "q": tensor("T H D", dtypes=["bfloat16"], note="D in 64..512"),
    "kv": tensor("N D", dtypes=["bfloat16"], note="each gathered row is key and value"),
    "indices": tensor("T K", dtypes=["int32"], note="indices into N rows; -1 padding at any slot "
                      "(after the valid ones, after each of a window and a top-k part, or "
                      "anywhere); entries outside [0, N) are skipped"),
    "sink": tensor("H", dtypes=["float32"], note="per-head sink logit", excludes=TRAINED),
}
SPARSE_OUTPUTS = {"out": tensor("T H D", dtypes=["bfloat16"],
                                note="zeros for a token with no valid row")}
SPARSE_ORACLES = {
    "fp64": variant(f"{ORACLES}:sparse_attn_fp64", "float64 exact softmax with sink"),
    "full_fp32": variant(f"{ORACLES}:sparse_attn_full_fp32",
                         "pre-fix golden: one full FP32 softmax with sink"),
    **_sparse_variants(f"{ORACLES}:sparse_attn_tiled", "tiled",
                       "post-fix golden mirroring the kernel's tiling"),
}


SPARSE_ATTN = define(
    "dsv4.sparse_attn",
    doc="DeepSeek-V4 sparse decode attention: gathered KV rows are keys and values, tiled "
        "online softmax with a per-head sink",
    inputs=SPARSE_INPUTS,
    outputs=SPARSE_OUTPUTS,
    shape=SPARSE_SHAPE,
    sizes=SPARSE_SIZES,
    cases=sparse_cases,
    materialise=sparse_inputs,
    kernels=_sparse_variants(f"{KERNELS}:sparse_attn", "tile", "NPU kernel emulation"),
    oracles=SPARSE_ORACLES,
    comparator=PYPTO,
    comparator_doc=PYPTO_DOC,
    max_numel=DSV4_MAX_NUMEL,
    reductions=index_set_reductions("index"),
    features=exp_weight_features,
    examples=[SPARSE_EXAMPLE],
)


# -- dsv4.q_norm_rope -------------------------------------------------------------------------

def _q_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    return fst.case_dicts({
        "shape": fst.shapes(*HEAD_DIMS, max_numel=max_numel),
        "rope_dim": st.sampled_from([64, 0, 32]),
        # FP32 activations, subnormal and smallest-normal magnitudes too (not near FP32's
        # overflow, where q**2 overflows in any FP32 kernel: no projection gives 1e19).
        "q": fst.distributions(kinds=("normal", "uniform", "log_uniform", "outliers",
                                      "constant_rows", "edge"), tie_dtypes=("bfloat16",),
                               edges=("subnormal", "underflow"), specials=fst.SPECIALS),
        # At least 2: with every position 0 RoPE is the identity and the case tests nothing.
        "max_position": st.integers(1, 17).map(lambda e: 2**e),
        "eps": st.just(1e-6),
        "seed": fst.seeds(),
    }, optional={"late_positions": late_positions()})


def _q_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "q": values(gen, case["shape"], torch.float32, case["q"], name="q"),
        "positions": positions(gen, case, case["shape"][0]),
    }


def _q_variant(inv_root: str, doc: str) -> Any:
    return variant(f"{KERNELS}:q_norm_rope", doc, inv_root=inv_root)


define(
    "dsv4.q_norm_rope",
    doc="DeepSeek-V4 query path: per-head RMSNorm without weight, BF16 store, then RoPE on "
        "the last rope_dim dims as interleaved pairs",
    inputs={"q": tensor("T H D", dtypes=["float32"], note="projection output, D in 64..512"),
            "positions": tensor("T", dtypes=["int64"],
                                note="token positions in [0, max_position)")},
    outputs={"out": tensor("T H D", dtypes=["bfloat16"])},
    params={"rope_dim": "int", "eps": "float"},
    shape=SPARSE_SHAPE,
    cases=_q_cases,
    materialise=_q_inputs,
    kernels={
        "recip_sqrt": _q_variant("recip_sqrt", "inverse root as FP32 1/sqrt(x)"),
        "torch_rsqrt": _q_variant("torch_rsqrt", "inverse root as torch.rsqrt (FP32)"),
        "rsqrt_hw": _q_variant("rsqrt_hw", "model of a low-precision hardware rsqrt: bit-trick "
                               "seed + one Newton step, max rel err 1.75e-3"),
    },
    default_kernel="rsqrt_hw",
    oracles={
        "fp64": variant(f"{ORACLES}:q_norm_rope_fp64", "float64 math keeping the kernel's BF16 "
                        "store between norm and RoPE"),
        "fp64_unrounded": variant(f"{ORACLES}:q_norm_rope_fp64",
                                  "float64 math with no rounding between norm and RoPE",
                                  round_norm=False),
        "fp32_rsqrt": variant(f"{ORACLES}:q_norm_rope_fp32_rsqrt", "FP32 golden with torch.rsqrt"),
    },
    comparator=PYPTO,
    comparator_doc=PYPTO_DOC,
    max_numel=DSV4_MAX_NUMEL,
    examples=[Q_EXAMPLE],
)
