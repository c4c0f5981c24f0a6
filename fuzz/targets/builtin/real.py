"""Targets for real kernels: Triton (`triton.*`) and torch's SDPA backends (`ops.sdpa*`).

Triton kernels follow their tensors: with `--device cuda` they run compiled on the GPU; on the
CPU they run in Triton's interpreter (TRITON_INTERPRET=1 is set by `kfuzz.kernels.triton` on a
machine without CUDA). Without the `triton` extra the `triton.*` targets are still listed,
their kernels marked unavailable, and running one stops with a one-line error.

A kernel that cannot run on the device asked for (no triton, a CUDA-only SDPA backend on a
CPU) raises `KernelUnavailable` naming the kernel, the device and the fix: `kfuzz run` stops
with exit status 2, `kfuzz replay` marks that finding "error" and goes on.

Comparators:
- `triton.rmsnorm`, `triton.softmax`: round-to-nearest check. Each output must lie within
  0.51 ULP (of the output dtype) of the unrounded float64 result. Why: a kernel computing in
  FP32 and rounding once to nearest is within 0.5 ULP plus FP32 noise (under 1e-3 ULP at
  these sizes); a kernel that truncates is up to 1 ULP off, so about half its elements fail.
- `triton.sparse_attn`: exact against the post-fix tiled golden with the same tile, 5%
  budget. Why: the kernel mirrors the golden's tiling and casts, so only the FP32 summation
  order of its dot products separates them; that moves an exp weight across a BF16 rounding
  boundary now and then, and with it the outputs of that head. Measured in the interpreter
  over 120 drawn cases: 98 identical, at most 0.86% of outputs differing (a targeted search
  reached 2.3%); rounding the exp weights and outputs by truncation instead differs in a
  median 40% of outputs.
- `ops.sdpa`: allclose(atol=1e-2, rtol=1e-2) against the float64 result rounded to the
  output dtype. Why: on an H100 the flash, efficient and cuDNN backends all pass it while
  about 5% of their BF16 outputs fail torch's default BF16 tolerance.
- `ops.sdpa_fa`: FlashAttention's rule as a target. Its kernels run an SDPA backend and
  return each element's error against float64 as a fraction of what the rule allows (twice
  the worst error of a plain low-precision implementation, plus a rounding-noise floor; see
  `kfuzz.oracles.sdpa.fa_rule_ratio`); the oracle is zero and an element fails above 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import dtype_of, values
from kfuzz.errors import KernelUnavailable
from kfuzz.judge.comparator import Comparator
from kfuzz.kernels import triton as ktriton
from kfuzz.kernels.availability import Unavailable
from kfuzz.kernels.sdpa import sdpa
from kfuzz.oracles.sdpa import fa_rule_ratio, sdpa_fp64, sdpa_lowp
from kfuzz.settings import LOW_PRECISION
from kfuzz.targets.builtin.dsv4 import (
    SPARSE_INPUTS,
    SPARSE_ORACLES,
    SPARSE_OUTPUTS,
    SPARSE_SIZES,
    sparse_cases,
    sparse_inputs,
)
from kfuzz.targets.builtin.ops import TRAINED
from kfuzz.targets.declare import define, tensor, variant
from kfuzz.targets.libraries import jax, ort

ROUND_TO_NEAREST = Comparator(mode="ulp", ulp=0.51, round_expected=False)
ROUND_TO_NEAREST_DOC = ("ulp(0.51) against the unrounded float64 result: a kernel that rounds "
                        "its FP32 result to nearest is within 0.5 ULP plus FP32 noise; one that "
                        "truncates is up to 1 ULP off")
TILED_EXACT = Comparator(mode="exact", max_ratio=0.05)
SDPA_TOLERANCE = Comparator(mode="allclose", atol=1e-2, rtol=1e-2)
FA_RULE = Comparator(mode="allclose", atol=1.0, rtol=0.0, round_expected=False)
FA_FACTOR = 2.0
OPS_MAX_NUMEL = 1 << 18


def _device_of(kwargs: dict[str, Any]) -> str:
    for value in kwargs.values():
        if isinstance(value, torch.Tensor):
            return str(value.device)
    return "?"


def _guarded(target: str, kernel: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn, with `kfuzz.kernels.availability.Unavailable` turned into KernelUnavailable naming the
    target, kernel and device."""

    def call(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Unavailable as exc:
            raise KernelUnavailable(
                f"{target} kernel {kernel!r} cannot run on {_device_of(kwargs)}: {exc}"
            ) from None

    call.__name__ = call.__qualname__ = kernel
    return call


def _variant(target: str, name: str, fn: Callable[..., Any], doc: str, **params: Any) -> Any:
    return variant(_guarded(target, name, fn), doc, **params)


# -- Triton: lazy, so that listing targets neither needs nor imports triton -------------------

def _triton_fn(module: str, function: str) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return getattr(ktriton.load(module), function)(**kwargs)

    return call


def _triton_doc(doc: str) -> str:
    reason = ktriton.unavailable_reason()
    return doc if reason is None else f"{doc} (unavailable: {reason})"


def _triton_variant(target: str, name: str, module: str, doc: str, **params: Any) -> Any:
    return _variant(target, name, _triton_fn(module, module), _triton_doc(doc), **params)


def _row_cases(
    kinds: tuple[str, ...], extra: dict[str, st.SearchStrategy[Any]]
) -> Callable[[int], st.SearchStrategy[dict[str, Any]]]:
    # The ops.rmsnorm / ops.softmax case space without the "edge" distribution: BF16 values
    # near the overflow edge overflow x*x in any FP32 kernel (ops.rmsnorm's eager_fp32 too),
    # which is ops.rmsnorm's finding, not a question about casts or inverse roots.
    def cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
        return fst.case_dicts({
            "shape": fst.shapes(fst.Dim(1, 64), fst.Dim(1, 8192), max_numel=max_numel),
            "dtype": fst.dtypes(LOW_PRECISION),
            "x": fst.distributions(kinds=kinds, specials=fst.SPECIALS),
            **extra,
            "seed": fst.seeds(),
        })

    return cases


def _rmsnorm_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    dtype = dtype_of(case["dtype"])
    return {
        "x": values(gen, case["shape"], dtype, case["x"]),
        "weight": values(gen, [case["shape"][-1]], torch.float64,
                         {"kind": "normal", "scale": 0.125}).add(1.0).to(dtype),
    }


INV_ROOT_DOCS = {
    "rsqrt": "tl.rsqrt",
    "recip_sqrt": "1 / tl.sqrt",
    "ieee": "div_rn(1, sqrt_rn(x)), IEEE-rounded",
}


def _rmsnorm_kernels() -> dict[str, Any]:
    out = {}
    for root, root_doc in INV_ROOT_DOCS.items():
        for cast, suffix, cast_doc in (("kernel", "", "cast to the output dtype in the kernel"),
                                       ("torch", "_torchcast", "FP32 store, cast by torch")):
            name = root + suffix
            out[name] = _triton_variant("triton.rmsnorm", name, "rmsnorm",
                                        f"Triton RMSNorm, inverse root {root_doc}, {cast_doc}",
                                        inv_root=root, cast=cast)
    out["eager_fp32"] = variant("kfuzz.kernels.ops:rmsnorm_fp32",
                                "torch eager RMSNorm in FP32, one final rounding")
    return out


# The shrinker cuts the triton.* shapes down to 1 (no Dim bounds: shape given as a string).
define(
    "triton.rmsnorm",
    doc="Triton RMSNorm over the last axis with a weight (compiled on CUDA, interpreted on CPU)",
    inputs={"x": tensor("rows hidden", dtypes=LOW_PRECISION),
            "weight": tensor("hidden", dtypes="x", note="about 1 +- 0.125", excludes=TRAINED)},
    params={"eps": "float"},
    shape="rows hidden",
    cases=_row_cases(("normal", "uniform", "log_uniform", "outliers", "constant_rows"),
                     {"eps": st.sampled_from([1e-6, 1e-5])}),
    materialise=_rmsnorm_inputs,
    kernels=_rmsnorm_kernels(),
    default_kernel="rsqrt",
    oracles={"fp64": variant("kfuzz.oracles.ops:rmsnorm_fp64", "float64 RMSNorm")},
    comparator=ROUND_TO_NEAREST,
    comparator_doc=ROUND_TO_NEAREST_DOC,
    max_numel=OPS_MAX_NUMEL,
)


define(
    "triton.softmax",
    doc="Triton softmax over the last axis (compiled on CUDA, interpreted on CPU)",
    inputs={"x": tensor("rows cols", dtypes=LOW_PRECISION, note="logits")},
    shape="rows cols",
    cases=_row_cases(("normal", "uniform", "outliers", "constant_rows"), {}),
    materialise=lambda case, gen: {
        "x": values(gen, case["shape"], dtype_of(case["dtype"]), case["x"])},
    kernels={
        "incast": _triton_variant("triton.softmax", "incast", "softmax",
                                  "Triton softmax in FP32, cast to the output dtype in the kernel",
                                  cast="kernel"),
        "torchcast": _triton_variant("triton.softmax", "torchcast", "softmax",
                                     "Triton softmax in FP32, FP32 store, cast by torch",
                                     cast="torch"),
        "eager_fp32": variant("kfuzz.kernels.ops:softmax_fp32",
                              "torch eager softmax in FP32, one final rounding"),
    },
    oracles={"fp64": variant("kfuzz.oracles.ops:softmax_fp64", "float64 softmax")},
    comparator=ROUND_TO_NEAREST,
    comparator_doc=ROUND_TO_NEAREST_DOC,
    max_numel=OPS_MAX_NUMEL,
)


TILES = (64, 32, 128)


def _sparse_kernels() -> dict[str, Any]:
    out = {}
    for tile in TILES:
        for rounding, suffix, doc in (
            ("bits", "", "BF16 rounding to nearest even by integer ops on the FP32 bits"),
            ("cast", "_cast", "BF16 rounding by Triton's .to(tl.bfloat16)"),
        ):
            name = f"triton{tile}{suffix}"
            out[name] = _triton_variant("triton.sparse_attn", name, "sparse_attn",
                                        f"Triton tiled sparse attention, tile {tile}, {doc}",
                                        tile=tile, rounding=rounding)
    out["emulation64"] = variant("kfuzz.kernels.deepseek_v4:sparse_attn",
                                 "torch emulation of the NPU kernel, tile 64", tile=64)
    return out


define(
    "triton.sparse_attn",
    doc="Triton DeepSeek-V4 sparse decode attention with the numerics of its torch emulation "
        "(compiled on CUDA, interpreted on CPU); same case space as dsv4.sparse_attn",
    inputs=SPARSE_INPUTS,
    outputs=SPARSE_OUTPUTS,
    shape="T H D",
    sizes=SPARSE_SIZES,
    cases=sparse_cases,
    materialise=sparse_inputs,
    kernels=_sparse_kernels(),
    oracles=SPARSE_ORACLES,
    default_oracle="tiled64",
    comparator=TILED_EXACT,
    comparator_doc="exact against the tiled golden of the same tile, 5% budget: only the FP32 "
                   "summation order of the dot products may separate kernel and golden",
    max_numel=1 << 21,
)


# -- ops.sdpa and ops.sdpa_fa -----------------------------------------------------------------

HEAD_DIMS = (64, 128, 32, 16, 8, 256, 80, 96)


def _sdpa_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def cases(draw: st.DrawFn) -> dict[str, Any]:
        head_dim = draw(st.sampled_from(HEAD_DIMS))
        # q is [B, H, Lq, D] and k, v are [B, H, Lk, D]: both stay within max_numel.
        b, h, q_len = draw(fst.shapes(fst.Dim(1, 4), fst.Dim(1, 16), fst.Dim(1, 512),
                                      max_numel=max(max_numel // head_dim, 1)))
        k_len = draw(fst.sides(min_side=1, max_side=max(min(512, max_numel // (b * h * head_dim)), 1)))
        return {
            "shape": [b, h, q_len, k_len, head_dim],
            "dtype": draw(fst.dtypes(LOW_PRECISION)),
            "causal": draw(st.booleans()),
            **attention_values(draw),
            "seed": draw(fst.seeds()),
        }

    return cases()


def attention_values(draw: st.DrawFn) -> dict[str, Any]:
    """The value descriptions of an attention case, "q" then "kv" (`ops.sdpa`, `ops.gqa`).
    Logits reach about +-16 standard deviations (peaked softmax, many rescales in an online
    softmax); values stay near 1 so that one absolute tolerance fits them. No outliers: their
    2**16 magnitudes overflow FP16 inputs to inf. (Uniform draws are offset by up to 64, so k
    and v are normal.)"""
    return {
        "q": draw(fst.distributions(kinds=("normal", "uniform"), min_scale_exp=-4,
                                    max_scale_exp=4, specials=SDPA_SPECIALS)),
        "kv": draw(fst.distributions(kinds=("normal",), min_scale_exp=-4, max_scale_exp=0,
                                     specials=SDPA_SPECIALS)),
    }


def _sdpa_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    b, h, q_len, k_len, d = case["shape"]
    dtype = dtype_of(case["dtype"])
    return {
        "q": values(gen, [b, h, q_len, d], dtype, case["q"]),
        "k": values(gen, [b, h, k_len, d], dtype, case["kv"]),
        "v": values(gen, [b, h, k_len, d], dtype, case["kv"]),
    }


def _sdpa_params(case: dict[str, Any]) -> dict[str, Any]:
    return {"causal": bool(case["causal"]), "scale": 1.0 / math.sqrt(case["shape"][-1])}


BACKEND_DOCS = {
    "math": "SDPBackend.MATH (CPU and CUDA)",
    "flash": "SDPBackend.FLASH_ATTENTION (CUDA; torch's CPU flash kernel on the CPU)",
    "efficient": "SDPBackend.EFFICIENT_ATTENTION (CUDA only)",
    "cudnn": "SDPBackend.CUDNN_ATTENTION (CUDA only)",
}
# Finite values: the FlashAttention rule (`ops.sdpa_fa`) compares error magnitudes, and one
# absolute tolerance (`ops.sdpa`) fits values near 1; subnormals and signed zeros are drawn.
SDPA_EXCLUDES = ("nan", "inf")
SDPA_SPECIALS = tuple(s for s in fst.SPECIALS if s not in SDPA_EXCLUDES)
SDPA_INPUTS = {
    "q": tensor("B H Lq D", dtypes=LOW_PRECISION, note="D in {8, 16, 32, 64, 80, 96, 128, 256}",
                excludes=SDPA_EXCLUDES),
    "k": tensor("B H Lk D", dtypes="q", excludes=SDPA_EXCLUDES),
    "v": tensor("B H Lk D", dtypes="q", excludes=SDPA_EXCLUDES),
}
SDPA_PARAMS = {"causal": "bool", "scale": "float"}
# The shrinker's bounds: the drawn ranges, D a multiple of 8 from 8 (every head dim of
# HEAD_DIMS is one, and so is every head dim the fused backends take).
SDPA_SHAPE = {"B": fst.Dim(1, 4), "H": fst.Dim(1, 16), "Lq": fst.Dim(1, 512),
              "Lk": fst.Dim(1, 512), "D": fst.Dim(8, 256, multiple_of=8)}


define(
    "ops.sdpa",
    doc="scaled_dot_product_attention with one backend at a time (causal = top-left aligned)",
    inputs=SDPA_INPUTS,
    outputs={"out": tensor("B H Lq D", dtypes="q")},
    params=SDPA_PARAMS,
    param_values=_sdpa_params,
    shape=SDPA_SHAPE,
    cases=_sdpa_cases,
    materialise=_sdpa_inputs,
    kernels={**{name: _variant("ops.sdpa", name, sdpa, f"torch SDPA, {doc}", backend=name)
                for name, doc in BACKEND_DOCS.items()},
             **ort("ops.sdpa", "ort_attention", "attention", "Attention (opset 23)",
                   dtypes=("float16",)),
             **ort("ops.sdpa", "ort_mha", "multihead_attention",
                   "com.microsoft MultiHeadAttention", dtypes=("float16",)),
             **jax("ops.sdpa", "attention", "jax.nn.dot_product_attention", bucketed=True)},
    default_kernel="flash",
    oracles={
        "fp64": variant(sdpa_fp64, "float64 attention"),
        "lowp": variant(sdpa_lowp, "plain attention, every step rounded to the input dtype "
                        "(FlashAttention's low-precision reference)"),
    },
    comparator=SDPA_TOLERANCE,
    comparator_doc="allclose(atol=1e-2, rtol=1e-2) against float64 rounded to the output "
                   "dtype: what flash, efficient and cuDNN pass on an H100",
    max_numel=OPS_MAX_NUMEL,
)


def fa_checked(kernel: Callable[..., torch.Tensor], *, factor: float = FA_FACTOR
               ) -> Callable[..., torch.Tensor]:
    """An `ops.sdpa_fa` kernel: run an attention kernel and judge it by FlashAttention's rule.

    Takes: kernel, fn(q, k, v, *, causal, scale) -> out with `ops.sdpa`'s signature (an SDPA
    backend, or your own kernel in a plugin target); factor, the rule's multiple of the plain
    low-precision implementation's worst error.
    Returns: fn(q, k, v, *, causal, scale) -> float64 [B, H, Lq, D] on the inputs' device,
    each element's error against float64 as a fraction of what the rule allows (above 1
    breaks it). The references are computed on the CPU from the same inputs.
    Raises: (when called) what `kernel` raises.
    """

    def ratio(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
              scale: float) -> torch.Tensor:
        out = kernel(q, k, v, causal=causal, scale=scale)
        cpu = (q.cpu(), k.cpu(), v.cpu())
        reference = sdpa_fp64(*cpu, causal=causal, scale=scale)
        baseline = sdpa_lowp(*cpu, causal=causal, scale=scale)
        return fa_rule_ratio(out.cpu(), reference, baseline, factor=factor).to(out.device)

    return ratio


define(
    "ops.sdpa_fa",
    doc="scaled_dot_product_attention judged by FlashAttention's rule: error vs float64 at "
        "most 2x that of a plain low-precision implementation, plus a rounding-noise floor",
    signature="fn(q, k, v, *, causal: bool, scale: float) -> ratio (error / allowed error)",
    inputs=SDPA_INPUTS,
    outputs={"ratio": tensor("B H Lq D", dtypes=["float64"],
                             note="|out - fp64| / (2 max|lowp - fp64| + floor)")},
    params=SDPA_PARAMS,
    param_values=_sdpa_params,
    shape=SDPA_SHAPE,
    cases=_sdpa_cases,
    materialise=_sdpa_inputs,
    kernels={name: _variant("ops.sdpa_fa", name, fa_checked(functools.partial(sdpa, backend=name)),
                            f"{doc}, error as a fraction of the FlashAttention rule's bound")
             for name, doc in BACKEND_DOCS.items()},
    default_kernel="flash",
    oracles={"zero": variant(lambda q, k, v, *, causal, scale: torch.zeros(
        q.shape, dtype=torch.float64), "the ideal: no error")},
    comparator=FA_RULE,
    comparator_doc="allclose(atol=1, rtol=0), unrounded: an element fails when its error "
                   "exceeds the FlashAttention rule's bound; --atol F --rtol 0 allows F times it",
    max_numel=OPS_MAX_NUMEL,
)
