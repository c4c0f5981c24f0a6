"""Case -> tensors.

A case's "materialise" field picks its version (`kfuzz.cases.materialise.versions`, one table)
and `generator_for` gives that version's generator; `values`, `integers` and `sparse_indices`
build an input with whatever generator they are given. Every case the search draws now is
version 2: *position-stable* values, each element a function of (case seed, input, the
element's coordinates) through a counter-based integer hash, so that removing a row, a head or
a cache row leaves every surviving element bit-identical and a shrunk case still shows the
failure it was shrunk from. The mapping from hash bits to values uses only integer ops, table
lookups and correctly rounded float64 arithmetic (+, -, *, /), so the same case gives the same
bits on a CPU and on a GPU (`device=`). Version 3 is version 2 at the coordinates the case gives
(what the shrinker writes for a cut inside an axis); version 1, cases stored before version 2,
draws sequentially from a `torch.Generator`, unchanged so every stored case replays bit for bit.

Generation order inside a target's `inputs` function is part of a version-1 case's meaning; in
versions 2 and 3 an input's values depend on its name (`name=`) or, without one, on the order
of the calls, never on the other inputs' sizes.

Modules: `versions` (the table, `generator_for`, `stamp`), `base` (what a version's generator
offers), `sequential` and `v1` (version 1, frozen), `counter` (versions 2 and 3), `core` (the
counter hash and its maps to numbers), `fields` (the hash over a tensor's coordinates, with
torch, NumPy or plain Python), `distributions` and `indices` (values and sparse index sets from
a case's descriptions), `dtypes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kfuzz.cases.materialise.base import InputGenerator
from kfuzz.cases.materialise.distributions import MODIFIERS
from kfuzz.cases.materialise.dtypes import DTYPE_NAMES, dtype_of
from kfuzz.cases.materialise.sequential import SequentialGenerator
from kfuzz.cases.materialise.versions import (
    COORDS_KEY,
    COORDS_VERSION,
    VERSION,
    VERSION_KEY,
    VERSIONS,
    coords_of,
    coords_version,
    generator,
    generator_for,
    stamp,
)
from kfuzz.errors import CaseError

__all__ = [
    "COORDS_KEY", "COORDS_VERSION", "DTYPE_NAMES", "MODIFIERS", "VERSION", "VERSION_KEY",
    "VERSIONS", "InputGenerator", "coords_of", "coords_version", "dtype_of", "generator", "generator_for",
    "integers", "sparse_indices", "stamp", "to_device", "values",
]


def _built_by(gen: Any) -> InputGenerator:
    """The generator that builds from `gen`: `gen` itself when a version made it; for a plain
    `torch.Generator` a caller made, version 1 drawing from it (what it has always built)."""
    # Not isinstance: torch.Generator's metaclass makes that a Python call.
    return gen if hasattr(gen, "sparse_indices") else SequentialGenerator.drawing_from(gen)


def values(
    gen: torch.Generator, shape: Sequence[int], dtype: torch.dtype, dist: Mapping[str, Any],
    *, name: str | None = None,
) -> torch.Tensor:
    """A tensor of `shape` and `dtype` drawn from the distribution description `dist` (see
    `kfuzz.cases.strategies.distributions`) by `gen`'s version. Values are drawn in float64,
    then rounded to `dtype` (saturating to +/-Inf past its range, as a cast would). In
    versions 2 and 3 each element is a function of the seed, `name` (or the call order) and
    its coordinates. Raises CaseError for a malformed description."""
    if not isinstance(dist, Mapping):
        raise CaseError(f"distribution {dist!r} is not a mapping")
    return _built_by(gen).values(tuple(map(int, shape)), dtype, dist, name)


def integers(
    gen: torch.Generator, shape: Sequence[int], low: int, high: int, *, name: str | None = None
) -> torch.Tensor:
    """An int64 tensor of `shape`, uniform in [low, high) (high > low). Position-stable in
    versions 2 and 3; `torch.randint` in version 1. Raises CaseError for high <= low."""
    if high <= low:
        raise CaseError(f"integers need high > low, got [{low}, {high})")
    return _built_by(gen).integers(tuple(map(int, shape)), low, high, name)


def sparse_indices(
    gen: torch.Generator, tokens: int, spec: Mapping[str, Any], *, name: str | None = None
) -> torch.Tensor:
    """A [tokens, k] int32 index tensor from a `kfuzz.cases.strategies.sparse_index_sets`
    description.

    Per token: the first min(window, valid) slots are the most recent rows (n_rows-1 down),
    the next valid slots scattered rows (drawn without replacement unless `duplicates`), the
    rest -1. With `out_of_range`, about one valid slot in eight names a row >= n_rows. In
    versions 2 and 3 a token's indices depend on the token and the row or slot numbers only:
    removing a token, a slot or a cache row leaves the others' choices in place.
    Raises CaseError for a malformed description."""
    return _built_by(gen).sparse_indices(tokens, spec, name)


def to_device(tensors: Mapping[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """The same tensors moved to `device` (the tensor itself where it already is)."""
    where = torch.device(device)
    return {name: t if t.device == where else t.to(where) for name, t in tensors.items()}
