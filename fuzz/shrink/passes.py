"""Size-directed shrinking: structured reductions of a decoded case, after Hypothesis' own pass.

Hypothesis shrinks the choice sequence behind a case, which is not the same as the case's size:
a failure found at [64, 8192] can come back with its 8192 intact. This pass works on the case
itself. It tries, in order, reductions that remove the most elements (each drawn dimension set
to its smallest size, halved, cut by a quarter down to a 32nd, decremented; a cache cut to
the rows its index sets name, each slot keeping its row (`kfuzz.shrink.rows`); a ragged index
set made a plain one where every token holds as many valid slots (`kfuzz.shrink.lengths`); the
target's own reductions, such as fewer cache rows; a cache cut to a few of the rows its index sets name,
shared by every slot; other integer fields that size the inputs; a dimension
and another integer lowered together, keeping their difference), then simplifications (each
value regime switched off, each flag off, each distribution replaced by a plain normal, scales
to 1, the seed to 0), then each size cut from the front and inside its axes, and last a
smaller shape with other seeds. A candidate is kept only when it still fails in the same
failure bucket and is no larger; a kept cut of one size by d is pushed further (by d more, 2d,
4d, ... while the case fails, then bisected: `_gallop`), so that a failure needing a long axis
reaches its length in a few runs per halving rather than one restart per step. The pass
restarts after every kept candidate and ends at a fixed point or at its deadline. Because
inputs are position-stable (kfuzz.cases.materialise), a smaller shape keeps every surviving
element, and a cut elsewhere than at an axis's end keeps them too (version 3, the coordinates
of each axis), so the failing elements survive the cut wherever they sit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kfuzz.cases.materialise import (
    COORDS_KEY,
    MODIFIERS,
    VERSION_KEY,
    coords_of,
    coords_version,
)
from kfuzz.cases.strategies import DISTRIBUTION_KINDS, Dim
from kfuzz.execute.findings import canonical_json
from kfuzz.shrink.axes import fields_made, linked_axes
from kfuzz.shrink.cuts import smaller_steps
from kfuzz.shrink.lengths import even_lengths
from kfuzz.shrink.rows import (
    ALL_NAMED_ROWS,
    FEW_ROWS,
    FEW_ROWS_CACHE,
    named_only,
    shared_rows,
    slot_blocks,
)
from kfuzz.targets.registry import Target

# Fields the pass leaves alone: the materialisation version, the coordinates (moved only with
# a size, by `_inner_cuts`) and the seed (only set to 0).
_FIXED = {VERSION_KEY, COORDS_KEY, "seed"}


@dataclass
class ShrinkResult:
    """The smallest case reached, how it was reached and how long it took."""

    case: dict[str, Any]
    steps: list[str] = field(default_factory=list)
    tried: int = 0
    complete: bool = True


def _dims(target: Target, shape: list[int]) -> list[int | Dim]:
    if target.dims is not None and len(target.dims) == len(shape):
        return list(target.dims)
    return [Dim(1, max(shape + [1]))] * len(shape)



def is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") in DISTRIBUTION_KINDS


def reductions(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Candidate reductions of `case`, biggest first, as (label, candidate)."""
    # Drawn dimensions, then other integer fields only where they size the inputs (m, k, n of
    # a matmul, say): a field such as a rotary dimension or a window is a choice of the case
    # space, not a size.
    def all_of() -> Iterator[tuple[str, dict[str, Any]]]:
        for label, smaller in sizes(target, case):
            for candidate, new in smaller:
                yield f"{label}->{new}", candidate
        yield from named_only(target, case)
        yield from even_lengths(target, case)
        if target.reductions is not None:
            yield from target.reductions(case)
        yield from shared_rows(target, case)
        yield from _coupled(target, case)
        yield from _simplifications(case)
        yield from _inner_cuts(target, case)
        yield from slot_blocks(target, case)
        yield from shared_rows(target, case, FEW_ROWS_CACHE, shared=False, sizes=FEW_ROWS,
                               largest=FEW_ROWS_CACHE)
        yield from shared_rows(target, case, ALL_NAMED_ROWS, shared=False)
        yield from _reseeded(target, case)

    # A target's own reductions may repeat a size cut (fewer cache rows, say): try each once.
    seen: set[str] = set()
    for label, candidate in all_of():
        key = canonical_json(candidate)
        if key not in seen:
            seen.add(key)
            yield label, candidate


