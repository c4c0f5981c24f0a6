"""A failing case moved to a smaller cache of the rows its index sets name, kept bit for bit:
all of them, each slot keeping its row (`named_only`), or a few, shared by every slot
(`shared_rows`).

An index set without duplicates needs a cache row per valid slot, so cutting the cache cuts
the slots, and a cut from the end or a block inside the cache drops rows the failure needs (the
row on a rounding tie, and the one holding the maximum it is measured against) or hands their
slots to other rows. Many faults need only a few rows, named by many slots (two tiles whose
maxima differ, a weight on a tie): with duplicates on, any number of slots can name a cache of
one or two rows. This reduction keeps one named row, then two, at their coordinates
(`kfuzz.cases.materialise`, version 3), so that their values and everything else in the case
stay as they were, and lets every slot draw among them.

Before that, `named_only` cuts the cache to every row the index sets name, in one step: the
rows no slot names go, the named ones stay at their coordinates and keep their order, so every
slot names the same row with the same values as before. A large cache reaches the rows a
failure can need at once, where cuts from the end or of blocks inside it would take a run per
block.

A failure can also hang on which rows share a tile of slots (a tile's maximum, a weight on a
tie measured against it), so that dropping any one row moves a slot across a tile edge and
ends it. `slot_blocks` keeps the rows one aligned block of slots names (a power of two of
them, as tiles are), in their order, so that a failing tile becomes the whole case; and each
kept row or pair of rows is tried with a slot of its own as well as shared by every slot. Then,
where the cheaper cuts have stopped, three and four of a small cache's rows (`FEW_ROWS`), for
a failure that needs a few rows together while no one row can go alone (the rows that keep a
weight on its tie, and the output's magnitude, where they were); last the rows and pairs among
more of the named rows (`ALL_NAMED_ROWS`), each with a slot of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any

import torch
from kfuzz.cases.materialise import COORDS_KEY, VERSION_KEY, coords_of, coords_version
from kfuzz.shrink.axes import fields_made, linked_axes
from kfuzz.shrink.built import inputs_of
from kfuzz.targets.registry import Target

# Named rows tried, in slot order: each alone, then each pair (8 rows: 8 + 28 candidates),
# among the reductions tried early; among the first ALL_NAMED_ROWS, among the last ones.
NAMED_ROWS = 8
# Late, once no smaller cut keeps the failure, in a cache of at most FEW_ROWS_CACHE rows:
# every three and four of its named rows (at most 120 + 210 candidates). A failure can hang on
# a few rows together while no one row can go alone: a weight on a tie, the maximum it is
# measured against, and the rows that keep the output's magnitude (and so its error class)
# where it was.
FEW_ROWS = (3, 4)
FEW_ROWS_CACHE = 10
ALL_NAMED_ROWS = 64
# The smallest block of slots `slot_blocks` keeps: k // SLOT_BLOCKS slots (at least 2).
SLOT_BLOCKS = 16


def _index_sets(case: dict[str, Any], with_duplicates: bool = False
                ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, description) of each sparse index set of `case` whose slots name rows of their
    own (no duplicates; `with_duplicates`: or not) out of more than two cache rows."""
    allowed = (False, True) if with_duplicates else (False,)
    for key, spec in case.items():
        if (isinstance(spec, dict) and spec.get("duplicates") in allowed
                and isinstance(spec.get("n_rows"), int) and isinstance(spec.get("k"), int)
                and spec["n_rows"] > 2):
            yield key, spec


def _index_inputs(target: Target, case: dict[str, Any]) -> list[torch.Tensor]:
    """The signed integer inputs of `case` (its index sets, as built); none when the case
    cannot be built."""
    inputs = inputs_of(target, case)
    return [t for t in (inputs or {}).values()
            if not (t.is_floating_point() or t.is_complex() or t.dtype.is_signed is False)]


def named_rows(target: Target, case: dict[str, Any], n_rows: int) -> list[int]:
    """The cache rows (0 <= row < n_rows) the integer inputs of `case` name, in the order
    their slots name them (token by token), each once; empty when the case cannot be built."""
    rows: dict[int, None] = {}
    for tensor in _index_inputs(target, case):
        for row in tensor.flatten().tolist():
            if 0 <= row < n_rows:
                rows.setdefault(int(row))
    return list(rows)


def slot_rows(target: Target, case: dict[str, Any], n_rows: int, k: int) -> list[list[int]]:
    """Per token, the cache row each of the k slots of `case`'s integer inputs of k columns
    names (-1: none, such as padding); empty when the case cannot be built."""
    return [[int(r) if 0 <= r < n_rows else -1 for r in row]
            for tensor in _index_inputs(target, case) if tensor.dim() and tensor.shape[-1] == k
            for row in tensor.reshape(-1, k).tolist()]


def _rows_linked(target: Target, case: dict[str, Any], key: str,
                 spec: dict[str, Any]) -> list[tuple[str, str, int, tuple[int, ...]]]:
    """The axes of `case`'s fields that the cache rows of the index set at `key` (described
    by `spec`) set: those one row fewer shortens by one (`linked_axes`)."""
    fewer = {**case, key: {**spec, "n_rows": spec["n_rows"] - 1}}
    return linked_axes(fields_made(target, {**case, key: spec}), fields_made(target, fewer), 1)


