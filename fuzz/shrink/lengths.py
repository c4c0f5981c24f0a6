"""A ragged index set whose tokens all hold the same number of valid slots, made a plain one of
that many (`even_lengths`): the same indices, bit for bit.

A ragged set draws each token's valid length below `n_valid + 1`, so every cut of `n_valid`,
and of `k`, which bounds it, draws the lengths anew: a failure that needs a token's slots as
they are (a weight on a rounding tie, measured against its tile's maximum) loses them at every
such cut, and the case stays at hundreds of slots. Once every token holds the same number of
valid slots (one token, say), the set without `ragged` and with `n_valid` at that number
builds the same indices, and from there a cut of `k` down to that number leaves them as they
are and a cut of `n_valid` keeps the token's first valid slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from kfuzz.shrink.built import inputs_of
from kfuzz.targets.registry import Target


def _index_tensors(target: Target, case: dict[str, Any], k: int) -> list[torch.Tensor] | None:
    """The integer inputs of `case` whose last axis is `k` long (the index sets of `k`
    slots); None when the case cannot be built."""
    inputs = inputs_of(target, case)
    if inputs is None:
        return None
    return [tensor for tensor in inputs.values()
            if not (tensor.is_floating_point() or tensor.is_complex())
            and tensor.dim() >= 1 and tensor.shape[-1] == k]


def even_lengths(target: Target, case: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """For each ragged index set of `case` (a description with `ragged` on and int `k` and
    `n_valid`) whose tokens all hold the same number of valid slots (entries other than -1):
    the set without `ragged` and with `n_valid` at that number, where it builds the same
    index sets."""
    for key, spec in case.items():
        if not (isinstance(spec, dict) and spec.get("ragged") is True
                and isinstance(spec.get("k"), int) and isinstance(spec.get("n_valid"), int)):
            continue
        before = _index_tensors(target, case, spec["k"])
        if not before:
            continue
        lengths = {int(n) for tensor in before for n in (tensor != -1).sum(-1).flatten().tolist()}
        if len(lengths) != 1:
            continue
        length = lengths.pop()
        candidate = {**case, key: {**spec, "ragged": False, "n_valid": length}}
        after = _index_tensors(target, candidate, spec["k"])
        if after is not None and len(after) == len(before) and all(
                torch.equal(a, b) for a, b in zip(after, before, strict=True)):
            yield (f"{key}.ragged off with n_valid {spec['n_valid']}->{length} "
                   "(every token's length)", candidate)