def integer_fields(case: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], int]]:
    """(label, path, value) of every integer of `case` a coupled cut may lower: the other
    shape entries, top-level integers and integers one level down (e.g. index.window), but
    not the seed, the materialisation version or a distribution's parameters."""
    shape = case.get("shape")
    if isinstance(shape, list):
        for i, size in enumerate(shape):
            if isinstance(size, int):
                yield f"shape[{i}]", ("shape", i), size
    for key, value in case.items():
        if key in _FIXED or key == "shape":
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            yield key, (key,), value
        elif isinstance(value, dict) and not is_distribution(value):
            for sub, inner in value.items():
                if isinstance(inner, int) and not isinstance(inner, bool):
                    yield f"{key}.{sub}", (key, sub), inner


def _with(case: dict[str, Any], path: tuple[Any, ...], value: int) -> dict[str, Any]:
    head, *rest = path
    if not rest:
        return {**case, head: value}
    inner = case[head]
    if isinstance(inner, list):
        return {**case, head: [value if j == rest[0] else v for j, v in enumerate(inner)]}
    return {**case, head: {**inner, rest[0]: value}}


def _coupled(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Two sizes lowered together by the same amount, for failures that need a relation
    between them (S = window + 1, M = N, k = n_rows): a drawn dimension cut as above, with
    another integer of the case cut by the same number, so that their difference stays."""
    shape = case.get("shape")
    if not (isinstance(shape, list) and all(isinstance(s, int) for s in shape)):
        return
    specs = _dims(target, shape)
    for i, spec in enumerate(specs):
        if isinstance(spec, int):
            continue
        for new in smaller_steps(shape[i], spec.smallest, spec.multiple_of):
            cut = shape[i] - new
            moved = _with(case, ("shape", i), new)
            for label, path, value in integer_fields(case):
                if path == ("shape", i) or value - cut < 0:
                    continue
                if path[0] == "shape":
                    other = specs[path[1]]
                    if isinstance(other, int) or (value - cut < other.smallest
                                                  or (value - cut) % other.multiple_of):
                        continue
                yield (f"shape[{i}] {shape[i]}->{new} with {label} {value}->{value - cut}",
                       _with(moved, path, value - cut))


# Seeds tried with a smaller size once nothing else shrinks the case: at a dimension's
# smallest size and at half its size (a rare value, an outlier or a failing element among a
# few, may need tens of seeds; the pass tries them last and stops at its deadline).
RESEEDS = (64, 64)


def _reseeded(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A smaller size with other seeds: when the failing elements sit far from the origin
    (row 20 of 21, say), no cut keeps them, but many faults show on some element of almost
    any seed's values. Each drawn dimension (or integer field that sizes the inputs) at its
    smallest, then at half, with seeds 0..63."""
    seed = case.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return
    for label, smaller in sizes(target, case):
        for candidate, seeds in zip(smaller, RESEEDS, strict=False):
            for other in range(seeds):
                if other != seed:
                    yield f"{label}->{candidate[1]} with seed {other}", {**candidate[0], "seed": other}


def sizes(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, list[tuple[dict, int]]]]:
    """Per size of `case` (a drawn dimension of its shape, or an integer field, top-level or
    one level down such as an index set's cache rows, whose cut makes the case smaller): its
    label and the smaller cases, biggest cut first, as (case, size)."""
    for label, _path, _value, smaller in size_cuts(target, case):
        yield label, smaller


def size_cuts(
    target: Target, case: dict[str, Any]
) -> Iterator[tuple[str, tuple[Any, ...], int, list[tuple[dict, int]]]]:
    """`sizes`, with each size's path in the case and value."""
    shape = case.get("shape")
    if isinstance(shape, list) and all(isinstance(s, int) for s in shape):
        for i, spec in enumerate(_dims(target, shape)):
            if isinstance(spec, int):
                continue
            yield f"shape[{i}] {shape[i]}", ("shape", i), shape[i], [
                ({**case, "shape": [*shape[:i], new, *shape[i + 1:]]}, new)
                for new in smaller_steps(shape[i], spec.smallest, spec.multiple_of)]
    try:
        size = target.case_size(case)
    except Exception:  # not a case of this target
        return
    for label, path, value in integer_fields(case):
        if path[0] == "shape":
            continue
        smaller = []
        for new in smaller_steps(value, 1):
            plain = _with(case, path, new)
            try:
                # A size is a field whose own cut makes the case smaller.
                if target.case_size(plain) < size:
                    smaller.append((_with_bounds(plain, path, value, new), new))
            except Exception:  # a candidate outside the case space
                continue
        if smaller:
            yield f"{label} {value}", path, value, smaller


# Cuts inside an axis: blocks of each size a cut from the end would remove, at every multiple
# of the block's length, while there are at most this many positions (each a run of the case).
INNER_POSITIONS = 16


