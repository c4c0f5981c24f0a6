"""The `ops.*` targets: RMSNorm, softmax, RoPE and LayerNorm in BF16/FP16/FP32, with torch
eager and compiled kernels, and ONNX Runtime and JAX ones (`kfuzz.targets.libraries`).

Default comparator, for every output: allclose with torch.testing's per-dtype tolerances
(BF16 rtol 1.6e-2, FP16 rtol 1e-3, FP32 rtol 1.3e-6; atol 1e-5) against the float64 oracle
rounded to the output dtype, max_ratio 0. Why: a kernel that computes in FP32 and rounds once
is within half an ULP of that reference (plus FP32 noise), and those tolerances allow about
two ULPs at the top of a binade, so any element outside them means the kernel lost more
precision than one final rounding explains. The FP32-upcast variants pass it; the variants
that round every intermediate to BF16/FP16 are expected to fail it on some inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import dtype_of, integers, values
from kfuzz.judge.comparator import Comparator
from kfuzz.kernels import ops as k
from kfuzz.kernels.compiled import compiled
from kfuzz.targets.declare import define, tensor, variant
from kfuzz.targets.libraries import jax, ort

# The contract of a trained parameter (a norm's weight or bias, a sink logit): finite, normal,
# nonzero-signed values only; activations hold every special value (`tensor(excludes=...)`).
TRAINED = fst.SPECIALS
COMPARATOR_DOC = __doc__.split("Default comparator, for every output: ")[1].strip()
OPS_MAX_NUMEL = 1 << 18
# The dtypes the ops.* targets draw: BF16 first (what cases shrink toward), FP32 last.
OPS_DTYPES = ("bfloat16", "float16", "float32")


def _lowp_fp32(lowp: Any, fp32: Any, what: str) -> dict[str, Any]:
    return {
        "eager_lowp": variant(lowp, f"{what}, every op in the input dtype"),
        "eager_fp32": variant(fp32, f"{what}, upcast to FP32, one final rounding"),
        # Compiled lazily, once per shape class (kfuzz.kernels.compiled), so listing targets and
        # fuzzing eager variants never pay for Inductor.
        **{f"compiled_{kind}": variant(
            compiled(fn), f"eager_{kind} compiled by torch.compile (Inductor, dynamic shapes)")
           for kind, fn in (("lowp", lowp), ("fp32", fp32))},
    }


# -- ops.rmsnorm ------------------------------------------------------------------------------

ROWS_DIMS = (fst.Dim(1, 64), fst.Dim(1, 8192))
DEFAULT_WEIGHT = {"kind": "normal", "scale": 0.125}


def _rmsnorm_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    return fst.case_dicts({
        "shape": fst.shapes(*ROWS_DIMS, max_numel=max_numel),
        "dtype": fst.dtypes(OPS_DTYPES),
        "x": fst.distributions(specials=fst.SPECIALS),
        "eps": st.sampled_from([1e-6, 1e-5]),
        "seed": fst.seeds(),
    }, optional={
        # Per-channel weights: 1 + N(0, 0.125^2) unless drawn (distinct and extreme ones).
        "weight": fst.distributions(kinds=("normal", "log_uniform", "uniform"), min_scale_exp=-4,
                                    max_scale_exp=4, regimes=()),
    })


def _rmsnorm_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    dtype = dtype_of(case["dtype"])
    hidden = case["shape"][-1]
    # x first: a version-1 case draws its tensors in this order.
    x = values(gen, case["shape"], dtype, case["x"], name="x")
    weight = values(gen, [hidden], torch.float64, case.get("weight", DEFAULT_WEIGHT), name="weight")
    return {"x": x, "weight": (weight if "weight" in case else weight.add(1.0)).to(dtype)}


RMSNORM = define(
    "ops.rmsnorm",
    doc="RMSNorm over the last axis with a weight: y = x / sqrt(mean(x^2) + eps) * weight",
    inputs={"x": tensor("rows hidden", dtypes=OPS_DTYPES),
            "weight": tensor("hidden", dtypes="x", note="about 1 +- 0.125", excludes=TRAINED)},
    params={"eps": "float"},
    shape=dict(zip(("rows", "hidden"), ROWS_DIMS, strict=True)),
    cases=_rmsnorm_cases,
    materialise=_rmsnorm_inputs,
    kernels={**_lowp_fp32(k.rmsnorm_lowp, k.rmsnorm_fp32, "torch eager RMSNorm"),
             **ort("ops.rmsnorm", "ort_rmsnorm", "rmsnorm", "RMSNormalization (opset 23)"),
             **ort("ops.rmsnorm", "ort_simplified", "simplified_layernorm",
                   "SimplifiedLayerNormalization (contrib op, ONNX domain)"),
             **jax("ops.rmsnorm", "rmsnorm", "RMSNorm in jax.numpy, FP32 inside", bucketed=True)},
    oracles={"fp64": variant("kfuzz.oracles.ops:rmsnorm_fp64", "float64 RMSNorm")},
    comparator=Comparator(),
    comparator_doc=COMPARATOR_DOC,
    max_numel=OPS_MAX_NUMEL,
)


# -- ops.softmax ------------------------------------------------------------------------------

def _softmax_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    return fst.case_dicts({
        "shape": fst.shapes(*ROWS_DIMS, max_numel=max_numel),
        "dtype": fst.dtypes(OPS_DTYPES),
        "x": fst.distributions(kinds=("normal", "uniform", "outliers", "constant_rows"),
                               specials=fst.SPECIALS),
        "seed": fst.seeds(),
    })


SOFTMAX = define(
    "ops.softmax",
    doc="Softmax over the last axis",
    inputs={"x": tensor("rows cols", dtypes=OPS_DTYPES, note="logits")},
    shape=dict(zip(("rows", "cols"), ROWS_DIMS, strict=True)),
    cases=_softmax_cases,
    materialise=lambda case, gen: {
        "x": values(gen, case["shape"], dtype_of(case["dtype"]), case["x"], name="x")
    },
    kernels={**_lowp_fp32(k.softmax_lowp, k.softmax_fp32, "torch eager softmax"),
             **ort("ops.softmax", "ort_softmax", "softmax", "Softmax (opset 13)"),
             **jax("ops.softmax", "softmax", "jax.nn.softmax", bucketed=True)},
    oracles={"fp64": variant("kfuzz.oracles.ops:softmax_fp64", "float64 softmax")},
    comparator=Comparator(),
    comparator_doc=COMPARATOR_DOC,
    max_numel=OPS_MAX_NUMEL,
)


# -- ops.rope ---------------------------------------------------------------------------------

ROPE_DIMS = (fst.Dim(1, 64), fst.Dim(1, 16), fst.Dim(2, 256, multiple_of=2))


def late_positions() -> st.SearchStrategy[bool]:
    """A swarm flag: positions drawn from the last 16 below max_position (one case in four)."""
    return st.integers(0, 3).map(lambda v: v == 3)


def positions(gen: torch.Generator, case: dict[str, Any], tokens: int) -> torch.Tensor:
    """[tokens] int64 positions in [0, max_position), or in its last 16 with late_positions."""
    top = int(case["max_position"])
    low = max(0, top - 16) if case.get("late_positions") else 0
    return integers(gen, (tokens,), low, top, name="positions")


def _rope_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    return fst.case_dicts({
        "shape": fst.shapes(*ROPE_DIMS, max_numel=max_numel),
        "dtype": fst.dtypes(OPS_DTYPES),
        "x": fst.distributions(kinds=("normal", "uniform", "log_uniform"), specials=fst.SPECIALS),
        # At least 2: with every position 0 RoPE is the identity and the case tests nothing.
        "max_position": st.integers(1, 16).map(lambda e: 2**e),
        "base": st.sampled_from([10000.0, 500000.0]),
        "seed": fst.seeds(),
    }, optional={"late_positions": late_positions()})


def _rope_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    x = values(gen, case["shape"], dtype_of(case["dtype"]), case["x"], name="x")
    return {"x": x, "positions": positions(gen, case, case["shape"][0])}


define(
    "ops.rope",
    doc="Rotary position embedding on interleaved (even, odd) pairs of the last axis",
    inputs={"x": tensor("tokens heads dim", dtypes=OPS_DTYPES, note="dim even"),
            "positions": tensor("tokens", dtypes=["int64"], note="in [0, max_position)")},
    params={"base": "float"},
    shape=dict(zip(("tokens", "heads", "dim"), ROPE_DIMS, strict=True)),
    cases=_rope_cases,
    materialise=_rope_inputs,
    kernels={**_lowp_fp32(k.rope_lowp, k.rope_fp32, "torch eager RoPE"),
             **ort("ops.rope", "ort_rope", "rope", "RotaryEmbedding (opset 23), interleaved"),
             **ort("ops.rope", "ort_rope_ms", "rope_ms",
                   "com.microsoft RotaryEmbedding, interleaved")},
    oracles={"fp64": variant("kfuzz.oracles.ops:rope_fp64", "float64 RoPE, float64 angles")},
    comparator=Comparator(),
    comparator_doc=COMPARATOR_DOC,
    max_numel=OPS_MAX_NUMEL,
)


# -- ops.layernorm ----------------------------------------------------------------------------

DEFAULT_BIAS = {"kind": "normal", "scale": 0.125}


def _layernorm_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    weights = fst.distributions(kinds=("normal", "log_uniform", "uniform"), min_scale_exp=-4,
                                max_scale_exp=4, regimes=())
    return fst.case_dicts({
        "shape": fst.shapes(*ROWS_DIMS, max_numel=max_numel),
        "dtype": fst.dtypes(OPS_DTYPES),
        "x": fst.distributions(specials=fst.SPECIALS),
        "eps": st.sampled_from([1e-5, 1e-6, 1e-12]),
        "seed": fst.seeds(),
    }, optional={"weight": weights, "bias": weights})


def _layernorm_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    dtype = dtype_of(case["dtype"])
    hidden = case["shape"][-1]
    x = values(gen, case["shape"], dtype, case["x"], name="x")
    weight = values(gen, [hidden], torch.float64, case.get("weight", DEFAULT_WEIGHT),
                    name="weight")
    bias = values(gen, [hidden], torch.float64, case.get("bias", DEFAULT_BIAS), name="bias")
    return {"x": x, "weight": (weight if "weight" in case else weight.add(1.0)).to(dtype),
            "bias": bias.to(dtype)}


define(
    "ops.layernorm",
    doc="LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * weight + bias "
        "(biased variance, the ONNX LayerNormalization formula)",
    inputs={"x": tensor("rows hidden", dtypes=OPS_DTYPES),
            "weight": tensor("hidden", dtypes="x", note="about 1 +- 0.125", excludes=TRAINED),
            "bias": tensor("hidden", dtypes="x", note="about 0 +- 0.125", excludes=TRAINED)},
    params={"eps": "float"},
    shape=dict(zip(("rows", "hidden"), ROWS_DIMS, strict=True)),
    cases=_layernorm_cases,
    materialise=_layernorm_inputs,
    kernels={
        "eager_lowp": variant("kfuzz.kernels.layernorm:layernorm_lowp",
                              "torch layer_norm in the input dtype"),
        "eager_fp32": variant("kfuzz.kernels.layernorm:layernorm_fp32",
                              "torch layer_norm upcast to FP32, one final rounding"),
        **ort("ops.layernorm", "ort_layernorm", "layernorm", "LayerNormalization (opset 17)"),
    },
    oracles={"fp64": variant("kfuzz.oracles.layernorm:layernorm_fp64", "float64 LayerNorm")},
    comparator=Comparator(),
    comparator_doc=COMPARATOR_DOC,
    max_numel=OPS_MAX_NUMEL,
)
