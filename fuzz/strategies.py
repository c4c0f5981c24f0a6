"""Hypothesis strategies for kfuzz cases.

A case is a plain JSON-able dict: shapes, a seed, a value distribution, index-set parameters.
Tensors are never drawn element by element (Hypothesis' `arrays()` at 64x512 yields mostly its
fill value); the strategies here draw *descriptions* and `kfuzz.materialise` builds the tensors
from the case's seed. Draws are ordered so that shrinking heads for the small, friendly case:
integers shrink toward their lower bound, `sampled_from` toward its first option, so the
friendliest dtype and distribution come first.

Arguments are validated when a strategy is built, not when it draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

DTYPES = ("float32", "bfloat16", "float16", "float64")
LOW_PRECISION = ("bfloat16", "float16")
DISTRIBUTION_KINDS = ("normal", "uniform", "log_uniform", "outliers", "constant_rows", "edge")
EDGES = ("overflow", "underflow", "subnormal")
MAX_SEED = 2**32 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


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


def sides(*, min_side: int = 1, max_side: int = 64, multiple_of: int = 1) -> st.SearchStrategy[int]:
    """Sizes in [min_side, max_side] that are multiples of `multiple_of`, shrinking toward
    the smallest. Raises ValueError when the bounds admit no size."""
    dim = Dim(min_side, max_side, multiple_of)
    lo, hi = dim.smallest // multiple_of, max_side // multiple_of
    if hi - lo < 64:
        return st.integers(lo, hi).map(lambda k: k * multiple_of)
    # Wide ranges: draw the size's order of magnitude first, so small (fast) cases are as
    # common as large ones and the search reaches both, plus the largest size as one more
    # "magnitude" (production shapes sit at the top of the range and rare faults need them);
    # still shrinks toward the smallest.
    top = (hi - lo).bit_length() + 1

    def within(bits: int) -> st.SearchStrategy[int]:
        if bits == top:
            return st.just(hi)
        return st.integers(lo, lo + min((1 << bits) - 1, hi - lo))

    return st.integers(0, top).flatmap(within).map(lambda k: k * multiple_of)


def shapes(*dims: int | Dim, max_numel: int) -> st.SearchStrategy[list[int]]:
    """Shapes with one entry per `dims` item: an int is a fixed size, a `Dim` a drawn one.

    Dimensions are drawn in order and each is capped by what the earlier ones leave of
    `max_numel`, so no shape exceeds it and nothing is filtered. Raises ValueError when even
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
        shape: list[int] = []
        for i, spec in enumerate(specs):
            rest = 1
            for later in specs[i + 1 :]:
                rest *= max(later.smallest, 1)
            used = 1
            for size in shape:
                used *= max(size, 1)
            cap = min(spec.max_side, max_numel // (used * rest))
            cap = max(cap - cap % spec.multiple_of, spec.smallest)
            shape.append(draw(sides(min_side=spec.smallest, max_side=cap,
                                    multiple_of=spec.multiple_of)))
        return shape

    return draw_shape()


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


def distributions(
    *,
    kinds: Sequence[str] = DISTRIBUTION_KINDS,
    min_scale_exp: int = -8,
    max_scale_exp: int = 8,
    allow_nonfinite: bool = False,
) -> st.SearchStrategy[dict[str, Any]]:
    """Descriptions of value distributions, materialised by `kfuzz.materialise.values`.

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
    scales = _scales(min_scale_exp, max_scale_exp)
    builders: dict[str, st.SearchStrategy[dict[str, Any]]] = {
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
            "edge": st.sampled_from(EDGES),
            "spread": st.integers(0, 4),
        }),
    }
    base = st.one_of([builders[k] for k in kinds])
    if not allow_nonfinite:
        return base

    def add_nonfinite(dist: dict[str, Any], rates: tuple[float, float]) -> dict[str, Any]:
        nan, inf = rates
        if nan == 0 and inf == 0:
            return dist
        return {**dist, "nonfinite": {"nan": nan, "inf": inf}}

    rate = st.sampled_from([0.0, 0.001, 0.05])
    return st.builds(add_nonfinite, base, st.tuples(rate, rate))


def sparse_index_sets(
    *,
    max_rows: int,
    max_k: int,
    max_window: int = 128,
    allow_duplicates: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """Descriptions of per-token sparse index sets: k slots per token into n_rows cache rows,
    materialised by `kfuzz.materialise.sparse_indices`:

      {"n_rows", "k", "n_valid", "window", "ragged", "duplicates", "sorted", "out_of_range"}

    Each token's first min(window, valid) slots name the most recent rows (a sliding-window
    prefix), the next ones scattered top-k rows, and the tail is -1 padding. `n_valid` is the
    most valid slots (0 = all -1); with `ragged` each token draws its own valid length in
    [0, n_valid]. The cache holds at least k rows unless a short cache is drawn.

    About one set in four is full size (k = max_k, every slot valid): faults that show once
    in tens of thousands of weights, such as a rounding tie, need production-sized sets, which
    independent draws of k and n_valid would rarely give. Shrinks toward one valid slot, no
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


def valid_lengths(*, max_length: int) -> st.SearchStrategy[int]:
    """Valid lengths in [0, max_length], shrinking toward the full length (the common case)."""
    _check(max_length >= 0, f"max_length={max_length} must be >= 0")
    return st.integers(0, max_length).map(lambda gap: max_length - gap)
