"""Uniform random sampling of a target's case space: the baseline kfuzz is compared against.

Each sampler draws every field of a case independently and uniformly from the range the
target's Hypothesis strategy allows (same fields, same bounds, same max_numel caps, drawn in
the same order), with none of Hypothesis' preferences: no bias toward small or boundary
values, no extra weight on the largest size, no search guided by `hypothesis.target`. The
cases go through the same materialise / kernel / oracle / compare path (`kfuzz.execute.executor`),
built by the same (position-stable) materialisation as the cases kfuzz draws.

The space sampled is the *base* case space, what a hand-written random test draws: shapes,
dtypes, distribution kinds and their parameters, index sets, seeds, and the special values and
index layouts each input's contract allows (NaN, Inf, subnormals, signed zeros; -1 padding at
the end, after each part, or anywhere), at the rate the case space holds them: NaN/Inf on one
value description in eight, each rate and layout uniform among its choices. kfuzz's swarm flags (the
value regimes of `kfuzz.cases.strategies.value_regimes`, per-channel weights, late positions, the
attention score and sink regimes) are part of its search and are not sampled here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kfuzz.cases.materialise import stamp
from kfuzz.cases.strategies import (
    DISTRIBUTION_KINDS,
    EDGES,
    MAX_SEED,
    PADDINGS,
    SPECIALS,
    contract_kinds,
)

Sampler = Callable[[random.Random], dict[str, Any]]


def _scale(rng: random.Random, lo: int, hi: int) -> float:
    return float(2.0 ** rng.randint(lo, hi))


def distribution(rng: random.Random, kinds: Sequence[str] = DISTRIBUTION_KINDS,
                 min_scale_exp: int = -8, max_scale_exp: int = 8,
                 edges: Sequence[str] = EDGES, specials: Sequence[str] = ()) -> dict[str, Any]:
    """A value distribution as `kfuzz.cases.strategies.distributions(kinds=..., min_scale_exp=...,
    max_scale_exp=..., specials=...)` describes it, each field uniform in its range: subnormals
    through the edge kind, signed zeros as rows of +-0.0, NaN and Inf as a "nonfinite" entry on
    one description in eight (scattered at a rate, or whole rows of NaN)."""
    kinds, edges = contract_kinds(kinds, specials, edges)
    if "signed_zero" in specials and "constant_rows" not in kinds:
        kinds = (*kinds, "constant_rows")
    dist = _kind(rng, kinds, min_scale_exp, max_scale_exp, edges, "signed_zero" in specials)
    nonfinite = [k for k in ("nan", "inf") if k in specials]
    if nonfinite and rng.randrange(8) == 0:
        if "nan" in nonfinite and rng.random() < 0.5:
            return {**dist, "nonfinite": {"nan": 0.0, "inf": 0.0,
                                          "rows": rng.choice([0.01, 0.1])}}
        rates = {k: rng.choice([0.001, 0.05, 0.5]) if k in nonfinite else 0.0
                 for k in ("nan", "inf")}
        return {**dist, "nonfinite": rates}
    return dist


def _kind(rng: random.Random, kinds: Sequence[str], lo: int, hi: int, edges: Sequence[str],
          zeros: bool) -> dict[str, Any]:
    kind = rng.choice(list(kinds))
    if kind == "normal":
        return {"kind": "normal", "scale": _scale(rng, lo, hi)}
    if kind == "uniform":
        low = float(rng.randint(-64, 64))
        return {"kind": "uniform", "low": low, "high": low + _scale(rng, lo, hi)}
    if kind == "log_uniform":
        start = rng.randint(lo, hi)
        return {"kind": "log_uniform", "min_exp": start,
                "max_exp": start + rng.randint(0, 2 * (hi - lo) + 1),
                "signed": rng.random() < 0.5}
    if kind == "outliers":
        return {"kind": "outliers", "scale": _scale(rng, lo, hi),
                "fraction": rng.choice([0.001, 0.01, 0.1]), "magnitude": _scale(rng, 4, 16)}
    if kind == "constant_rows":
        value = float(rng.randint(-8, 8)) if rng.random() < 0.5 else _scale(rng, lo, hi)
        if zeros and rng.random() < 0.5:
            value = -0.0 if rng.random() < 0.5 else 0.0
        return {"kind": "constant_rows", "value": value,
                "fraction": rng.choice([1.0, 0.5, 0.1])}
    return {"kind": "edge", "edge": rng.choice(list(edges)), "spread": rng.randint(0, 4)}


def _side(rng: random.Random, lo: int, hi: int, cap: int, multiple_of: int = 1) -> int:
    """Uniform in [lo, min(hi, cap)] among multiples of `multiple_of`, as `fst.shapes` caps."""
    top = min(hi, cap)
    top = max(top - top % multiple_of, lo)
    return rng.randrange(lo, top + 1, multiple_of)


def _seed(rng: random.Random) -> int:
    return rng.randint(0, MAX_SEED)


def _ops_shape(rng: random.Random, max_numel: int) -> list[int]:
    rows = _side(rng, 1, 64, max_numel)
    return [rows, _side(rng, 1, 8192, max_numel // rows)]


def softmax(rng: random.Random, max_numel: int) -> dict[str, Any]:
    """A case of `ops.softmax` / `faults.softmax`."""
    return {"shape": _ops_shape(rng, max_numel),
            "dtype": rng.choice(["bfloat16", "float16", "float32"]),
            "x": distribution(rng, ("normal", "uniform", "outliers", "constant_rows"),
                              specials=SPECIALS),
            "seed": _seed(rng)}


def rmsnorm(rng: random.Random, max_numel: int,
            kinds: Sequence[str] = ("normal", "uniform", "log_uniform", "outliers",
                                    "constant_rows")) -> dict[str, Any]:
    """A case of `faults.rmsnorm` (pass DISTRIBUTION_KINDS as `kinds` for `ops.rmsnorm`)."""
    return {"shape": _ops_shape(rng, max_numel), "dtype": rng.choice(["bfloat16", "float16"]),
            "x": distribution(rng, kinds, specials=SPECIALS), "eps": rng.choice([1e-6, 1e-5]),
            "seed": _seed(rng)}


def _dsv4_shape(rng: random.Random, max_numel: int) -> list[int]:
    t = _side(rng, 1, 8, max_numel // 64)
    h = _side(rng, 1, 64, max_numel // (t * 64))
    return [t, h, _side(rng, 64, 512, max_numel // (t * h), 64)]


def sparse_attn(rng: random.Random, max_numel: int) -> dict[str, Any]:
    """A case of `dsv4.sparse_attn` / `faults.sparse_attn`."""
    shape = _dsv4_shape(rng, max_numel)
    t, _, d = shape
    max_rows = max(1, min(4096, max_numel // d))
    max_k = max(1, min(512, max_numel // (t * d)))
    k = rng.randint(1, max_k)
    n = rng.randint(1, max_rows)
    if rng.random() < 0.5:  # the strategy's "cache holds at least k rows" branch
        n = max(n, k)
    index = {"n_rows": n, "k": k, "n_valid": rng.randint(0, k),
             "window": rng.randint(0, min(128, k)), "ragged": rng.random() < 0.5,
             "duplicates": rng.random() < 0.5, "sorted": rng.random() < 0.5,
             "out_of_range": rng.random() < 0.5}
    padding = rng.choice(PADDINGS)
    if padding != "end":
        index["padding"] = padding
    kinds = ("normal", "uniform", "outliers", "constant_rows")
    return {"shape": shape, "index": index,
            "q": distribution(rng, kinds, -4, 4, specials=SPECIALS),
            "kv": distribution(rng, kinds, -4, 4, specials=SPECIALS),
            "sink": distribution(rng, ("normal", "uniform", "log_uniform"), -2, 6),
            "seed": _seed(rng)}


def q_norm_rope(rng: random.Random, max_numel: int) -> dict[str, Any]:
    """A case of `dsv4.q_norm_rope`."""
    return {"shape": _dsv4_shape(rng, max_numel), "rope_dim": rng.choice([64, 0, 32]),
            "q": distribution(rng, ("normal", "uniform", "log_uniform", "outliers",
                                    "constant_rows", "edge"), edges=("subnormal", "underflow"),
                              specials=SPECIALS),
            "max_position": 2 ** rng.randint(0, 17), "eps": 1e-6, "seed": _seed(rng)}


def window_attn(rng: random.Random, max_numel: int) -> dict[str, Any]:
    """A case of `faults.window_attn`."""
    s = _side(rng, 1, 2048, max_numel)
    h = _side(rng, 1, 16, max_numel // s)
    d = _side(rng, 1, 128, max_numel // (s * h))
    return {"shape": [s, h, d], "tokens": rng.randint(1, min(8, s)),
            "window": rng.randint(1, 256),
            "x": distribution(rng, ("normal",), -2, 2), "seed": _seed(rng)}


def rope(rng: random.Random, max_numel: int) -> dict[str, Any]:
    """A case of `ops.rope` / `faults.rope`."""
    t = _side(rng, 1, 64, max_numel // 2)
    h = _side(rng, 1, 16, max_numel // (t * 2))
    d = _side(rng, 2, 256, max_numel // (t * h), 2)
    return {"shape": [t, h, d], "dtype": rng.choice(["bfloat16", "float16", "float32"]),
            "x": distribution(rng, ("normal", "uniform", "log_uniform"), specials=SPECIALS),
            "max_position": 2 ** rng.randint(0, 16), "base": rng.choice([10000.0, 500000.0]),
            "seed": _seed(rng)}


SAMPLERS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "faults.softmax": softmax,
    "ops.softmax": softmax,
    "faults.rmsnorm": rmsnorm,
    "faults.sparse_attn": sparse_attn,
    "dsv4.sparse_attn": sparse_attn,
    "dsv4.q_norm_rope": q_norm_rope,
    "faults.window_attn": window_attn,
    "faults.rope": rope,
}


def sampler(target: str, max_numel: int, pins: Mapping[str, Any] | None = None) -> Sampler:
    """A function rng -> case drawing uniformly from `target`'s case space (cases bounded by
    `max_numel`, the target's own bound), with the fields in `pins` held fixed, as
    `CampaignConfig.pins` holds them. Raises KeyError for a target without a sampler."""
    if target not in SAMPLERS:
        raise KeyError(f"no uniform sampler for {target!r}; known: {', '.join(sorted(SAMPLERS))}")
    draw = SAMPLERS[target]
    fixed = dict(pins or {})

    def sample(rng: random.Random) -> dict[str, Any]:
        return stamp({**draw(rng, max_numel), **fixed})

    return sample
