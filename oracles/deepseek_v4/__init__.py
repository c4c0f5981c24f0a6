"""Golden references for DeepSeek-V4 decode kernels."""

from kfuzz.oracles.deepseek_v4.q_norm_rope import q_norm_rope_fp32_rsqrt, q_norm_rope_fp64
from kfuzz.oracles.deepseek_v4.sparse_attn import (
    sparse_attn_fp64,
    sparse_attn_full_fp32,
    sparse_attn_tiled,
)

__all__ = [
    "q_norm_rope_fp32_rsqrt",
    "q_norm_rope_fp64",
    "sparse_attn_fp64",
    "sparse_attn_full_fp32",
    "sparse_attn_tiled",
]
