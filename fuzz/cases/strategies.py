"""Hypothesis strategies for kfuzz cases.

A case is a plain JSON-able dict: shapes, a seed, a value distribution, index-set parameters.
Tensors are never drawn element by element (Hypothesis' `arrays()` at 64x512 yields mostly its
fill value); the strategies here draw *descriptions* and `kfuzz.cases.materialise` builds the tensors
from the case's seed. Draws are ordered so that shrinking heads for the small, friendly case:
integers shrink toward their lower bound, `sampled_from` toward its first option, so the
friendliest dtype and distribution come first.

Arguments are validated when a strategy is built, not when it draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from kfuzz.cases.dicts import case_dicts
from kfuzz.cases.shapes import (
    TILES,
    Dim,
    boundary_sizes,
    cached,
    check,
    largest_shape,
    plain,
    plain_draws,
    shapes,
    sides,
)
from kfuzz.settings import LOW_PRECISION

__all__ = ["DISTRIBUTION_KINDS", "DTYPES", "EDGES", "EXCLUDABLE", "FINITE_MAX_EXP", "MAX_SEED",
           "NONFINITE_ENDS", "PADDINGS", "REGIMES", "SPECIALS", "TILES", "Dim", "boundary_sizes",
           "case_dicts", "contract_kinds", "dtypes", "distributions", "largest_shape", "plain",
           "plain_draws", "regimes_in", "seeds", "shapes", "sides", "sparse_index_sets", "valid_lengths",
           "value_regimes"]

DTYPES = ("float32", "bfloat16", "float16", "float64")
DISTRIBUTION_KINDS = ("normal", "uniform", "log_uniform", "outliers", "constant_rows", "edge")
EDGES = ("overflow", "underflow", "subnormal")
# Special values a float input's contract may allow (`kfuzz.tensor(..., excludes=...)`).
SPECIALS = ("nan", "inf", "subnormal", "signed_zero")
# Where a sparse index set's -1 padding sits (`kfuzz.cases.materialise.indices`); the first,
# "end", is left out of the description.
PADDINGS = ("end", "split", "holes")
# Which ends of an input's leading axis a "nonfinite" entry's "ends" makes NaN
# (`kfuzz.cases.materialise.distributions`).
NONFINITE_ENDS = ("first", "last", "both")
# Value regimes: optional modifiers of a distribution (`kfuzz.cases.materialise.values` applies them).
REGIMES = ("shift", "row_gap", "dominant", "ties", "edge_rows")
MAX_SEED = 2**32 - 1
# Magnitudes of inputs whose contract excludes infinities stay within 2**FINITE_MAX_EXP: finite
# in every dtype drawn, FP16 (largest 65504) the narrowest.
FINITE_MAX_EXP = 15


@cached
def dtypes(options: Sequence[str] = LOW_PRECISION) -> st.SearchStrategy[str]:
    """Names of torch floating dtypes, shrinking toward the first option."""
    check(len(options) > 0, "dtypes() needs at least one option")
    for name in options:
        check(name in DTYPES, f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return st.sampled_from(tuple(options))


def seeds() -> st.SearchStrategy[int]:
    """Seeds for `torch.Generator.manual_seed`, shrinking toward 0."""
    return st.integers(0, MAX_SEED)


def _scales(min_exp: int, max_exp: int) -> st.SearchStrategy[float]:
    # Powers of two: shrink toward 2**0 = 1 and scale without rounding error.
    lo, hi = sorted((min_exp, max_exp))
    mid = min(max(0, lo), hi)
    return st.integers(lo - mid, hi - mid).map(lambda e: float(2.0 ** (e + mid)))


@cached
def distributions(
    *,
    kinds: Sequence[str] = DISTRIBUTION_KINDS,
    min_scale_exp: int = -8,
    max_scale_exp: int = 8,
    allow_nonfinite: bool = False,
    specials: Sequence[str] = (),
    regimes: Sequence[str] | None = None,
    tie_dtypes: Sequence[str] = (),
    edges: Sequence[str] = EDGES,
    regime_max_exp: int = 12,
) -> st.SearchStrategy[dict[str, Any]]:
    """Descriptions of value distributions, materialised by `kfuzz.cases.materialise.values`.

    kinds, in shrink order (first is friendliest):
      normal        {"kind", "scale"}: N(0, scale^2)
      uniform       {"kind", "low", "high"}: bounds drawn too; one-sided ranges included
      log_uniform   {"kind", "min_exp", "max_exp", "signed"}: |x| = 2**U(min_exp, max_exp)
      outliers      {"kind", "scale", "fraction", "magnitude"}: normal plus rare huge values
      constant_rows {"kind", "value", "fraction"}: some rows (last axis) hold one value
      edge          {"kind", "edge", "spread"}: values near the dtype's overflow limit,
                    its smallest normal, or in its subnormal range
    Scales are powers of two in [2**min_scale_exp, 2**max_scale_exp].
    specials: the special values (`SPECIALS`) descriptions may hold beyond their kind's:
    "nan" and "inf" as a "nonfinite" entry on one description in eight (NaN alone, +-Inf alone
    or both: scattered, one a row, whole rows, or the ends of the leading axis; see
    `_with_nonfinite`); "signed_zero" as rows of -0.0 or +0.0 (constant_rows, added to
    the kinds if missing); "subnormal" as the "edge" kind's subnormal edge (added to the kinds
    and edges if missing). allow_nonfinite: the same as specials "nan" and "inf".
    regimes: the value regimes (`value_regimes`) a description may switch on; None for all that
    fit ("edge_rows" only where "edge" is a kind, "ties" only with tie_dtypes), () for none.
    tie_dtypes: dtypes coarser than the input's whose rounding ties the "ties" regime aims at
    (e.g. ("bfloat16",) for a float32 input a kernel rounds to BF16).
    edges: the edges the "edge" kind and the "edge_rows" regime may draw.
    regime_max_exp: the largest exponent of the shift, row_gap and dominant regimes (lower it
    for inputs that are multiplied together, such as attention's q and k).
    Raises ValueError on unknown kinds or inverted bounds."""
    check(len(kinds) > 0, "distributions() needs at least one kind")
    for kind in kinds:
        check(
            kind in DISTRIBUTION_KINDS,
            f"unknown distribution kind {kind!r}; choose from {', '.join(DISTRIBUTION_KINDS)}",
        )
    check(
        min_scale_exp <= max_scale_exp,
        f"min_scale_exp={min_scale_exp} > max_scale_exp={max_scale_exp}; swap them",
    )
    unknown = sorted(set(specials) - set(SPECIALS))
    check(not unknown, f"unknown special {unknown[0] if unknown else ''!r}; choose from "
                        f"{', '.join(SPECIALS)}")
    kinds, edges = contract_kinds(kinds, specials, edges)
    finite = not allow_nonfinite and "inf" not in specials
    builders = _kind_strategies(min_scale_exp, max_scale_exp, edges,
                                FINITE_MAX_EXP if finite else None)
    if "signed_zero" in specials:
        kinds = (*kinds, "constant_rows") if "constant_rows" not in kinds else kinds
        builders["constant_rows"] = _constant_rows(min_scale_exp, max_scale_exp, zeros=True)
    base = st.one_of([builders[k] for k in kinds])
    if regimes is None:
        regimes = [r for r in REGIMES if (r != "edge_rows" or "edge" in kinds)
                   and (r != "ties" or tie_dtypes)]
    if regimes:
        base = st.builds(lambda dist, mods: {**dist, **mods}, base,
                         value_regimes(names=regimes, tie_dtypes=tie_dtypes or LOW_PRECISION,
                                       edges=edges, max_exp=regime_max_exp))
    if allow_nonfinite:
        specials = (*specials, "nan", "inf")
    nonfinite = tuple(x for x in ("nan", "inf") if x in specials)
    return _with_nonfinite(base, nonfinite) if nonfinite else base


def contract_kinds(kinds: Sequence[str], specials: Sequence[str],
                   edges: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`kinds` and `edges` with what reaches `specials` added: the "edge" kind and its
    subnormal edge for "subnormal" (only that edge where the kinds had no "edge")."""
    if "subnormal" in specials:
        if "edge" not in kinds:
            kinds, edges = (*kinds, "edge"), ("subnormal",)
        elif "subnormal" not in edges:
            edges = (*edges, "subnormal")
    return tuple(kinds), tuple(edges)


def _kind_strategies(min_scale_exp: int, max_scale_exp: int, edges: Sequence[str],
                     max_exp: int | None = None) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """The strategy of each distribution kind (see `distributions`). max_exp: where set, the
    log-uniform and outlier magnitudes stay within 2**max_exp (for inputs whose contract
    excludes infinities)."""
    scales = _scales(min_scale_exp, max_scale_exp)
    cap = max_exp if max_exp is not None else 1 << 30
    return {
        "normal": st.fixed_dictionaries({"kind": st.just("normal"), "scale": scales}),
        "uniform": st.builds(
            lambda low, width: {"kind": "uniform", "low": low, "high": low + width},
            st.integers(-64, 64).map(float),
            scales,
        ),
        "log_uniform": st.builds(
            lambda lo, span, signed: {
                "kind": "log_uniform", "min_exp": min(lo, cap), "max_exp": min(lo + span, cap),
                "signed": signed,
            },
            st.integers(min_scale_exp, max_scale_exp),
            st.integers(0, 2 * (max_scale_exp - min_scale_exp) + 1),
            st.booleans(),
        ),
        "outliers": st.fixed_dictionaries({
            "kind": st.just("outliers"),
            "scale": scales,
            "fraction": st.sampled_from([0.001, 0.01, 0.1]),
            "magnitude": _scales(4, min(16, cap)),
        }),
        "constant_rows": _constant_rows(min_scale_exp, max_scale_exp, zeros=False),
        "edge": st.fixed_dictionaries({
            "kind": st.just("edge"),
            "edge": st.sampled_from(tuple(edges)),
            "spread": st.integers(0, 4),
        }),
    }


def _constant_rows(min_scale_exp: int, max_scale_exp: int,
                   zeros: bool) -> st.SearchStrategy[dict[str, Any]]:
    """The constant_rows kind; with `zeros`, the value is +0.0 or -0.0 in one draw in two."""
    value = st.integers(-8, 8).map(float) | _scales(min_scale_exp, max_scale_exp)
    if zeros:
        value = st.builds(lambda v, zero, negative: (-0.0 if negative else 0.0) if zero else v,
                          value, st.booleans(), st.booleans())
    return st.fixed_dictionaries({
        "kind": st.just("constant_rows"),
        "value": value,
        "fraction": st.sampled_from([1.0, 0.5, 0.1]),
    })


def _with_nonfinite(base: st.SearchStrategy[dict[str, Any]],
                    kinds: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with a "nonfinite" entry on one description in eight, in one of four modes
    drawn alike (the last two only where "nan" is allowed), each with NaN alone, +-Inf alone
    or both among the `kinds` allowed ({"nan": 0.0, "inf": 0.0} plus the mode's key):

      scattered  {"nan": p, "inf": p}: at rate p per element (0.1%, 5% or 50%)
      one a row  {"row_nan": s, "row_inf": s}: one element in a share s of the rows (all,
                 half, a tenth), so that a long row holds finite elements beside it
      rows       {"rows": p}: whole rows of NaN at rate p (1% or 10%), a poisoned cache row
      ends       {"ends": "first" | "last" | "both"}: the first or last index of the leading
                 axis all NaN: the rows a masked gather reads for a skipped slot (an index
                 of -1 clamped reads the first, wrapped the last)

    One special value kept apart from another, since one hides another (a row holding +Inf
    is NaN whatever its NaNs do). Rare enough that most cases still test finite arithmetic,
    whose faults a NaN would hide."""
    rate = st.sampled_from([0.001, 0.05, 0.5])
    row_rate = st.sampled_from([0.01, 0.1])
    share = st.sampled_from([1.0, 0.5, 0.1])
    ends = st.sampled_from(NONFINITE_ENDS)
    values = [v for v in (("nan",), ("inf",), ("nan", "inf")) if set(v) <= set(kinds)]
    modes = ("scattered", "one", *(("rows", "ends") if "nan" in kinds else ()))

    @st.composite
    def draw(draw: st.DrawFn) -> dict[str, Any]:
        dist = draw(base)
        # Every draw made whichever mode comes up (Hypothesis orders cases by their choice
        # sequences, shorter first: a shorter mode would be a simpler one).
        on = draw(st.integers(0, 7)) == 7
        mode, which = draw(st.sampled_from(modes)), draw(st.sampled_from(values))
        p, rows, s, end = draw(rate), draw(row_rate), draw(share), draw(ends)
        if not on or plain():
            return dist
        entry: dict[str, Any] = {"nan": 0.0, "inf": 0.0}
        if mode == "scattered":
            entry = {k: p if k in which else 0.0 for k in ("nan", "inf")}
        elif mode == "one":
            entry.update({f"row_{k}": s for k in which})
        elif mode == "rows":
            entry["rows"] = rows
        else:
            entry["ends"] = end
        return {**dist, "nonfinite": entry}

    return draw()


def _signed_powers(min_exp: int, max_exp: int) -> st.SearchStrategy[float]:
    # Shrinks toward +2**min_exp.
    return st.builds(lambda negative, e: (-1.0 if negative else 1.0) * 2.0 ** e,
                     st.booleans(), st.integers(min_exp, max_exp))


@cached
def value_regimes(
    *, names: Sequence[str] = REGIMES, tie_dtypes: Sequence[str] = LOW_PRECISION, max_exp: int = 12,
    edges: Sequence[str] = EDGES,
) -> st.SearchStrategy[dict[str, Any]]:
    """Swarm flags for the regimes where low-precision kernels break, as distribution modifiers
    (a dict, often empty; each key switched on independently, so the shrinker can switch each
    one off):

      shift      +-2**e added to every element: one-sided and shifted ranges, logits or
                 scores far below zero (past exp's underflow)
      row_gap    2**e: each row (last axis) offset by its own amount in [-2**e, 2**e]: huge
                 gaps between rows
      dominant   +-2**e added to one element per row: one dominant score
      ties       a dtype name: half of the elements moved onto a rounding tie of that dtype,
                 or one unit of the input dtype either side of it
      edge_rows  {"edge", "fraction"}: whole rows of subnormal, smallest-normal or near-overflow
                 magnitudes

    Exponents are in [1, max_exp]. Half of the descriptions have no regime at all; in the other
    half each regime is on with probability 1/3. Raises ValueError on unknown names."""
    for name in names:
        check(name in REGIMES, f"unknown regime {name!r}; choose from {', '.join(REGIMES)}")
    check(max_exp >= 1, f"max_exp={max_exp} must be >= 1")
    params: dict[str, st.SearchStrategy[Any]] = {
        "shift": _signed_powers(1, max_exp),
        "row_gap": st.integers(1, max_exp).map(lambda e: 2.0 ** e),
        "dominant": _signed_powers(1, max_exp),
        "ties": st.sampled_from(tuple(tie_dtypes)),
        "edge_rows": st.fixed_dictionaries({"edge": st.sampled_from(tuple(edges)),
                                            "fraction": st.sampled_from([1.0, 0.5, 0.1])}),
    }
    chosen = [(name, params[name]) for name in REGIMES if name in names]

    @st.composite
    def draw_regimes(draw: st.DrawFn) -> dict[str, Any]:
        if not chosen or not draw(st.booleans()) or plain():
            return {}
        return {name: draw(param) for name, param in chosen if draw(st.integers(0, 2)) == 2}

    return draw_regimes()


@cached
def sparse_index_sets(
    *,
    max_rows: int,
    max_k: int,
    max_window: int = 128,
    allow_duplicates: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """Descriptions of per-token sparse index sets: k slots per token into n_rows cache rows,
    materialised by `kfuzz.cases.materialise.sparse_indices`:

      {"n_rows", "k", "n_valid", "window", "ragged", "duplicates", "sorted", "out_of_range"}

    Each token's first min(window, valid) slots name the most recent rows (a sliding-window
    prefix), the next ones scattered top-k rows, and the tail is -1 padding; a "padding" key
    ("split" or "holes", one set in three each) puts the -1 entries elsewhere: after each of a
    window part and a top-k part, as a producer that concatenates two padded parts writes
    them, or at any slot. `n_valid` is the
    most valid slots (0 = all -1); with `ragged` each token draws its own valid length in
    [0, n_valid]. The cache holds at least k rows unless a short cache is drawn.

    About one set in four is full size (k = max_k, n_valid = k; `ragged` and `out_of_range`
    still apply): faults that show once in tens of thousands of weights, such as a rounding
    tie, need production-sized sets, which independent draws of k and n_valid would rarely
    give. Shrinks toward one valid slot, no
    window, unsorted, duplicate-free, non-ragged. Raises ValueError on bad bounds."""
    check(max_rows >= 1, f"max_rows={max_rows} must be >= 1")
    check(max_k >= 1, f"max_k={max_k} must be >= 1")
    check(max_window >= 0, f"max_window={max_window} must be >= 0")

    @st.composite
    def draw_set(draw: st.DrawFn) -> dict[str, Any]:
        # Both branches make the same draws: Hypothesis orders cases by their choice
        # sequences, shorter first, and a shorter "full" branch would shrink toward full size.
        full = draw(st.integers(0, 3)) == 3 and not plain()
        k = draw(sides(min_side=1, max_side=max_k))
        k = max_k if full else k
        n = draw(sides(min_side=1, max_side=max_rows))
        if not draw(st.booleans()):
            n = max(n, k)
        # Valid slots shrink toward "all valid" (offset 0 from k); a short valid prefix is
        # drawn as often as a long one.
        gap = draw(sides(min_side=0, max_side=k))
        n_valid = k if full else k - gap
        spec = {
            "n_rows": n,
            "k": k,
            "n_valid": n_valid,
            "window": draw(st.integers(0, min(max_window, k))),
            "ragged": draw(st.booleans()),
            "duplicates": draw(st.booleans()) if allow_duplicates else False,
            "sorted": draw(st.booleans()),
            "out_of_range": draw(st.booleans()),
        }
        padding = draw(st.sampled_from(PADDINGS))
        return spec if padding == "end" else {**spec, "padding": padding}

    return draw_set()


@cached
def valid_lengths(*, max_length: int) -> st.SearchStrategy[int]:
    """Valid lengths in [0, max_length], shrinking toward the full length (the common case)."""
    check(max_length >= 0, f"max_length={max_length} must be >= 0")
    return st.integers(0, max_length).map(lambda gap: max_length - gap)


# What `regimes_in` can name, and so what a run may exclude.
EXCLUDABLE = (*DISTRIBUTION_KINDS[1:], *EDGES, *REGIMES, "nonfinite", "nan", "inf",
              "signed_zero", "late_positions", *(f"padding_{p}" for p in PADDINGS[1:]))


def regimes_in(case: Any) -> set[str]:
    """The value regimes a case uses, by the names of `EXCLUDABLE`: distribution kinds other
    than normal, edges (of the edge kind or of edge_rows), modifiers, non-finite injection
    (and "nan", "inf" by what it injects), rows of zeros ("signed_zero"), index padding
    layouts ("padding_split", "padding_holes") and case-level flags such as late_positions,
    found anywhere in the case."""
    found: set[Any] = set()
    if isinstance(case, dict):
        kind = case.get("kind")
        if kind in DISTRIBUTION_KINDS:
            found.add(kind)
            if kind == "edge":
                found.add(case.get("edge"))
            if kind == "constant_rows" and case.get("value") == 0:
                found.add("signed_zero")
        for key, value in case.items():
            if key in REGIMES or key in ("nonfinite", "late_positions"):
                if value:
                    found.add(key)
            if key == "nonfinite" and isinstance(value, dict):
                found |= {k for k in ("nan", "inf") if value.get(k) or value.get(f"row_{k}")}
                if value.get("rows") or value.get("ends"):
                    found.add("nan")
            if key == "padding" and value in PADDINGS[1:]:
                found.add(f"padding_{value}")
            if key == "edge_rows" and isinstance(value, dict):
                found.add(value.get("edge"))
            found |= regimes_in(value)
    elif isinstance(case, list):
        for item in case:
            found |= regimes_in(item)
    found.discard("normal")
    return {name for name in found if isinstance(name, str)}
