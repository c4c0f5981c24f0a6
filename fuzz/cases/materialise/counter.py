"""Versions 2 to 5: the counter-hash generator. Random bits are a hash of (seed, input,
coordinates, draw) (`kfuzz.cases.materialise.core`), so an element's value does not depend on
the tensor's other dimensions: drop a row and every other row keeps its values, bit for bit on
every device."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kfuzz.cases.materialise.base import InputGenerator
from kfuzz.cases.materialise.batch import SeedCopy
from kfuzz.cases.materialise.core import key_of
from kfuzz.cases.materialise.distributions import VALUES_FIELD, Fields, build_values
from kfuzz.cases.materialise.fields import Draws, make_field
from kfuzz.cases.materialise.indices import build_sparse_indices
from kfuzz.errors import CaseError

# Per input label, per field of that input (its sub-key as a decimal string), per axis.
CaseCoords = Mapping[str, Mapping[str, Sequence[Any]]]


class CounterGenerator(InputGenerator):
    """The generator a case of version 2 to 5 is built with. Each input has a label (its name,
    or "#n" for the n-th input without one) and a key hashed from it and the seed; its values,
    integers and index sets come from its fields (`field`). `device`: where the tensors it
    builds live (`target_device`).

    `coords` (versions 3 to 5): per input label, per field of that input (its sub-key relative to
    the input's key, as a decimal string: "0" for the values themselves), the coordinates of
    each axis (see `kfuzz.cases.materialise.fields.Field`). A field with coordinates holds a
    selection of the elements of the field without: the shrinker drops heads or cache rows of
    a case this way, first, last or in the middle, and keeps every other element.
    `fields`, when set to a list, records (label, sub-key, shape) of every field made.
    `copy`: the copy of a batch of cases that differ only in their seed this case is
    (`kfuzz.cases.materialise.batch`; on the CPU; its seed must be `seed`): its keys and small
    fields are built with the other copies', the same bits. `version`: the case's version, whose
    normals its fields draw (`kfuzz.cases.materialise.fields.Draws.normal`)."""

    def __init__(self, seed: int, device: str = "cpu", coords: CaseCoords | None = None,
                 copy: SeedCopy | None = None, version: int = 2) -> None:
        # Not `seed`: torch.Generator has a method of that name.
        self.case_seed = int(seed)
        self.target_device = device
        self.calls = 0
        self.coords = coords or {}
        self.fields: list[tuple[str, str, tuple[int, ...]]] | None = None
        self.copy = copy if device == "cpu" else None
        self.version = version

    def stream(self, name: str | None = None) -> tuple[str, int]:
        """The label and key of the next input: from `name` when given, else from the call
        count."""
        self.calls += 1
        label = name if name is not None else f"#{self.calls}"
        if self.copy is not None:
            return label, self.copy.batch.key(self.copy.index, label)
        return label, key_of(self.case_seed % (1 << 64), label)

    def field(self, label: str, key: int, sub: int, shape: Sequence[int]) -> Draws:
        """The field `sub` (a sub-key) of the input with `label` and `key`, over `shape`, on
        this generator's device, at the coordinates the case gives it. Raises CaseError for
        coordinates that do not fit `shape`."""
        if self.fields is None and not self.coords and self.copy is None:  # nothing to look up
            return make_field(key ^ sub, shape, self.target_device, version=self.version)
        shape = tuple(int(s) for s in shape)
        if self.fields is not None:
            self.fields.append((label, str(sub), shape))
        coords = self.coords.get(label, {}).get(str(sub))
        try:
            if self.copy is not None:
                found = self.copy.batch.field(self.copy.index, label, sub, shape, coords,
                                              self.version)
                if found is not None:
                    return found
            return make_field(key ^ sub, shape, self.target_device, coords, self.version)
        except ValueError as exc:
            raise CaseError(f"case field coords, input {label!r}, field {sub}: {exc}; "
                            "give one int or list per axis, lists as long as the axis") from None

    def fields_of(self, name: str | None = None) -> Fields:
        """The fields of the next input (see `stream`), by sub-key and shape."""
        return functools.partial(self.field, *self.stream(name))

    def values(self, shape: tuple[int, ...], dtype: torch.dtype, dist: Mapping[str, Any],
               name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.values`: each element a function of the seed, `name` (or the
        call order) and its coordinates."""
        return build_values(self.fields_of(name), shape, dtype, dist)

    def integers(self, shape: tuple[int, ...], low: int, high: int,
                 name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.integers`: position-stable."""
        return low + self.field(*self.stream(name), VALUES_FIELD, shape).below(0, high - low)

    def sparse_indices(self, tokens: int, spec: Mapping[str, Any],
                       name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.sparse_indices`: position-stable per token, slot and row."""
        return build_sparse_indices(self.fields_of(name), self.target_device, tokens, spec)
