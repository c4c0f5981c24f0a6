"""Shape strategies: sizes of one dimension (`sides`, `Dim`, `boundary_sizes`) and whole
shapes within an element bound (`shapes`, `largest_shape`), with the helpers every strategy
factory of `kfuzz.cases.strategies` uses (`check`, `cached`). Re-exported by
`kfuzz.cases.strategies`, where targets find them."""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# Plain draws (`plain_draws`): while set, every strategy of kfuzz.cases draws from the base
# space a hand-written random test samples: sizes uniform over their range, no regime.
_PLAIN = contextvars.ContextVar("kfuzz_plain_draws", default=False)


def plain() -> bool:
    """Whether the case being drawn is a plain one (`plain_draws`). A target's own regimes
    (a production size, a score shift) consult it and stay off."""
    return _PLAIN.get()


@contextlib.contextmanager
def plain_draws(on: bool = True) -> Iterator[None]:
    """Within it, the strategies of kfuzz.cases draw plainly: each size uniform over its
    range (no order of magnitude first, no boundary, no largest size), shapes with no
    production regime, value descriptions with no regime and no special values, index sets
    with no full-size regime. They make the same draws either way."""
    token = _PLAIN.set(on)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def cached(fn: Any) -> Any:
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
        check(self.multiple_of >= 1, f"multiple_of={self.multiple_of} must be >= 1")
        check(self.min_side >= 0, f"min_side={self.min_side} must be >= 0")
        check(
            self.max_side >= self.min_side,
            f"max_side={self.max_side} < min_side={self.min_side}; pass max_side >= min_side",
        )
        lo = -(-self.min_side // self.multiple_of) * self.multiple_of
        check(
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


@cached
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
        if plain():
            return (lo + raw) * multiple_of
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


@cached
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
    check(max_numel >= 1, f"max_numel={max_numel} must be >= 1")
    specs = [Dim(d, d) if isinstance(d, int) else d for d in dims]
    smallest = 1
    for spec in specs:
        smallest *= max(spec.smallest, 1)
    check(
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
            if plain():
                pass
            elif regime == 15:
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
