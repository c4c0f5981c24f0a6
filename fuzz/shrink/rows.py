"""A failing case moved to a cache of a few rows: the rows its index sets name, kept bit for
bit, shared by every slot (`shared_rows`).

An index set without duplicates needs a cache row per valid slot, so cutting the cache cuts
the slots, and a cut from the end or a block inside the cache drops rows the failure needs (the
row on a rounding tie, and the one holding the maximum it is measured against) or hands their
slots to other rows. Many faults need only a few rows, named by many slots (two tiles whose
maxima differ, a weight on a tie): with duplicates on, any number of slots can name a cache of
one or two rows. This reduction keeps one named row, then two, at their coordinates
(`kfuzz.cases.materialise`, version 3), so that their values and everything else in the case
stay as they were, and lets every slot draw among them.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any

from kfuzz.cases.materialise import COORDS_KEY, COORDS_VERSION, VERSION_KEY, coords_of, generator_for
from kfuzz.shrink.axes import fields_made, linked_axes
from kfuzz.targets.registry import Target

# Named rows tried, in slot order: each alone, then each pair (8 rows: 8 + 28 candidates).
NAMED_ROWS = 8


def _index_sets(case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, description) of each sparse index set of `case` whose slots name rows of their
    own (no duplicates) out of more than two cache rows."""
    for key, spec in case.items():
        if (isinstance(spec, dict) and spec.get("duplicates") is False
                and isinstance(spec.get("n_rows"), int) and isinstance(spec.get("k"), int)
                and spec["n_rows"] > 2):
            yield key, spec


def named_rows(target: Target, case: dict[str, Any], n_rows: int) -> list[int]:
    """The cache rows (0 <= row < n_rows) the integer inputs of `case` name, in the order
    their slots name them (token by token), each once; empty when the case cannot be built."""
    try:
        inputs = target.inputs(case, generator_for(case))
    except Exception:  # a case the target cannot build
        return []
    rows: dict[int, None] = {}
    for tensor in inputs.values():
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype.is_signed is False:
            continue
        for row in tensor.flatten().tolist():
            if 0 <= row < n_rows:
                rows.setdefault(int(row))
    return list(rows)


def shared_rows(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each index set of `case` (`_index_sets`): the cache cut to one of the first
    NAMED_ROWS rows its slots name, then to two of them, those rows kept bit for bit, with
    duplicates on so that every slot names one of them. Nothing where the rows' values are not
    position-stable."""
    for key, spec in _index_sets(case):
        n = spec["n_rows"]
        shared = {**case, key: {**spec, "duplicates": True}}
        links = linked_axes(fields_made(target, shared),
                            fields_made(target, {**shared, key: {**spec, "duplicates": True,
                                                                  "n_rows": n - 1}}), 1)
        if not links:
            continue
        rows = named_rows(target, case, n)[:NAMED_ROWS]
        coords = coords_of(case)
        for size in (1, 2):
            for chosen in combinations(rows, size):
                kept = sorted(chosen)
                moved = {name: dict(subs) for name, subs in coords.items()}
                for name, sub, axis, shape in links:
                    axes = list(moved.setdefault(name, {}).get(sub, [0] * len(shape)))
                    at = axes[axis]
                    whole = list(range(at, at + shape[axis])) if isinstance(at, int) else list(at)
                    axes[axis] = [whole[r] for r in kept]
                    moved[name][sub] = axes
                yield (f"{key}.n_rows {n}->{size} sharing rows {kept}",
                       {**shared, key: {**spec, "n_rows": size, "duplicates": True},
                        VERSION_KEY: COORDS_VERSION, COORDS_KEY: moved})
