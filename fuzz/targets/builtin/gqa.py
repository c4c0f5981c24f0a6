"""`ops.gqa`: grouped-query attention, key/value heads shared by groups of query heads.

q is [B, Hq, Lq, D] and k, v are [B, Hkv, Lk, D] with Hq = Hkv * G: query head h attends with
key/value head h // G. The queries are the last Lq of the Lk positions (a KV cache of
P = Lk - Lq keys, then Lq new ones, as in decoding and chunked prefill), so Lq <= Lk, and a
causal mask is bottom-right aligned: query i attends keys j <= i + P. That is the contract of
ONNX Runtime's com.microsoft GroupQueryAttention (past_key / past_value, then the new keys;
seqlens_k = Lk - 1 for every batch entry, total_sequence_length = Lk).

A case's "shape" is [B, Hkv, G, Lq, P, D]: every size the shrinker can cut to stays a valid
case (G = 1 is plain multi-head attention, P = 0 a prompt without past). G is drawn from
production group sizes (Llama 3, Mistral and Qwen models use 4 to 8). Values as `ops.sdpa`'s:
finite, near 1, so that one absolute tolerance fits every dtype.

Comparator: allclose(atol=1e-2, rtol=1e-2) against float64 rounded to the output dtype,
`ops.sdpa`'s, which flash, efficient and cuDNN attention pass on an H100 in BF16 and FP16.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import dtype_of, values
from kfuzz.oracles.sdpa import gqa_fp64
from kfuzz.targets.builtin.real import HEAD_DIMS, OPS_MAX_NUMEL, SDPA_EXCLUDES, attention_values
from kfuzz.targets.builtin.real import SDPA_TOLERANCE as GQA_TOLERANCE
from kfuzz.targets.declare import define, tensor, variant
from kfuzz.targets.libraries import jax, ort

GQA_DTYPES = ("float32", "bfloat16", "float16")
# Query heads per key/value head, in shrink order: 1 (multi-head), then production groups
# (Llama 3 and Mistral 4, Llama 3 70B and Qwen2.5-3B 8, Qwen2.5 5 to 7, Gemma 2 2).
GROUPS = (1, 2, 4, 8, 5, 6, 7, 3, 16)
MAX_LEN = 512
GQA_SHAPE = {"B": fst.Dim(1, 4), "Hkv": fst.Dim(1, 8), "G": fst.Dim(1, 16),
             "Lq": fst.Dim(1, MAX_LEN), "P": fst.Dim(0, MAX_LEN),
             "D": fst.Dim(8, 256, multiple_of=8)}
GQA_SIZES = {"Hq": lambda case: case["shape"][1] * case["shape"][2],
             "Lk": lambda case: case["shape"][3] + case["shape"][4]}


def _gqa_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def cases(draw: st.DrawFn) -> dict[str, Any]:
        head_dim = draw(st.sampled_from(HEAD_DIMS))
        group = draw(st.sampled_from(GROUPS))
        # q [B, Hkv * G, Lq, D] within max_numel, then the past: k, v [B, Hkv, Lq + P, D].
        b, kv_heads, q_len = draw(fst.shapes(
            fst.Dim(1, 4), fst.Dim(1, 8), fst.Dim(1, MAX_LEN),
            max_numel=max(max_numel // (group * head_dim), 1)))
        room = min(MAX_LEN, max_numel // (b * kv_heads * head_dim)) - q_len
        past = draw(fst.sides(min_side=0, max_side=max(room, 0)))
        return {
            "shape": [b, kv_heads, group, q_len, past, head_dim],
            "dtype": draw(fst.dtypes(GQA_DTYPES)),
            "causal": draw(st.booleans()),
            **attention_values(draw),
            "seed": draw(fst.seeds()),
        }

    return cases()


def _gqa_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    b, kv_heads, group, q_len, past, d = case["shape"]
    dtype = dtype_of(case["dtype"])
    kv_shape = [b, kv_heads, q_len + past, d]
    return {
        "q": values(gen, [b, kv_heads * group, q_len, d], dtype, case["q"], name="q"),
        "k": values(gen, kv_shape, dtype, case["kv"], name="k"),
        "v": values(gen, kv_shape, dtype, case["kv"], name="v"),
    }


def _gqa_params(case: dict[str, Any]) -> dict[str, Any]:
    return {"causal": bool(case["causal"]), "scale": 1.0 / math.sqrt(case["shape"][-1])}


define(
    "ops.gqa",
    doc="grouped-query attention: Hq = Hkv * G query heads, head h attending with key/value "
        "head h // G; the queries the last Lq of Lk positions (causal = bottom-right aligned)",
    inputs={
        "q": tensor("B Hq Lq D", dtypes=GQA_DTYPES, excludes=SDPA_EXCLUDES,
                    note="Hq = Hkv * G, G in {1, 2, 3, 4, 5, 6, 7, 8, 16}; "
                         "D in {8, 16, 32, 64, 80, 96, 128, 256}"),
        "k": tensor("B Hkv Lk D", dtypes="q", excludes=SDPA_EXCLUDES,
                    note="Lk = P + Lq: a past of P keys, then the Lq new ones"),
        "v": tensor("B Hkv Lk D", dtypes="q", excludes=SDPA_EXCLUDES),
    },
    outputs={"out": tensor("B Hq Lq D", dtypes="q")},
    params={"causal": "bool", "scale": "float"},
    param_values=_gqa_params,
    shape=GQA_SHAPE,
    sizes=GQA_SIZES,
    cases=_gqa_cases,
    materialise=_gqa_inputs,
    kernels={
        "sdpa_gqa": variant("kfuzz.kernels.gqa:sdpa_gqa",
                            "torch scaled_dot_product_attention(enable_gqa=True), "
                            "causal_lower_right mask"),
        "repeat_kv": variant("kfuzz.kernels.gqa:repeat_kv",
                             "key/value heads repeated G times (repeat_interleave), then "
                             "torch SDPA"),
        **ort("ops.gqa", "ort_gqa", "group_query_attention",
              "com.microsoft GroupQueryAttention with present_key/present_value outputs, the "
              "past as past_key/past_value", dtypes=("float32", "float16")),
        **ort("ops.gqa", "ort_gqa_no_present", "group_query_attention_no_present",
              "com.microsoft GroupQueryAttention without its optional present_key/"
              "present_value outputs", dtypes=("float32", "float16")),
        **jax("ops.gqa", "gqa", "jax.nn.dot_product_attention with Hkv < Hq key/value heads "
              "(shared by G query heads) and a bottom-right causal mask"),
    },
    default_kernel="sdpa_gqa",
    oracles={"fp64": variant(gqa_fp64, "float64 grouped-query attention from the formula")},
    comparator=GQA_TOLERANCE,
    comparator_doc="allclose(atol=1e-2, rtol=1e-2) against float64 rounded to the output "
                   "dtype: ops.sdpa's tolerance",
    max_numel=OPS_MAX_NUMEL,
)
