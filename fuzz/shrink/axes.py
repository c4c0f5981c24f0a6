"""Which axes of a case's inputs a size sets: the position-stable fields its inputs are built
from (`fields_made`) and the axes of those fields that one cut shortens (`linked_axes`), so
that a cut can keep the surviving elements bit for bit (a version-3 case's coordinates)."""

from __future__ import annotations

from typing import Any

from kfuzz.cases.materialise import generator_for
from kfuzz.cases.materialise.counter import CounterGenerator
from kfuzz.targets.registry import Target

Fields = dict[tuple[str, str], tuple[int, ...]]


def fields_made(target: Target, case: dict[str, Any]) -> Fields:
    """(input, field) -> shape of every position-stable field `case`'s inputs are built
    from; empty where they are not position-stable or cannot be built."""
    try:
        gen = generator_for(case)
        if not isinstance(gen, CounterGenerator):
            return {}
        gen.fields = []
        target.inputs(case, gen)
    except Exception:  # a case the target cannot build: no cuts inside its axes
        return {}
    return {(name, sub): shape for name, sub, shape in gen.fields}


def linked_axes(at_size: Fields, cut: Fields, by: int) -> list[tuple[str, str, int, tuple[int, ...]]]:
    """(input, field, axis, shape) of each axis that is `by` shorter in `cut` than in
    `at_size`, the field's other axes unchanged."""
    links = []
    for (name, sub), shape in at_size.items():
        other = cut.get((name, sub))
        if other is None or len(other) != len(shape):
            continue
        changed = [a for a, (x, y) in enumerate(zip(shape, other, strict=True)) if x != y]
        if len(changed) == 1 and shape[changed[0]] - other[changed[0]] == by:
            links.append((name, sub, changed[0], shape))
    return links
