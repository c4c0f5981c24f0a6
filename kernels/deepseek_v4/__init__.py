"""CPU/GPU torch emulations of DeepSeek-V4 decode kernels' numerics."""

from kfuzz.kernels.deepseek_v4.bf16 import round_to_bf16
from kfuzz.kernels.deepseek_v4.q_norm_rope import INV_ROOTS, q_norm_rope
from kfuzz.kernels.deepseek_v4.sparse_attn import sparse_attn

__all__ = ["INV_ROOTS", "q_norm_rope", "round_to_bf16", "sparse_attn"]