def _keeping(coords: dict[str, dict[str, list[Any]]],
             links: list[tuple[str, str, int, tuple[int, ...]]],
             kept: list[int]) -> dict[str, dict[str, list[Any]]]:
    """`coords` (a case's coordinates) with the axes `links` names cut to the rows `kept`
    (positions along each axis, in order), each keeping its coordinate."""
    moved = {name: dict(subs) for name, subs in coords.items()}
    for name, sub, axis, shape in links:
        axes = list(moved.setdefault(name, {}).get(sub, [0] * len(shape)))
        at = axes[axis]
        whole = list(range(at, at + shape[axis])) if isinstance(at, int) else list(at)
        axes[axis] = [whole[r] for r in kept]
        moved[name][sub] = axes
    return moved


def named_only(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each index set of `case` (`_index_sets`) whose slots name fewer rows than its cache
    holds: the cache cut to the rows they name, kept bit for bit and in their order. A slot's
    row is its best-ranked row outside the window, and the window the last rows: ranks and
    order stay with the coordinates, so every slot names the row it named. Nothing where the
    rows' values are not position-stable."""
    for key, spec in _index_sets(case):
        n = spec["n_rows"]
        links = _rows_linked(target, case, key, spec)
        if not links:
            continue
        rows = sorted(named_rows(target, case, n))
        if not rows or len(rows) >= n:
            continue
        yield (f"{key}.n_rows {n}->{len(rows)} keeping the rows named",
               {**case, key: {**spec, "n_rows": len(rows)}, VERSION_KEY: coords_version(case),
                COORDS_KEY: _keeping(coords_of(case), links, rows)})


def _own_slots(spec: dict[str, Any], rows: int) -> dict[str, Any]:
    """`spec` cut to a cache of `rows` rows, each named by a slot of its own: k and n_valid
    at `rows`, no duplicates, the window within k."""
    return {**spec, "n_rows": rows, "k": rows, "n_valid": rows,
            "window": min(spec.get("window", 0), rows), "duplicates": False}


def slot_blocks(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each index set of `case` without duplicates (`_index_sets`): the cache cut to the
    rows one block of slots names, kept bit for bit and in their order, each with a slot of its
    own: blocks of a power of two of slots at multiples of their length, biggest first, down
    to k // SLOT_BLOCKS slots (at least 2). Without duplicates the slots name rows by rank,
    and ranks stay with the coordinates: with one token, the kept block's slots name the same
    rows in the same order, now from the first slot. Nothing where the rows' values are not
    position-stable."""
    for key, spec in _index_sets(case):
        n, k = spec["n_rows"], spec["k"]
        links = _rows_linked(target, case, key, spec)
        if not links or k < 4:
            continue
        tokens = slot_rows(target, case, n, k)
        coords = coords_of(case)
        block = 1 << ((k - 1).bit_length() - 1)  # the largest power of two below k
        while block >= max(2, k // SLOT_BLOCKS):
            for start in range(0, k, block):
                named = sorted({r for slots in tokens for r in slots[start:start + block] if r >= 0})
                if not named or len(named) >= n:
                    continue
                yield (f"{key}.n_rows {n}->{len(named)} keeping the rows slots "
                       f"{start}..{min(k, start + block) - 1} name",
                       {**case, key: _own_slots(spec, len(named)), VERSION_KEY: coords_version(case),
                        COORDS_KEY: _keeping(coords, links, named)})
            block //= 2


def shared_rows(target: Target, case: dict[str, Any], first: int = NAMED_ROWS,
                shared: bool = True, sizes: tuple[int, ...] = (1, 2),
                largest: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each index set of `case` (`_index_sets`, with duplicates or not; `largest`: of at
    most that many cache rows): the cache cut to one of the `first` rows its slots name, then
    to two of them (`sizes`), those rows kept bit for bit, each with a slot of its own (no
    duplicates, k at the rows kept), then (`shared`) with duplicates on so that every slot
    names one of them. Nothing where the rows' values are not position-stable."""
    for key, spec in _index_sets(case, with_duplicates=True):
        n = spec["n_rows"]
        if largest is not None and n > largest:
            continue
        links = _rows_linked(target, case, key, {**spec, "duplicates": True})
        if not links:
            continue
        rows = named_rows(target, case, n)[:first]
        coords = coords_of(case)
        for size in sizes:
            for chosen in combinations(rows, size):
                kept = sorted(chosen)
                at = {VERSION_KEY: coords_version(case), COORDS_KEY: _keeping(coords, links, kept)}
                yield (f"{key}.n_rows {n}->{size} keeping rows {kept}, a slot each",
                       {**case, key: _own_slots(spec, size), **at})
                if shared:
                    yield (f"{key}.n_rows {n}->{size} sharing rows {kept}",
                           {**case, key: {**spec, "n_rows": size, "duplicates": True}, **at})
