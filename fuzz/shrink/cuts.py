"""The cuts a shrink tries on one size: the smaller values of an integer (`smaller_steps`) and
the size-directed reductions of a sparse index-set description (`index_set_reductions`, a
`Target.reductions` for targets that draw one with `kfuzz.cases.strategies.sparse_index_sets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Reductions = Callable[[dict[str, Any]], Iterator[tuple[str, dict[str, Any]]]]


def smaller_steps(value: int, floor: int, multiple_of: int = 1) -> list[int]:
    """Sizes below `value` and at least `floor` (multiples of `multiple_of`) to try when
    shrinking it, biggest cut first: the floor, half, then cuts of 1/4 down to 1/32 of the
    value, then one step (a binary-search-like descent rather than one step at a time)."""
    out: list[int] = []
    for new in (floor, value // 2, *(value - value // d for d in (4, 8, 16, 32)),
                value - multiple_of):
        new -= new % multiple_of
        if floor <= new < value and new not in out:
            out.append(new)
    return out


def index_set_reductions(field: str = "index") -> Reductions:
    """Size-directed reductions (`Target.reductions`) of the `sparse_index_sets` description in
    `case[field]`: fewer cache rows, fewer slots, fewer valid slots, a shorter window, each
    cut to its smallest, halved, then by smaller steps down to one; n_valid and window stay
    within k. Without duplicates every valid slot needs a row of its own: the cache can then
    shrink only by letting slots share rows, which is tried too (duplicates on, fewer rows).
    Returns the function from a case to its (label, smaller case) pairs; a case without a
    description at `field` has none."""

    def reduce(case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        spec = case.get(field)
        if not isinstance(spec, dict):
            return
        n = spec.get("n_rows")
        if isinstance(n, int) and not spec.get("duplicates"):
            for new in dict.fromkeys((1, 2, n // 2)):
                if 1 <= new < n:
                    yield (f"{field}.n_rows {n}->{new} sharing rows",
                           {**case, field: {**spec, "n_rows": new, "duplicates": True}})
        for key, floor in (("n_rows", 1), ("k", 1), ("n_valid", 0), ("window", 0)):
            value = spec.get(key)
            if not isinstance(value, int):
                continue
            for new in smaller_steps(value, floor):
                smaller = {**spec, key: new}
                if key == "k":
                    smaller["n_valid"] = min(smaller["n_valid"], new)
                    smaller["window"] = min(smaller["window"], new)
                yield f"{field}.{key} {value}->{new}", {**case, field: smaller}

    return reduce
