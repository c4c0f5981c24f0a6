"""Built-in chains: `dsv4.decode`, the DeepSeek-V4 decode attention path as two stages.

Stage `q_norm_rope` is `dsv4.q_norm_rope` (per-head RMSNorm, BF16 store, RoPE) and stage
`sparse_attn` is `dsv4.sparse_attn` (sparse attention with sink) over the q it produced, each
with its own kernels, goldens and comparator. The chain's kernel defaults to the two targets'
kernels (`rsqrt_hw`, `tile64`); its golden to `fp64` and `tiled64`, the attention golden that
models the kernel's tiled online softmax with BF16 exp weights (`--oracle
sparse_attn=full_fp32` is the golden that does not). See docs/chains.md.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases.materialise import sparse_indices, values
from kfuzz.chains.declare import as_chain, placeholder
from kfuzz.shrink.cuts import index_set_reductions
from kfuzz.targets import registry
from kfuzz.targets.builtin.dsv4 import (
    DSV4_MAX_NUMEL,
    PYPTO,
    PYPTO_DOC,
    Q_EXAMPLE,
    SPARSE_EXAMPLE,
    SPARSE_INPUTS,
    SPARSE_OUTPUTS,
    SPARSE_SHAPE,
    SPARSE_SIZES,
    sparse_cases,
)
from kfuzz.targets.builtin.ops import positions
from kfuzz.targets.declare import define, tensor

Q_FIELDS = ("q", "rope_dim", "max_position", "eps", "late_positions")


def decode_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    """The attention case space (shape, index set, kv, sink, seed) with the query path's
    fields (q's values, rope_dim, max_position, eps) drawn from `dsv4.q_norm_rope`'s."""
    q_cases = registry.get("dsv4.q_norm_rope").cases(max_numel)

    def join(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        attn, query = pair
        case = {k: v for k, v in attn.items() if k != "sink_near_scores"}
        return {**case, **{k: query[k] for k in Q_FIELDS if k in query}}

    return st.tuples(sparse_cases(max_numel), q_cases).map(join)


def decode_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    t, h, d = case["shape"]
    return {
        "q": values(gen, [t, h, d], torch.float32, case["q"], name="q"),
        "positions": positions(gen, case, t),
        "kv": values(gen, [case["index"]["n_rows"], d], torch.bfloat16, case["kv"], name="kv"),
        "indices": sparse_indices(gen, t, case["index"], name="indices"),
        "sink": values(gen, [h], torch.float32, case["sink"], name="sink"),
    }


def decode(stages: Any, q: torch.Tensor, positions: torch.Tensor, kv: torch.Tensor,
           indices: torch.Tensor, sink: torch.Tensor, rope_dim: int, eps: float) -> torch.Tensor:
    """The decode path: the query's norm and RoPE, then sparse attention over that q."""
    q_out = stages.q_norm_rope(q=q, positions=positions, rope_dim=rope_dim, eps=eps)
    return stages.sparse_attn(q=q_out, kv=kv, indices=indices, sink=sink)


registry.register(as_chain(
    define(
        "dsv4.decode",
        doc="DeepSeek-V4 decode attention path as a chain: q_norm_rope (per-head RMSNorm, "
            "RoPE) -> sparse_attn (sparse attention with sink) over the q it produced",
        inputs={"q": tensor("T H D", dtypes=["float32"], note="projection output"),
                "positions": tensor("T", dtypes=["int64"]),
                **{k: v for k, v in SPARSE_INPUTS.items() if k != "q"}},
        outputs=SPARSE_OUTPUTS,
        params={"rope_dim": "int", "eps": "float"},
        shape=SPARSE_SHAPE,
        sizes=SPARSE_SIZES,
        cases=decode_cases,
        materialise=decode_inputs,
        oracles={"chain": placeholder},
        comparator=PYPTO,
        comparator_doc=PYPTO_DOC,
        max_numel=DSV4_MAX_NUMEL,
        reductions=index_set_reductions("index"),
        # The production decode step, run first: the attention case with the query path's
        # fields.
        examples=[{**SPARSE_EXAMPLE, **{k: Q_EXAMPLE[k] for k in Q_FIELDS if k in Q_EXAMPLE}}],
        register=False,
    ),
    {"q_norm_rope": "dsv4.q_norm_rope", "sparse_attn": "dsv4.sparse_attn"},
    decode,
    golden={"sparse_attn": "tiled64"},
    register=False,
))
