"""Seeded-fault targets (`faults.*`): correct kernels with one fault each, for benchmarking
how fast and how small a search finds a fault (bench/bug_finding.py). A plugin (`TARGETS`),
loaded by `bench.faults.load()` or `--plugin bench.faults.targets` from the repository root.

Each target's default kernel is `reference`, a correct kernel that passes the default
comparator on every case of the target's case space; every other kernel is `reference` with
one fault of `bench.faults.kernels`. So any case on which a fault kernel fails shows that fault.

- `faults.softmax`: the case space, inputs, oracle and comparator of `ops.softmax`; its
  `tail_mask_bf16_store` kernel has two faults of different kinds on one output (a masking
  bug and a rounding bug: two findings, two signatures).
- `faults.rmsnorm`: those of `ops.rmsnorm`, less the `edge` value distributions (the FP32
  reference itself overflows x**2 near the BF16 maximum, a fault of its own).
- `faults.sparse_attn`: the case space and inputs of `dsv4.sparse_attn`, with the post-fix
  tiled golden (tile 64) as oracle, which the correct tile-64 kernel matches bit for bit.
- `faults.window_attn`: sliding-window attention of the last T positions of S keys.
- `faults.rope`: the case space, inputs and comparator of `ops.rope`, with the FP32 kernel's
  own arithmetic as the golden (see `ROPE_GOLDEN_DOC`).
The low-precision rsqrt fault is `dsv4.q_norm_rope`'s kernel `rsqrt_hw` (reference:
`recip_sqrt`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import values
from kfuzz.judge.comparator import Comparator
from kfuzz.kernels import ops as k
from kfuzz.kernels.deepseek_v4 import sparse_attn
from kfuzz.oracles import ops as o
from kfuzz.oracles.deepseek_v4 import sparse_attn_tiled
from kfuzz.settings import LOW_PRECISION
from kfuzz.targets.builtin.ops import COMPARATOR_DOC
from kfuzz.targets.declare import define, tensor, variant
from kfuzz.targets.registry import Target, get
from kfuzz.targets.specs import as_variants

from bench.faults import kernels as f

WINDOW_MAX_NUMEL = 1 << 20


def _faulty(builtin: str, name: str, doc: str, kernels: dict[str, Any], **changes: Any) -> Target:
    """The built-in target `builtin` as `name`, kept out of `run --all`, with the seeded-fault
    kernels (name -> `variant(...)`, "reference" the default) and other fields changed
    (`changes`; oracles as name -> `variant(...)`)."""
    if "oracles" in changes:
        changes["oracles"] = as_variants("oracle", changes["oracles"], name)
    return replace(get(builtin), name=name, doc=doc, in_all=False, default_kernel="reference",
                   kernels=as_variants("kernel", kernels, name), **changes)


# -- faults.softmax ---------------------------------------------------------------------------

SOFTMAX = _faulty(
    "ops.softmax",
    "faults.softmax",
    "ops.softmax with seeded faults: FP32 softmax without the max subtraction, with the row "
    "max started at 0, with a tail mask one lane short plus a BF16 store (two root causes on "
    "one output)",
    {
        "reference": variant(k.softmax_fp32, "torch softmax in FP32, rounded once"),
        "no_max": variant(f.softmax_no_max,
                          "fault: exp(x) / sum(exp(x)) in FP32, no max subtraction"),
        "max_init_zero": variant(f.softmax_max_init_zero,
                                 "fault: the row max starts at 0 instead of -inf"),
        "tail_mask_bf16_store": variant(
            f.softmax_tail_mask_bf16_store,
            f"two faults: rows over {f.SOFTMAX_TILE} elements, not a multiple of "
            f"{f.SOFTMAX_TILE}, lose their last element to the tail mask; FP16 outputs are "
            "rounded to BF16 first"),
        "nan_as_mask": variant(f.softmax_nan_as_mask,
                               "fault: a NaN logit read as a masked one (-inf)"),
    },
)


# -- faults.rmsnorm ---------------------------------------------------------------------------

RMSNORM_KINDS = ("normal", "uniform", "log_uniform", "outliers", "constant_rows")


def _rmsnorm_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    return fst.case_dicts({
        "shape": fst.shapes(fst.Dim(1, 64), fst.Dim(1, 8192), max_numel=max_numel),
        "dtype": fst.dtypes(LOW_PRECISION),
        "x": fst.distributions(kinds=RMSNORM_KINDS, specials=fst.SPECIALS),
        "eps": st.sampled_from([1e-6, 1e-5]),
        "seed": fst.seeds(),
    })


RMSNORM = _faulty(
    "ops.rmsnorm",
    "faults.rmsnorm",
    "ops.rmsnorm (without edge-of-range values) with seeded faults: BF16 accumulation of the "
    "mean of squares, eps added after the root, a power-of-two fast path whose tree reduction "
    "stops one level early",
    {
        "reference": variant(k.rmsnorm_fp32, "RMSNorm in FP32, rounded once"),
        "bf16_accumulate": variant(
            f.rmsnorm_bf16_accumulate,
            f"fault: sum of squares accumulated in {f.BF16_ACCUMULATOR_LANES} BF16 lanes"),
        "eps_after_root": variant(f.rmsnorm_eps_after_root, "fault: x / (sqrt(mean(x^2)) + eps)"),
        "pow2_tree": variant(f.rmsnorm_pow2_tree,
                             "fault: power-of-two rows sum their squares by a tree reduction "
                             "that stops one level early"),
        "prescale_max": variant(f.rmsnorm_prescale_max,
                                "fault: the row divided by its largest magnitude first (NaN "
                                "rows where it holds +-Inf)"),
        "daz": variant(f.rmsnorm_daz, "fault: subnormal inputs read as zero (denormals-are-zero)"),
        "block_sum": variant(f.rmsnorm_block_sum,
                             f"fault: squares moved {f.BLOCK_ROWS} rows at a time by a product "
                             "with the identity (a NaN or Inf in one row reaches its block's "
                             "other rows)"),
    },
    cases=_rmsnorm_cases,
)


# -- faults.sparse_attn -----------------------------------------------------------------------

SPARSE_ATTN = _faulty(
    "dsv4.sparse_attn",
    "faults.sparse_attn",
    "dsv4.sparse_attn (tile 64) with seeded faults: a tile merge without rescaling, -1 padding "
    "gathered, the tail tile dropped, a one-row tail tile left unscaled, the running max "
    "started at the mask value -1e4",
    {
        "reference": variant(sparse_attn, "NPU kernel emulation, tile 64", tile=64),
        "merge_no_rescale": variant(f.sparse_attn_merge_no_rescale,
                                    "fault: tiles merged without exp(m - m') rescaling", tile=64),
        "gather_negative": variant(f.sparse_attn_gather_negative,
                                   "fault: -1 padding gathered as the last row", tile=64),
        "drop_tail": variant(f.sparse_attn_drop_tail,
                             "fault: the last K % 64 index positions are never read", tile=64),
        "tail_one_unscaled": variant(
            f.sparse_attn_tail_one_unscaled,
            "fault: a tail tile of one index position is scored without D^-0.5", tile=64),
        "max_init_mask": variant(f.sparse_attn_max_init_mask,
                                 "fault: the running max starts at -1e4 instead of -inf", tile=64),
        "prefix_length": variant(f.sparse_attn_prefix_length,
                                 "fault: a token's valid slots read as a prefix of their count",
                                 tile=64),
        "masked_rows_leak": variant(f.sparse_attn_masked_rows_leak,
                                    "fault: skipped slots' gathered row stays in the weighted "
                                    "sum (0 * Inf = NaN)", tile=64),
    },
    oracles={"tiled64": variant(sparse_attn_tiled,
                                "post-fix golden mirroring the kernel's tiling, tile 64", tile=64)},
    default_oracle="tiled64",
)


# -- faults.window_attn -----------------------------------------------------------------------

def _window_cases(max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def cases(draw: st.DrawFn) -> dict[str, Any]:
        shape = draw(fst.shapes(fst.Dim(1, 2048), fst.Dim(1, 16), fst.Dim(1, 128),
                                max_numel=max_numel))
        return {
            "shape": shape,
            "tokens": draw(st.integers(1, min(8, shape[0]))),
            "window": draw(fst.sides(min_side=1, max_side=256)),
            # No value regimes: with q and k shifted or spread by thousands, the scores leave
            # the range where the FP32 reference matches the float64 oracle within the default
            # tolerance, and a seeded-fault target needs a reference that passes every case.
            "x": draw(fst.distributions(kinds=("normal",), min_scale_exp=-2, max_scale_exp=2,
                                        regimes=())),
            "seed": draw(fst.seeds()),
        }

    return cases()


def _window_inputs(case: dict[str, Any], gen: torch.Generator) -> dict[str, torch.Tensor]:
    s, h, d = case["shape"]
    t = case["tokens"]
    return {name: values(gen, shape, torch.bfloat16, case["x"])
            for name, shape in (("q", [t, h, d]), ("k", [s, h, d]), ("v", [s, h, d]))}


WINDOW_ATTN = define(
    "faults.window_attn",
    doc="sliding-window attention of the last T of S positions, FP32, with seeded faults: an "
        "off-by-one window, a full-window fast path taken one key early",
    # Finite normal values only: its faults are in the window's arithmetic.
    inputs={"q": tensor("T H D", dtypes=["bfloat16"], note="queries at positions S-T..S-1",
                        excludes=fst.SPECIALS),
            "k": tensor("S H D", dtypes=["bfloat16"], note="keys", excludes=fst.SPECIALS),
            "v": tensor("S H D", dtypes=["bfloat16"], note="values", excludes=fst.SPECIALS)},
    outputs={"out": tensor("T H D", dtypes=["bfloat16"])},
    params={"window": "int"},
    shape="S H D",
    sizes={"T": "tokens"},
    cases=_window_cases,
    materialise=_window_inputs,
    kernels={
        "reference": variant(f.window_attn,
                             "FP32 softmax over keys p - window < j <= p, rounded once"),
        "window_off_by_one": variant(f.window_attn, "fault: also sees the key at p - window",
                                     off_by_one=True),
        "full_window_guard": variant(f.window_attn_full_guard,
                                     "fault: the causal fast path taken when window >= S - 1"),
    },
    oracles={"fp64": variant(f.window_attn_fp64, "the same window in float64")},
    comparator=Comparator(),
    comparator_doc=COMPARATOR_DOC,
    max_numel=WINDOW_MAX_NUMEL,
    in_all=False,
    register=False,
)


# -- faults.rope ------------------------------------------------------------------------------

ROPE_GOLDEN_DOC = (
    "the FP32 kernel's own arithmetic (cos/sin tables built in float64 and rounded to FP32, "
    "FP32 products, one rounding): against ops.rope's float64 oracle even that correct kernel "
    "fails a few cases (FP16 outputs that cancel to near zero from inputs in the hundreds or "
    "more differ by over atol), so the seeded faults are judged against the arithmetic they "
    "depart from, as faults.sparse_attn's are")

ROPE = _faulty(
    "ops.rope",
    "faults.rope",
    "ops.rope with seeded faults: a launch grid one program short when T * H = 1 (mod 128), an "
    "FP16 head-dim-128 fast path with NeoX pairing",
    {
        "reference": variant(k.rope_fp32,
                             "interleaved RoPE in FP32, float64-built tables, rounded once"),
        "rows_tail_one": variant(
            f.rope_rows_tail_one,
            f"fault: grid of cdiv(T * H - 1, {f.ROPE_ROWS_PER_BLOCK}) programs; the last row "
            "stays unrotated when T * H = 1 (mod 128)"),
        "fp16_head128_neox": variant(
            f.rope_fp16_head128_neox,
            "fault: FP16 with D = 128 pairs (x[i], x[i + 64]) instead of (x[2i], x[2i + 1])"),
    },
    oracles={
        "fp32": variant(k.rope_fp32, "golden: " + ROPE_GOLDEN_DOC),
        "fp64": variant(o.rope_fp64, "float64 RoPE, float64 angles (ops.rope's)"),
    },
    default_oracle="fp32",
)

# Registered by `kfuzz.targets.load_plugin`, which records the plugin with their findings.
TARGETS = [SOFTMAX, RMSNORM, SPARSE_ATTN, WINDOW_ATTN, ROPE]
