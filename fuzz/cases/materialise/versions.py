"""The materialisation versions, in one table: a case's "materialise" field picks the generator
its inputs are built with, and every choice that depends on the version is that generator's.

- 1 (absent: cases stored before version 2): the sequential `torch.Generator`, frozen
  (`kfuzz.cases.materialise.sequential`, `kfuzz.cases.materialise.v1`).
- 2: the counter hash, position-stable (`kfuzz.cases.materialise.counter`).
- 3: version 2 with the case field "coords", the coordinates of each axis of an input's fields.
  The shrinker writes it when it drops heads, rows or cache rows other than the last of a
  version-2 case. A case without coords is never stamped 3, so older readers of version-2
  cases see no change.
- 4: version 3 (coords optional) with FP32 normals computed in float32 arithmetic
  (`kfuzz.cases.materialise.core.normal32_of`) rather than in float64 and then rounded: a third
  less work per element, the same bits on every device. Every other value, and every BF16, FP16
  and FP64 input, is built as in versions 2 and 3.
- 5 (every case the search draws now): version 4 with BF16 and FP16 normals that take the value
  of their range of positions (`kfuzz.cases.materialise.core.range_normal_of`): one table
  lookup per element on a large input, where versions 2 to 4 take the float64 path for the
  elements whose range straddles a rounding boundary. Each such value is the one its range of
  positions starts with, so it is version 4's or close to it (most often the next value of
  the dtype; within a quarter of the quantile table's interval); every other value is built as
  in version 4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kfuzz.cases.materialise.base import InputGenerator
from kfuzz.cases.materialise.batch import SeedCopy
from kfuzz.cases.materialise.counter import CounterGenerator
from kfuzz.cases.materialise.sequential import SequentialGenerator
from kfuzz.errors import CaseError

VERSION_KEY = "materialise"
# The version `stamp` writes (every case drawn now).
VERSION = 5
# The version a version-2 case becomes when it takes coordinates, and their field.
COORDS_VERSION = 3
COORDS_KEY = "coords"


@dataclass(frozen=True)
class Version:
    """One materialisation version: `make(seed, device, case, copy)` gives the generator of a
    case of this version (building on `device` where the version can, with the other copies of
    its batch where the version can: `copy`, see `generator_for`); `coords`: whether its cases
    may carry the field "coords"."""

    number: int
    make: Callable[[int, str, Mapping[str, Any], SeedCopy | None], InputGenerator]
    coords: bool = False


def _counter(version: int, seed: int, device: str, case: Mapping[str, Any],
             copy: SeedCopy | None) -> InputGenerator:
    """The generator of a case of `version` (4 or later: coordinates allowed)."""
    return CounterGenerator(seed, device, coords_of(case), copy, version)


VERSIONS: dict[int, Version] = {v.number: v for v in (
    Version(1, lambda seed, device, case, copy: SequentialGenerator(seed)),
    Version(2, lambda seed, device, case, copy: CounterGenerator(seed, device, copy=copy)),
    Version(COORDS_VERSION, lambda seed, device, case, copy: CounterGenerator(
        seed, device, coords_of(case), copy), coords=True),
    *(Version(n, functools.partial(_counter, n), coords=True) for n in (4, 5)),
)}



def generator_for(case: Mapping[str, Any], device: str = "cpu",
                  copy: SeedCopy | None = None) -> InputGenerator:
    """The generator a case's inputs are built with, by its version (`VERSIONS`; 1 without
    the field): a `CounterGenerator` building on `device` for versions 2 to 5, the sequential
    CPU generator for version 1. `copy`: the case is this copy of a batch of cases that differ
    only in their seed (`kfuzz.cases.materialise.batch`): versions 2 to 5 build its small
    fields with the other copies' (the same bits; a copy whose seed is not the case's is
    ignored). Raises CaseError for a bad seed, coordinates in a case of a version without
    them, or an unknown version."""
    seed = _seed(case.get("seed", 0))
    number = case.get(VERSION_KEY, 1)
    try:
        version: Version | None = VERSIONS[number]
    except (KeyError, TypeError):
        version = None
    if COORDS_KEY in case and not (version and version.coords):
        taking = [str(v.number) for v in VERSIONS.values() if v.coords]
        raise CaseError(f"case field {COORDS_KEY} needs {VERSION_KEY}="
                        f"{', '.join(taking[:-1])} or {taking[-1]}, got {number!r}; set "
                        f"{VERSION_KEY} to {COORDS_VERSION} (version 2's values) or {VERSION}")
    if version is None:
        raise CaseError(
            f"case field {VERSION_KEY}={number!r} is unknown; this kfuzz builds versions 1 to "
            f"{max(VERSIONS)} (upgrade kfuzz to replay newer cases)"
        )
    if copy is not None and copy.seed != seed:
        copy = None
    return version.make(seed, device, case, copy)


def generator(seed: int) -> InputGenerator:
    """The version-1 (sequential) generator seeded with `seed` (any int; reduced modulo
    2**63). Raises CaseError for a seed that is not an int."""
    return SequentialGenerator(_seed(seed))


def _seed(seed: Any) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise CaseError(f"seed {seed!r} is not an integer")
    return seed


def stamp(case: Mapping[str, Any]) -> dict[str, Any]:
    """`case` marked to be built by the current (position-stable) materialisation."""
    return {**case, VERSION_KEY: VERSION}


def coords_version(case: Mapping[str, Any]) -> int:
    """The version `case` (of version 2 to 5) has once it carries coordinates: its own
    where its version takes them, else COORDS_VERSION (a version-2 case becomes version 3, the
    same values)."""
    number = case.get(VERSION_KEY)
    version = VERSIONS.get(number) if isinstance(number, int) else None
    return version.number if version is not None and version.coords else COORDS_VERSION


def coords_of(case: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """The case's coordinates ({input: {field: [per axis, a first coordinate or a list of
    coordinates]}}), checked: names are strings, coordinates non-negative integers. Raises
    CaseError naming the bad entry."""
    raw = case.get(COORDS_KEY, {})
    if not isinstance(raw, Mapping):
        raise CaseError(f"case field {COORDS_KEY} is {raw!r}, not a mapping of inputs to fields")
    out: dict[str, dict[str, list[Any]]] = {}
    for label, fields in raw.items():
        if not isinstance(label, str) or not isinstance(fields, Mapping):
            raise CaseError(f"case field {COORDS_KEY}: {label!r}: {fields!r} is not a mapping "
                            "of fields to coordinates")
        out[label] = {}
        for sub, axes in fields.items():
            if not (isinstance(sub, str) and isinstance(axes, list)
                    and all(_coordinate(a) or (isinstance(a, list) and all(map(_coordinate, a)))
                            for a in axes)):
                raise CaseError(f"case field {COORDS_KEY}: {label!r}, field {sub!r}: {axes!r} "
                                "is not a list of, per axis, an integer >= 0 or a list of them")
            out[label][sub] = list(axes)
    return out


def _coordinate(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
