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

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from kfuzz.settings import LOW_PRECISION

DTYPES = ("float32", "bfloat16", "float16", "float64")
DISTRIBUTION_KINDS = ("normal", "uniform", "log_uniform", "outliers", "constant_rows", "edge")
EDGES = ("overflow", "underflow", "subnormal")
# Value regimes: optional modifiers of a distribution (`kfuzz.cases.materialise.values` applies them).
REGIMES = ("shift", "row_gap", "dominant", "ties", "edge_rows")
MAX_SEED = 2**32 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _cached(fn: Any) -> Any:
    """Cache a strategy factory by its arguments (lists read as tuples): strategies are
    immutable, and targets build theirs inside draws, where constructing them again costs more
    than drawing from them."""
    cached = functools.lru_cache(maxsize=1024)(fn)

    @functools.wraps(fn)
    def factory(*args: Any, **kwargs: Any) -> Any:
        def freeze(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        try:
            return cached(*map(freeze, args), **{k: freeze(v) for k, v in kwargs.items()})
        except TypeError:  # an unhashable argument: build it afresh
            return fn(*args, **kwargs)

    return factory


@dataclass(frozen=True)
class Dim:
    """One dimension of a shape: an int in [min_side, max_side] that is a multiple of
    `multiple_of`. Shrinks toward `min_side`."""

    min_side: int = 1
    max_side: int = 64
    multiple_of: int = 1

    def __post_init__(self) -> None:
        _check(self.multiple_of >= 1, f"multiple_of={self.multiple_of} must be >= 1")
        _check(self.min_side >= 0, f"min_side={self.min_side} must be >= 0")
        _check(
            self.max_side >= self.min_side,
            f"max_side={self.max_side} < min_side={self.min_side}; pass max_side >= min_side",
        )
        lo = -(-self.min_side // self.multiple_of) * self.multiple_of
        _check(
            lo <= self.max_side,
            f"no multiple of {self.multiple_of} in [{self.min_side}, {self.max_side}]; "
            "widen the bounds",
        )

    @property
    def smallest(self) -> int:
        """The smallest admissible size."""
        return -(-self.min_side // self.multiple_of) * self.multiple_of


# Tile sizes kernels commonly use: sizes one below, at and one above their multiples are where
# tail-tile and boundary faults live.
TILES = (16, 32, 64, 128)


@functools.lru_cache(maxsize=4096)
def boundary_sizes(lo: int, hi: int, multiple_of: int = 1, *, tiles: bool = False) -> tuple[int, ...]:
    """Admissible sizes in [lo, hi] (multiples of `multiple_of`) at or next to a power of two
    (or, with `tiles`, a multiple of a common tile size), plus both ends, sorted."""
    found = {lo, hi}
    bases = {1 << e for e in range(max(hi, 1).bit_length() + 1)}
    if tiles:
        bases = {m for tile in TILES for m in range(tile, hi + 2, tile)}
    for base in bases:
        for size in (base - 1, base, base + 1):
            if lo <= size <= hi and size % multiple_of == 0:
                found.add(size)
    return tuple(sorted(found))


@_cached
def sides(*, min_side: int = 1, max_side: int = 64, multiple_of: int = 1) -> st.SearchStrategy[int]:
    """Sizes in [min_side, max_side] that are multiples of `multiple_of`, shrinking toward
    the smallest. Raises ValueError when the bounds admit no size. Strategies are cached by
    their bounds: shapes build one per dimension for every draw.

    Three regimes, each a flag of the draw: most sizes take a random order of magnitude first
    (small, fast cases as common as large ones); one in four is a boundary size
    (`boundary_sizes`: the nearest power of two or tile multiple, or one either side, at or
    above a size drawn by magnitude); one in eight is
    the largest size (production shapes sit at the top of the range). Every branch makes the
    same draws, so Hypothesis, which prefers shorter choice sequences, never shrinks toward a
    branch because it is shorter, only toward smaller sizes."""
    dim = Dim(min_side, max_side, multiple_of)
    lo, hi = dim.smallest // multiple_of, max_side // multiple_of
    span = hi - lo
    top_bits = span.bit_length()
    edges = (boundary_sizes(dim.smallest, max_side, multiple_of),
             boundary_sizes(dim.smallest, max_side, multiple_of, tiles=True))

    @st.composite
    def draw_side(draw: st.DrawFn) -> int:
        regime = draw(st.integers(0, 7))
        bits = draw(st.integers(0, top_bits))
        raw = draw(st.integers(0, span))
        if regime == 7:
            return hi * multiple_of
        size = (lo + min(raw % (1 << bits), span)) * multiple_of
        if regime >= 5:
            # The boundary size at or above the drawn one: switching the flag off keeps the size
            # close, so Hypothesis can shrink from either side.
            family = edges[raw % 2]
            return family[min(bisect.bisect_left(family, size), len(family) - 1)]
        return size

    return draw_side()


@_cached
def shapes(*dims: int | Dim, max_numel: int) -> st.SearchStrategy[list[int]]:
    """Shapes with one entry per `dims` item: an int is a fixed size, a `Dim` a drawn one.

    Dimensions are drawn in order and each is capped by what the earlier ones leave of
    `max_numel`, so no shape exceeds it and nothing is filtered. Two swarm regimes of the whole
    shape (the draws are the same either way, so both shrink off): one shape in sixteen is the
    largest (`largest_shape`), a production shape where faults that need many elements show;
    three in sixteen are production-like, every dimension one of the three largest powers of
    two it admits: the sizes kernels specialise fast paths for (head dims of 64 or 128 under a
    range that reaches 256, hidden sizes of 4096). Raises ValueError when even
    the smallest shape exceeds `max_numel`."""
    _check(max_numel >= 1, f"max_numel={max_numel} must be >= 1")
    specs = [Dim(d, d) if isinstance(d, int) else d for d in dims]
    smallest = 1
    for spec in specs:
        smallest *= max(spec.smallest, 1)
    _check(
        smallest <= max_numel,
        f"the smallest shape has {smallest} elements, over max_numel={max_numel}; "
        "raise max_numel (--max-numel) or lower the minimum sides",
    )

    @st.composite
    def draw_shape(draw: st.DrawFn) -> list[int]:
        regime = draw(st.integers(0, 15))
        shape: list[int] = []
        for i, spec in enumerate(specs):
            cap = _cap(specs, i, shape, max_numel)
            size = draw(sides(min_side=spec.smallest, max_side=cap, multiple_of=spec.multiple_of))
            if regime == 15:
                size = cap
            elif regime >= 12:
                size = _power_of_two(size, spec, cap)
            shape.append(size)
        return shape

    return draw_shape()


def _power_of_two(size: int, spec: Dim, cap: int) -> int:
    """One of the three largest powers of two that `spec` admits within `cap`, picked by
    `size` (production dimensions: head dims of 64 or 128 under a range that reaches 256);
    `size` itself when `spec` admits none (a multiple that is not a power of two)."""
    found: list[int] = []
    p = 1
    while p <= cap:
        if p >= spec.smallest and p % spec.multiple_of == 0:
            found.append(p)
        p *= 2
    if not found:
        return size
    top = found[-3:]
    return top[(size // spec.multiple_of) % len(top)]


def _cap(specs: Sequence[Dim], i: int, shape: Sequence[int], max_numel: int) -> int:
    """The largest size of dimension i after `shape` (the earlier ones) within max_numel."""
    rest = 1
    for later in specs[i + 1 :]:
        rest *= max(later.smallest, 1)
    used = 1
    for size in shape:
        used *= max(size, 1)
    spec = specs[i]
    cap = min(spec.max_side, max_numel // (used * rest))
    return max(cap - cap % spec.multiple_of, spec.smallest)


def largest_shape(*dims: int | Dim, max_numel: int) -> list[int]:
    """The shape `shapes(*dims, max_numel=...)` draws when every dimension takes its largest
    size, earlier dimensions first."""
    specs = [Dim(d, d) if isinstance(d, int) else d for d in dims]
    shape: list[int] = []
    for i in range(len(specs)):
        shape.append(_cap(specs, i, shape, max_numel))
    return shape


@_cached
def dtypes(options: Sequence[str] = LOW_PRECISION) -> st.SearchStrategy[str]:
    """Names of torch floating dtypes, shrinking toward the first option."""
    _check(len(options) > 0, "dtypes() needs at least one option")
    for name in options:
        _check(name in DTYPES, f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return st.sampled_from(tuple(options))


def seeds() -> st.SearchStrategy[int]:
    """Seeds for `torch.Generator.manual_seed`, shrinking toward 0."""
    return st.integers(0, MAX_SEED)


def _scales(min_exp: int, max_exp: int) -> st.SearchStrategy[float]:
    # Powers of two: shrink toward 2**0 = 1 and scale without rounding error.
    lo, hi = sorted((min_exp, max_exp))
    mid = min(max(0, lo), hi)
    return st.integers(lo - mid, hi - mid).map(lambda e: float(2.0 ** (e + mid)))


@_cached
def distributions(
    *,
    kinds: Sequence[str] = DISTRIBUTION_KINDS,
    min_scale_exp: int = -8,
    max_scale_exp: int = 8,
    allow_nonfinite: bool = False,
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
    Scales are powers of two in [2**min_scale_exp, 2**max_scale_exp]. With allow_nonfinite,
    a "nonfinite" entry {"nan": p, "inf": p} may inject NaN and +/-Inf at rate p.
    regimes: the value regimes (`value_regimes`) a description may switch on; None for all that
    fit ("edge_rows" only where "edge" is a kind, "ties" only with tie_dtypes), () for none.
    tie_dtypes: dtypes coarser than the input's whose rounding ties the "ties" regime aims at
    (e.g. ("bfloat16",) for a float32 input a kernel rounds to BF16).
    edges: the edges the "edge" kind and the "edge_rows" regime may draw.
    regime_max_exp: the largest exponent of the shift, row_gap and dominant regimes (lower it
    for inputs that are multiplied together, such as attention's q and k).
    Raises ValueError on unknown kinds or inverted bounds."""
    _check(len(kinds) > 0, "distributions() needs at least one kind")
    for kind in kinds:
        _check(
            kind in DISTRIBUTION_KINDS,
            f"unknown distribution kind {kind!r}; choose from {', '.join(DISTRIBUTION_KINDS)}",
        )
    _check(
        min_scale_exp <= max_scale_exp,
        f"min_scale_exp={min_scale_exp} > max_scale_exp={max_scale_exp}; swap them",
    )
    builders = _kind_strategies(min_scale_exp, max_scale_exp, edges)
    base = st.one_of([builders[k] for k in kinds])
    if regimes is None:
        regimes = [r for r in REGIMES if (r != "edge_rows" or "edge" in kinds)
                   and (r != "ties" or tie_dtypes)]
    if regimes:
        base = st.builds(lambda dist, mods: {**dist, **mods}, base,
                         value_regimes(names=regimes, tie_dtypes=tie_dtypes or LOW_PRECISION,
                                       edges=edges, max_exp=regime_max_exp))
    return _with_nonfinite(base) if allow_nonfinite else base


def _kind_strategies(min_scale_exp: int, max_scale_exp: int,
                     edges: Sequence[str]) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """The strategy of each distribution kind (see `distributions`)."""
    scales = _scales(min_scale_exp, max_scale_exp)
    return {
        "normal": st.fixed_dictionaries({"kind": st.just("normal"), "scale": scales}),
        "uniform": st.builds(
            lambda low, width: {"kind": "uniform", "low": low, "high": low + width},
            st.integers(-64, 64).map(float),
            scales,
        ),
        "log_uniform": st.builds(
            lambda lo, span, signed: {
                "kind": "log_uniform", "min_exp": lo, "max_exp": lo + span, "signed": signed
            },
            st.integers(min_scale_exp, max_scale_exp),
            st.integers(0, 2 * (max_scale_exp - min_scale_exp) + 1),
            st.booleans(),
        ),
        "outliers": st.fixed_dictionaries({
            "kind": st.just("outliers"),
            "scale": scales,
            "fraction": st.sampled_from([0.001, 0.01, 0.1]),
            "magnitude": _scales(4, 16),
        }),
        "constant_rows": st.fixed_dictionaries({
            "kind": st.just("constant_rows"),
            "value": st.integers(-8, 8).map(float) | scales,
            "fraction": st.sampled_from([1.0, 0.5, 0.1]),
        }),
        "edge": st.fixed_dictionaries({
            "kind": st.just("edge"),
            "edge": st.sampled_from(tuple(edges)),
            "spread": st.integers(0, 4),
        }),
    }


def _with_nonfinite(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with a "nonfinite" entry {"nan": p, "inf": p} on some descriptions."""
    def add_nonfinite(dist: dict[str, Any], rates: tuple[float, float]) -> dict[str, Any]:
        nan, inf = rates
        if nan == 0 and inf == 0:
            return dist
        return {**dist, "nonfinite": {"nan": nan, "inf": inf}}

    rate = st.sampled_from([0.0, 0.001, 0.05])
    return st.builds(add_nonfinite, base, st.tuples(rate, rate))


def _signed_powers(min_exp: int, max_exp: int) -> st.SearchStrategy[float]:
    # Shrinks toward +2**min_exp.
    return st.builds(lambda negative, e: (-1.0 if negative else 1.0) * 2.0 ** e,
                     st.booleans(), st.integers(min_exp, max_exp))


@_cached
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
        _check(name in REGIMES, f"unknown regime {name!r}; choose from {', '.join(REGIMES)}")
    _check(max_exp >= 1, f"max_exp={max_exp} must be >= 1")
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
        if not chosen or not draw(st.booleans()):
            return {}
        return {name: draw(param) for name, param in chosen if draw(st.integers(0, 2)) == 2}

    return draw_regimes()


@_cached
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
    prefix), the next ones scattered top-k rows, and the tail is -1 padding. `n_valid` is the
    most valid slots (0 = all -1); with `ragged` each token draws its own valid length in
    [0, n_valid]. The cache holds at least k rows unless a short cache is drawn.

    About one set in four is full size (k = max_k, n_valid = k; `ragged` and `out_of_range`
    still apply): faults that show once in tens of thousands of weights, such as a rounding
    tie, need production-sized sets, which independent draws of k and n_valid would rarely
    give. Shrinks toward one valid slot, no
    window, unsorted, duplicate-free, non-ragged. Raises ValueError on bad bounds."""
    _check(max_rows >= 1, f"max_rows={max_rows} must be >= 1")
    _check(max_k >= 1, f"max_k={max_k} must be >= 1")
    _check(max_window >= 0, f"max_window={max_window} must be >= 0")

    @st.composite
    def draw_set(draw: st.DrawFn) -> dict[str, Any]:
        # Both branches make the same draws: Hypothesis orders cases by their choice
        # sequences, shorter first, and a shorter "full" branch would shrink toward full size.
        full = draw(st.integers(0, 3)) == 3
        k = draw(sides(min_side=1, max_side=max_k))
        k = max_k if full else k
        n = draw(sides(min_side=1, max_side=max_rows))
        if not draw(st.booleans()):
            n = max(n, k)
        # Valid slots shrink toward "all valid" (offset 0 from k); a short valid prefix is
        # drawn as often as a long one.
        gap = draw(sides(min_side=0, max_side=k))
        n_valid = k if full else k - gap
        return {
            "n_rows": n,
            "k": k,
            "n_valid": n_valid,
            "window": draw(st.integers(0, min(max_window, k))),
            "ragged": draw(st.booleans()),
            "duplicates": draw(st.booleans()) if allow_duplicates else False,
            "sorted": draw(st.booleans()),
            "out_of_range": draw(st.booleans()),
        }

    return draw_set()


@_cached
def valid_lengths(*, max_length: int) -> st.SearchStrategy[int]:
    """Valid lengths in [0, max_length], shrinking toward the full length (the common case)."""
    _check(max_length >= 0, f"max_length={max_length} must be >= 0")
    return st.integers(0, max_length).map(lambda gap: max_length - gap)


# What `regimes_in` can name, and so what a run may exclude.
EXCLUDABLE = (*DISTRIBUTION_KINDS[1:], *EDGES, *REGIMES, "nonfinite", "late_positions")


def regimes_in(case: Any) -> set[str]:
    """The value regimes a case uses, by the names of `EXCLUDABLE`: distribution kinds other
    than normal, edges (of the edge kind or of edge_rows), modifiers, non-finite injection,
    and case-level flags such as late_positions, found anywhere in the case."""
    found: set[Any] = set()
    if isinstance(case, dict):
        kind = case.get("kind")
        if kind in DISTRIBUTION_KINDS:
            found.add(kind)
            if kind == "edge":
                found.add(case.get("edge"))
        for key, value in case.items():
            if key in REGIMES or key in ("nonfinite", "late_positions"):
                if value:
                    found.add(key)
            if key == "edge_rows" and isinstance(value, dict):
                found.add(value.get("edge"))
            found |= regimes_in(value)
    elif isinstance(case, list):
        for item in case:
            found |= regimes_in(item)
    found.discard("normal")
    return {name for name in found if isinstance(name, str)}
