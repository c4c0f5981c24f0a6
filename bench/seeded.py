"""The seeded faults the bug-finding benchmark hunts, with what is known about each: where it
lives (target and kernel), the correct kernel it departs from, the production-shape case a
fixed-seed test would run, what a case needs for the fault to show, and a grid of small cases
for the brute-force search of the smallest failing case (bench/smallest.py).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import faults
from bench.faults.kernels import BLOCK_ROWS

# The faults.* targets are a plugin, not built in: every user of FAULTS needs them registered.
faults.load()

NORMAL = {"kind": "normal", "scale": 1.0}
# The DeepSeek-V4 decode index set at production size (bench/dsv4_case_study.py).
PROD_INDEX = {"n_rows": 4096, "k": 512, "n_valid": 512, "window": 128, "ragged": False,
              "duplicates": False, "sorted": False, "out_of_range": False}
# A fixed-seed test as pypto-lib runs one: a few fixed seeds, normal inputs.
FIXED_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Fault:
    """One seeded fault.

    name: short id; target, kernel: where it lives; reference: the correct kernel of the same
    target; pins: case fields held fixed in every search (CampaignConfig.pins); needs: what a
    case must have for the fault to show (from reading the kernel); production(seed) -> the
    production-shape case; grid() -> small candidate cases for the brute-force search of the
    smallest failing case (none: no brute force); oracle, comparator: None for the target's
    defaults; listed: one of the faults issue 7 lists (False for extras)."""

    name: str
    target: str
    kernel: str
    reference: str
    needs: str
    production: Callable[[int], dict[str, Any]]
    grid: Callable[[], Iterator[dict[str, Any]]]
    pins: dict[str, Any] = field(default_factory=dict)
    oracle: str | None = None
    comparator: dict[str, Any] | None = None
    listed: bool = True


def _softmax_production(seed: int) -> dict[str, Any]:
    return {"shape": [32, 8192], "dtype": "bfloat16", "x": NORMAL, "seed": seed}


def _rmsnorm_production(seed: int) -> dict[str, Any]:
    # DeepSeek-V3/V4 hidden size 7168, 32 tokens: within ops' 2**18 elements.
    return {"shape": [32, 7168], "dtype": "bfloat16", "x": NORMAL, "eps": 1e-6, "seed": seed}


def _attn_production(seed: int) -> dict[str, Any]:
    return {"shape": [4, 64, 512], "index": PROD_INDEX, "q": NORMAL, "kv": NORMAL,
            "sink": NORMAL, "seed": seed}


def _q_production(seed: int) -> dict[str, Any]:
    return {"shape": [4, 64, 512], "rope_dim": 64, "q": NORMAL, "max_position": 65536,
            "eps": 1e-6, "seed": seed}


def _window_production(seed: int) -> dict[str, Any]:
    return {"shape": [1024, 8, 128], "tokens": 4, "window": 128, "x": NORMAL, "seed": seed}


def _rope_production(seed: int) -> dict[str, Any]:
    # A 64-token prefill chunk, 16 heads of 128 dims (ops' 2**18 elements), BF16.
    return {"shape": [64, 16, 128], "dtype": "bfloat16", "x": NORMAL, "max_position": 4096,
            "base": 10000.0, "seed": seed}


def _no_grid() -> Iterator[dict[str, Any]]:
    return iter(())


def _scales(lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"kind": "normal", "scale": float(2.0**e)} for e in range(lo, hi + 1)]


def _softmax_grid(seeds: int = 4) -> Iterator[dict[str, Any]]:
    dists = _scales(-8, 8) + [
        {"kind": "uniform", "low": float(lo), "high": float(lo + 2**w)}
        for lo in (-64, -32, 0, 32, 64) for w in (0, 4, 8)
    ] + [{"kind": "outliers", "scale": 1.0, "fraction": 0.1, "magnitude": float(2**m)}
         for m in (8, 12, 16)]
    for rows, cols, dtype, x, seed in itertools.product(
            (1, 2), (1, 2, 3), ("bfloat16", "float16"), dists, range(seeds)):
        yield {"shape": [rows, cols], "dtype": dtype, "x": x, "seed": seed}


def _eps_grid() -> Iterator[dict[str, Any]]:
    dists = _scales(-8, 8) + [{"kind": "log_uniform", "min_exp": e, "max_exp": e,
                               "signed": True} for e in range(-8, 1)]
    for rows, hidden, dtype, x, eps, seed in itertools.product(
            (1, 2), (1, 2, 3), ("bfloat16", "float16"), dists, (1e-6, 1e-5), range(4)):
        yield {"shape": [rows, hidden], "dtype": dtype, "x": x, "eps": eps, "seed": seed}


def _accumulate_grid() -> Iterator[dict[str, Any]]:
    dists = [NORMAL, {"kind": "uniform", "low": 0.0, "high": 1.0},
             {"kind": "uniform", "low": 1.0, "high": 2.0},
             {"kind": "log_uniform", "min_exp": -4, "max_exp": 4, "signed": True},
             {"kind": "outliers", "scale": 1.0, "fraction": 0.01, "magnitude": 256.0}] + [
        {"kind": "constant_rows", "value": float(v), "fraction": 1.0} for v in (1, 3, 5, 6, 7)]
    hidden = list(range(1, 8)) + list(range(8, 8193, 8))
    for rows, h in itertools.product((1, 2, 4, 8, 16, 32), hidden):
        if rows * h > 1 << 18:
            continue
        for x, seed in itertools.product(dists, range(2)):
            yield {"shape": [rows, h], "dtype": "bfloat16", "x": x, "eps": 1e-6, "seed": seed}


def _special_dists(nonfinite: bool) -> list[dict[str, Any]]:
    """Descriptions holding special values: the subnormal edge, or NaN/Inf (scattered, rows)."""
    if not nonfinite:
        return [{"kind": "edge", "edge": "subnormal", "spread": s} for s in range(5)]
    rates = [{"nan": p, "inf": 0.0} for p in (0.5, 0.05)] + [
        {"nan": 0.0, "inf": p} for p in (0.5, 0.05)] + [
        {"nan": 0.0, "inf": 0.0, "rows": r} for r in (0.5, 0.1)]
    return [{"kind": "normal", "scale": 1.0, "nonfinite": r} for r in rates]


def _special_rmsnorm_grid(nonfinite: bool) -> Callable[[], Iterator[dict[str, Any]]]:
    def grid() -> Iterator[dict[str, Any]]:
        for rows, hidden, dtype, x, eps, seed in itertools.product(
                (1, 2, 3, 4, 5), (1, 2, 3), ("bfloat16", "float16"), _special_dists(nonfinite),
                (1e-6, 1e-5), range(4)):
            yield {"shape": [rows, hidden], "dtype": dtype, "x": x, "eps": eps, "seed": seed,
                   "materialise": 2}
    return grid


def _special_softmax_grid() -> Iterator[dict[str, Any]]:
    for rows, cols, dtype, x, seed in itertools.product(
            (1, 2), (1, 2, 3), ("bfloat16", "float16"), _special_dists(True), range(6)):
        yield {"shape": [rows, cols], "dtype": dtype, "x": x, "seed": seed, "materialise": 2}


def _sparse_grid() -> Iterator[dict[str, Any]]:
    flags = list(itertools.product((False, True), repeat=4))
    for h, n, k, window, (ragged, dup, srt, oor), seed in itertools.product(
            (1, 2), (1, 2, 3), (1, 2, 64, 65, 66), (0, 1), flags, range(4)):
        for n_valid in sorted({0, 1, k - 1, k}):
            index = {"n_rows": n, "k": k, "n_valid": n_valid, "window": min(window, k),
                     "ragged": ragged, "duplicates": dup, "sorted": srt, "out_of_range": oor}
            yield {"shape": [1, h, 64], "index": index, "q": NORMAL, "kv": NORMAL,
                   "sink": NORMAL, "seed": seed}


def _q_grid() -> Iterator[dict[str, Any]]:
    for shape, rope, q, pos, seed in itertools.product(
            ([1, 1, 64], [1, 1, 128], [1, 2, 64]), (64, 0, 32), _scales(-8, 8),
            (1, 16, 65536), range(8)):
        yield {"shape": shape, "rope_dim": rope, "q": q, "max_position": pos, "eps": 1e-6,
               "seed": seed}


def _window_grid() -> Iterator[dict[str, Any]]:
    for s, h, d, window, x, seed in itertools.product(
            (1, 2, 3), (1, 2), (1, 2), (1, 2, 3), _scales(-2, 2), range(4)):
        for tokens in range(1, min(2, s) + 1):
            yield {"shape": [s, h, d], "tokens": tokens, "window": window, "x": x,
                   "seed": seed}


def _underflow_grid() -> Iterator[dict[str, Any]]:
    # Every score below -1e4 needs one-sided q and kv of opposite signs, tens in magnitude
    # (uniform ranges: score ~ 8 * q * kv at D = 64); the sink must reach as deep (log-uniform
    # up to 2**23 with random signs).
    sides = [{"kind": "uniform", "low": float(lo), "high": lo + 0.0625}
             for lo in (-64, -48, -32, 32, 48, 64)]
    sinks = [NORMAL, {"kind": "log_uniform", "min_exp": 6, "max_exp": 23, "signed": True}]
    index = {"n_rows": 1, "k": 1, "n_valid": 1, "window": 0, "ragged": False,
             "duplicates": False, "sorted": False, "out_of_range": False}
    for q, kv, sink, seed in itertools.product(sides, sides, sinks, range(32)):
        yield {"shape": [1, 1, 64], "index": index, "q": q, "kv": kv, "sink": sink,
               "seed": seed}


def _rope_grid() -> Iterator[dict[str, Any]]:
    for (t, h), d, dtype, x, pos, base, seed in itertools.product(
            ((1, 1), (1, 2), (2, 1), (2, 2)), (2, 4, 126, 128, 130), ("bfloat16", "float16"),
            _scales(-2, 2), (1, 2, 16, 65536), (10000.0, 500000.0), range(4)):
        yield {"shape": [t, h, d], "dtype": dtype, "x": x, "max_position": pos, "base": base,
               "seed": seed}


FAULTS: list[Fault] = [
    Fault("softmax_no_max", "faults.softmax", "no_max", "reference",
          "an element above ~88.7 (exp overflows in FP32) or a row entirely below ~-103",
          _softmax_production, _softmax_grid),
    Fault("bf16_accumulate", "faults.rmsnorm", "bf16_accumulate", "reference",
          "a long row on BF16 data: a few hundred elements with adversarial values, about a "
          "thousand with normal ones",
          _rmsnorm_production, _accumulate_grid, pins={"dtype": "bfloat16"}),
    Fault("eps_after_root", "faults.rmsnorm", "eps_after_root", "reference",
          "small activations: mean(x^2) within a few hundred eps",
          _rmsnorm_production, _eps_grid),
    Fault("merge_no_rescale", "faults.sparse_attn", "merge_no_rescale", "reference",
          "K > 64 with two live tiles whose maxima differ", _attn_production,
          _sparse_grid),
    Fault("gather_negative", "faults.sparse_attn", "gather_negative", "reference",
          "a -1 padding slot (fewer valid rows than K)", _attn_production,
          _sparse_grid),
    Fault("drop_tail", "faults.sparse_attn", "drop_tail", "reference",
          "K not a multiple of 64 with a valid row in the tail", _attn_production,
          _sparse_grid),
    Fault("rsqrt_hw", "dsv4.q_norm_rope", "rsqrt_hw", "recip_sqrt",
          "nothing rare: about 0.75% of outputs leave pypto-lib's tolerance (budget 0.5%); a "
          "case of under 200 outputs fails as soon as one does", _q_production, _q_grid),
    Fault("window_off_by_one", "faults.window_attn", "window_off_by_one", "reference",
          "more keys than the window (S > window)", _window_production, _window_grid),
    # One more: a rare-value fault from pypto-lib's history (docs/case-study.md), the
    # exp weights rounded half away from zero where the golden rounds half to even. Only an
    # exp weight on an exact BF16 tie shows it, about one in 65536 weights.
    Fault("round_half_away", "dsv4.sparse_attn", "tile64_away", "tile64",
          "an exp weight exactly on a BF16 rounding tie (production-sized index sets)",
          _attn_production, _no_grid, oracle="tiled64",
          comparator={"mode": "exact", "max_ratio": 0.0}, listed=False),
    # Rare in their case space: each needs text ends with the uniform hit rate, measured as
    # bench.bug_finding.hit_rate measures it (cases drawn by bench/samplers.py with seed 1, run
    # through the executor; a hit counts only where the correct kernel passes, which it did on
    # every case drawn). Where the fault needs a shape condition, the kernel equals the correct
    # one bit for bit elsewhere (tests/test_seeded_faults.py), so a larger draw (seed 2) that
    # runs only the cases meeting the condition gives a finer rate; it is quoted too.
    Fault("tail_one_unscaled", "faults.sparse_attn", "tail_one_unscaled", "reference",
          "K = 1 (mod 64) with the token's last index slot valid (K = 1 the simplest), and a "
          "sink or other rows the wrong score can move against; uniform hit rate 0.05% (1 of "
          "2,000 cases; 19 of 40,000 drawn, of which 621 have K = 1 mod 64)",
          _attn_production, _sparse_grid, listed=False),
    Fault("max_init_mask", "faults.sparse_attn", "max_init_mask", "reference",
          "every score of a head below about -10087 (one-sided q and kv of opposite signs, "
          "tens in magnitude) with that head's sink below about -10104 or within ~10 of its "
          "max score; uniform hit rate 0.35% (7 of 2,000 cases)",
          _attn_production, _underflow_grid, listed=False),
    Fault("full_window_guard", "faults.window_attn", "full_window_guard", "reference",
          "S = window + 1 exactly; uniform hit rate 0.1% (2 of 2,000 cases; 14 of 40,000 "
          "drawn, of which 17 have S = window + 1)",
          _window_production, _window_grid, listed=False),
    Fault("pow2_tree", "faults.rmsnorm", "pow2_tree", "reference",
          "hidden a power of two, at least 2; uniform hit rate 0.15% (9 of 6,000 cases)",
          _rmsnorm_production, _eps_grid, listed=False),
    Fault("softmax_max_init_zero", "faults.softmax", "max_init_zero", "reference",
          "a row whose every logit is below about -96 (-104 for one element): few columns at "
          "a large scale; uniform hit rate 0 of 4,000 cases (about 2.6e-5 expected from the "
          "case space's distributions)",
          _softmax_production, functools.partial(_softmax_grid, seeds=16), listed=False),
    Fault("rope_rows_tail_one", "faults.rope", "rows_tail_one", "reference",
          "T * H = 1 (mod 128) with the last token at a position other than 0; uniform hit "
          "rate 0.38% (23 of 6,000 cases)",
          _rope_production, _rope_grid, listed=False),
    # Inputs a target's contract allows that its strategies once never drew: special values and
    # -1 padding before a valid slot.
    Fault("prefix_length", "faults.sparse_attn", "prefix_length", "reference",
          "a skipped slot before a valid one in a token's index set: -1 padding that is not a "
          "suffix (split or holes), or a row past the cache among the valid ones",
          _attn_production, _sparse_grid, listed=False),
    Fault("masked_rows_leak", "faults.sparse_attn", "masked_rows_leak", "reference",
          "a skipped slot (-1 or past the cache) in a token's set while the cache's row 0 "
          "holds an Inf or NaN", _attn_production, _sparse_grid, listed=False),
    Fault("rmsnorm_prescale_max", "faults.rmsnorm", "prescale_max", "reference",
          "a row holding +Inf or -Inf", _rmsnorm_production, _eps_grid, listed=False),
    Fault("rmsnorm_daz", "faults.rmsnorm", "daz", "reference",
          "FP16 subnormal inputs (|x| < 6.1e-5) in a row whose RMS is far below sqrt(eps), so "
          "that x / sqrt(eps) is over the tolerance", _rmsnorm_production,
          _special_rmsnorm_grid(False),
          listed=False),
    Fault("softmax_nan_as_mask", "faults.softmax", "nan_as_mask", "reference",
          "a row holding a NaN and at least one other element that is not NaN",
          _softmax_production, _special_softmax_grid, listed=False),
    Fault("rmsnorm_block_sum", "faults.rmsnorm", "block_sum", "reference",
          f"a NaN or +-Inf in one row of a block of {BLOCK_ROWS} rows holding "
          "another row", _rmsnorm_production, _special_rmsnorm_grid(True), listed=False),
    Fault("rope_fp16_head128_neox", "faults.rope", "fp16_head128_neox", "reference",
          "FP16 inputs with D = 128 and a token at a position other than 0; uniform hit rate "
          "0.38% (23 of 6,000 cases)",
          _rope_production, _rope_grid, listed=False),
]


def by_name(name: str) -> Fault:
    """The fault called `name`. Raises KeyError naming the known ones."""
    for fault in FAULTS:
        if fault.name == name:
            return fault
    raise KeyError(f"no seeded fault {name!r}; known: {', '.join(f.name for f in FAULTS)}")