def _inner_cuts(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each size cut elsewhere than at its end: the first elements of the axes it sizes
    dropped, then blocks inside them, every other element kept bit for bit (a version-3
    case's coordinates: `kfuzz.cases.materialise`). A failing head, row or cache row far from the
    origin survives such a cut where a cut from the end would lose it, and a cache row no
    index names can go while the rows around it stay. Which axes of which inputs a size
    sets is read off the case's inputs, built at the size and at its smallest cut: an axis
    of a field that shrank by exactly the cut. Nothing for a case whose inputs are not
    position-stable (version 1, or a target drawing its own values)."""
    fields = fields_made(target, case)
    if not fields:
        return
    coords = coords_of(case)
    for label, path, value, smaller in size_cuts(target, case):
        if not smaller:
            continue
        # Each cut as it is, then with the fields it bounds brought down with it (`sizes`):
        # dropping a cache row no index names need not change the slots per token.
        variants = [[(_with(case, path, new), new) for _, new in smaller], smaller]
        for cuts in _unique(variants):
            cut, new = cuts[-1]
            links = linked_axes(fields, fields_made(target, cut), value - new)
            if links:
                yield from _places(label, value, cuts, links, coords)


def _places(
    label: str, value: int, cuts: list[tuple[dict, int]],
    links: list[tuple[str, str, int, tuple[int, ...]]], coords: dict[str, dict[str, list[Any]]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The cuts of one size (`cuts`, biggest first) made at the front of the axes `links`
    names, then at each multiple of the block inside them."""
    blocks = [(value - new, candidate) for candidate, new in cuts]
    places = [(0, b, c) for b, c in blocks]  # from the front, biggest block first
    places += [(at, b, c) for b, c in blocks if value // b <= INNER_POSITIONS
               for at in range(b, value - b, b)]
    for at, drop, candidate in places:
        moved = {name: dict(subs) for name, subs in coords.items()}
        for name, sub, axis, shape in links:
            axes = list(moved.setdefault(name, {}).get(sub, [0] * len(shape)))
            axes[axis] = _without(axes[axis], shape[axis], at, drop)
            moved[name][sub] = axes
        where = "from the front" if at == 0 else f"at {at}"
        yield (f"{label}->{value - drop} {where}",
               {**candidate, VERSION_KEY: coords_version(candidate), COORDS_KEY: moved})


def _unique(items: list[Any]) -> list[Any]:
    return [c for i, c in enumerate(items) if c not in items[:i]]


def _without(axis: int | list[int], length: int, at: int, drop: int) -> int | list[int]:
    """The coordinates of an axis of `length` elements (a first coordinate, or a list) with
    `drop` elements from position `at` removed: still a first coordinate when they were the
    first ones."""
    if isinstance(axis, int):
        if at == 0:
            return axis + drop
        axis = list(range(axis, axis + length))
    kept = list(axis[:length])
    return kept[:at] + kept[at + drop:]


def _with_bounds(cut: dict[str, Any], path: tuple[Any, ...], value: int, new: int) -> dict[str, Any]:
    """`cut`, a case whose integer at `path` was lowered from `value` to `new`, with the fields
    it bounds: in a description one level down (an index set, say), a sibling integer that was
    at most `value` and is above `new` comes down to `new` with it (valid slots and window
    within k), so that the cut keeps the relation."""
    if len(path) == 2:
        inner = dict(cut[path[0]])
        for sub, other in inner.items():
            if (sub != path[1] and isinstance(other, int) and not isinstance(other, bool)
                    and new < other <= value):
                inner[sub] = new
        return {**cut, path[0]: inner}
    return cut


def _simplifications(case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in case.items():
        if is_distribution(value):
            for mod in MODIFIERS:
                if mod in value:
                    yield f"{key}.{mod} off", {**case, key: {k: v for k, v in value.items() if k != mod}}
            mods = {k: v for k, v in value.items() if k in MODIFIERS}
            plain = {"kind": "normal", "scale": float(value.get("scale", 1.0)), **mods}
            if value.get("kind") != "normal":
                yield f"{key} -> normal", {**case, key: plain}
            elif value.get("scale") != 1.0:
                yield f"{key}.scale -> 1", {**case, key: {**value, "scale": 1.0}}
        elif isinstance(value, dict):
            for sub, flag in value.items():
                if flag is True:
                    yield f"{key}.{sub} off", {**case, key: {**value, sub: False}}
        elif value is True:
            yield f"{key} off", {**case, key: False}
    if case.get("seed", 0) != 0:
        yield "seed -> 0", {**case, "seed": 0}


def shrink(
    target: Target,
    case: dict[str, Any],
    still_fails: Callable[[dict[str, Any]], bool],
    *,
    deadline: float,
) -> ShrinkResult:
    """Reduce `case` while `still_fails(candidate)` holds and the candidate is no larger
    (`Target.case_size`), to a fixed point or until `time.perf_counter()` passes `deadline`.
    `still_fails` must answer True only for a failure in the bucket being shrunk. A candidate
    that does not fit the target (its inputs cannot be built) is skipped."""
    result = ShrinkResult(dict(case))
    size = target.case_size(result.case)
    progress = True
    while progress:
        progress = False
        for label, candidate in reductions(target, result.case):
            if time.perf_counter() > deadline:
                result.complete = False
                return result
            if candidate == result.case:
                continue
            try:
                new_size = target.case_size(candidate)
            except Exception:  # the candidate is outside the target's case space
                continue
            if new_size > size:
                continue
            result.tried += 1
            if still_fails(candidate):
                before = result.case
                result.case, size = candidate, new_size
                result.steps.append(label)
                size = _gallop(target, before, result, still_fails, size, deadline)
                progress = True
                break
    return result


def _cut_made(target: Target, before: dict[str, Any],
              after: dict[str, Any]) -> tuple[tuple[Any, ...], int, int] | None:
    """(path, value, new) when `after` is `before` with one size lowered from `value` to
    `new` and nothing else changed (beside the fields that size bounds: `_with_bounds`);
    None for any other reduction."""
    lowered = dict((path, value) for _label, path, value in integer_fields(before))
    for _label, path, new in integer_fields(after):
        value = lowered.get(path)
        if value is None or new >= value:
            continue
        if cut_to(target, before, path, value, new) == after:
            return path, value, new
    return None


def cut_to(target: Target, case: dict[str, Any], path: tuple[Any, ...], value: int,
           new: int) -> dict[str, Any] | None:
    """`case` with the size at `path` lowered from `value` to `new` as `sizes` lowers it; None
    where that is no size cut of the case (below a dimension's smallest or off its multiple,
    or a field whose cut leaves the case no smaller)."""
    if path[0] == "shape":
        spec = _dims(target, case["shape"])[path[1]]
        if isinstance(spec, int) or new < spec.smallest or new % spec.multiple_of:
            return None
        return _with(case, path, new)
    if new < 1:
        return None
    cut = _with_bounds(_with(case, path, new), path, value, new)
    try:
        return cut if target.case_size(cut) < target.case_size(case) else None
    except Exception:  # a candidate outside the case space
        return None


def resize(target: Target, case: dict[str, Any], path: tuple[Any, ...],
           new: int) -> dict[str, Any] | None:
    """`case` with the size at `path` set to `new`, larger or smaller (a dimension rounded
    down to its multiple, at least its smallest); None where that is no case of the target."""
    if path[0] == "shape":
        spec = _dims(target, case["shape"])[path[1]]
        if isinstance(spec, int):
            return None
        new = max(spec.smallest, new - new % spec.multiple_of)
    elif new < 1:
        return None
    resized = _with(case, path, new)
    try:
        target.case_size(resized)
    except Exception:  # a candidate outside the case space
        return None
    return resized


def _gallop(
    target: Target, before: dict[str, Any], result: ShrinkResult,
    still_fails: Callable[[dict[str, Any]], bool], size: int, deadline: float,
) -> int:
    """After a kept cut of one size by d (`before` -> `result.case`), cut that size further
    by 2d, 4d, ... while the case still fails, then bisect between the last cut kept and
    the first one that did not fail: a failure that needs a long axis (a sum that absorbs
    small terms, say) then reaches its length in a few runs rather than one run per step.
    Updates `result`; returns the size of its case."""
    made = _cut_made(target, before, result.case)
    if made is None:
        return size
    path, value, new = made
    step = value - new
    good, bad = 0, None  # extra cut known to fail, and the first extra cut known not to
    extra = step
    while time.perf_counter() <= deadline:
        if bad is not None:
            extra = good + (bad - good) // 2 // step * step
            if extra <= good:
                break
        candidate = cut_to(target, result.case, path, new - good, new - extra)
        if candidate is None:
            bad = extra  # below the size's floor
            continue
        cut_size = target.case_size(candidate)
        result.tried += 1
        if cut_size <= size and still_fails(candidate):
            result.case, size = candidate, cut_size
            result.steps.append(f"{path_label(path)} {new - good}->{new - extra} (gallop)")
            good = extra
            if bad is None:
                extra *= 2
        else:
            bad = extra
    return size


def path_label(path: tuple[Any, ...]) -> str:
    """A size's path as its reductions' labels name it: shape[1], index.n_rows."""
    if path[0] == "shape":
        return f"shape[{path[1]}]"
    return ".".join(str(p) for p in path)
