"""Versions 2 to 5: copies of one case that differ only in their seed, their small fields built
together.

A search runs a drawn case with copies of it that differ only in their seed (a batch,
`kfuzz.search.batch`). A field's values depend on the seed only through its key, so the field
of every copy is one NumPy computation over (copy, element): `lowbias32(coordinates ^ draw key
of each copy)`, the same bits each copy's own field gives (`kfuzz.cases.materialise.fields`),
for a fixed per-call cost paid once instead of once per copy. That cost is most of what a small
field costs (a 1,024-element normal: about 40 µs on its own, a few µs per copy in a batch of
30), so only fields of up to FIELD_MAX elements are built together; a larger field is built by
each copy alone, as without a batch.

A copy's generator (`kfuzz.cases.materialise.counter.CounterGenerator`, given a `SeedCopy` of
its own seed) takes its inputs' keys from the batch and asks it for each field; the batch
computes every copy's draws the first time one copy asks for them and hands each copy its own
row, a new tensor. A copy whose calls differ from the others' (a target whose inputs depend on
drawn values) gets its fields computed for the batch when it first asks for them: the result is
the same, only the saving is lost.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from kfuzz.cases.materialise.core import draw_key, key_of, lowbias32
from kfuzz.cases.materialise.fields import Coords, Draws, HostField, host_normals

# Fields of at most this many elements are built for every copy at once ...
FIELD_MAX = 4096
# ... and at most this many elements over all copies (a float64 draw of them: 1 MiB).
ELEMENTS_MAX = 1 << 17


class SeedBatch:
    """The copies of one case with these `seeds`, in order (copy i has seeds[i]); their fields,
    built together as they are asked for, kept until the batch is dropped."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = tuple(int(s) for s in seeds)
        self._keys: dict[str, list[int]] = {}
        self._fields: dict[tuple[str, int, tuple[int, ...], str | None, int], _FieldBatch] = {}
        # What every copy would compute alike, kept by what runs the batch (the executor keeps
        # the output specs the target expects: the copies differ only in their seed).
        self.shared: dict[str, Any] = {}

    def copy(self, index: int) -> SeedCopy:
        """Copy number `index` of the batch."""
        return SeedCopy(self, index)

    def key(self, index: int, label: str) -> int:
        """The key of input `label` in copy `index` (as `CounterGenerator.stream` keys an
        input), computed for every copy the first time one asks."""
        keys = self._keys.get(label)
        if keys is None:
            keys = self._keys[label] = [key_of(s % (1 << 64), label) for s in self.seeds]
        return keys[index]

    def field(self, index: int, label: str, sub: int, shape: tuple[int, ...],
              coords: Coords, version: int = 2) -> Draws | None:
        """Field `sub` of input `label` (keyed by `key`) over `shape` at `coords`, for copy
        `index` (`version`: whose normals, see `kfuzz.cases.materialise.fields.Draws`); None when
        it is too large to be built together. Raises ValueError for coordinates that do not
        fit `shape`."""
        numel = math.prod(shape)
        if not 0 < numel <= FIELD_MAX or numel * len(self.seeds) > ELEMENTS_MAX:
            return None
        at = (label, sub, shape, None if coords is None else repr(coords), version)
        found = self._fields.get(at)
        if found is None:
            self.key(index, label)
            found = self._fields[at] = _FieldBatch([k ^ sub for k in self._keys[label]], shape,
                                                   coords, version)
        return _Copy(found, index)


@dataclass(frozen=True)
class SeedCopy:
    """One copy of a `SeedBatch`: what a copy's generator builds its fields with."""

    batch: SeedBatch
    index: int

    @property
    def seed(self) -> int:
        return self.batch.seeds[self.index]


def copies_of(cases: Sequence[Mapping[str, Any]],
              groups: Sequence[Hashable | None]) -> list[SeedCopy | None]:
    """For each case, its place in a batch of consecutive cases of one group (what runs them:
    the target, kernel and oracle; None for a case not built on the CPU) that differ only in
    their int seed (a search's batch, `kfuzz.search.batch.batch_seeds`); None for a case in no
    such batch. (Only versions 2 to 5 build with their batch, see `generator_for`.)"""
    copies: list[SeedCopy | None] = [None] * len(cases)
    start = 0
    while start < len(cases):
        stop = start + 1
        if _seeded(cases[start]) and groups[start] is not None:
            rest = _without_seed(cases[start])
            while (stop < len(cases) and groups[stop] == groups[start] and _seeded(cases[stop])
                   and _without_seed(cases[stop]) == rest):
                stop += 1
        if stop - start > 1:
            batch = SeedBatch([cases[i]["seed"] for i in range(start, stop)])
            for i in range(start, stop):
                copies[i] = batch.copy(i - start)
        start = stop
    return copies


def _seeded(case: Mapping[str, Any]) -> bool:
    seed = case.get("seed")
    return isinstance(seed, int) and not isinstance(seed, bool)


def _without_seed(case: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case.items() if k != "seed"}


class _FieldBatch(HostField):
    """A field over the same shape and coordinates for several keys (one per copy): each draw
    as a tensor of shape (copies, *shape), row i what `HostField(keys[i], ...)` draws. Each
    draw is computed once and kept."""

    def __init__(self, keys: Sequence[int], shape: tuple[int, ...], coords: Coords,
                 version: int = 2) -> None:
        super().__init__(keys[0], shape, coords, version)
        self.keys = list(keys)
        self.drawn: dict[tuple[Any, ...], torch.Tensor] = {}

    def _hashes(self, draw: int) -> np.ndarray:
        """uint32 hashes of draw `draw`, (copies, elements)."""
        column = np.array([draw_key(k, draw) for k in self.keys], dtype=np.uint32)[:, None]
        return lowbias32(self.coords.reshape(1, -1) ^ column, wrap=False)

    def _draw(self, draw: int, to: Any, dtype: type[np.generic]) -> torch.Tensor:
        out = np.asarray(to(self._hashes(draw)), dtype=dtype)
        return torch.from_numpy(out.reshape((len(self.keys), *self.shape)))

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        h = self._hashes(draw).reshape(-1)
        x = host_normals(lambda start, stop: h[start:stop], h.size, scale, dtype, self.version)
        return x.view((len(self.keys), *self.shape))

    def row(self, index: int, method: str, *args: Any) -> torch.Tensor:
        """Copy `index`'s `method(*args)` (a `Draws` method), as a new tensor."""
        at = (method, *args)
        found = self.drawn.get(at)
        if found is None:
            found = self.drawn[at] = getattr(self, method)(*args)
        return found[index].clone()


class _Copy:
    """One copy's field of a `_FieldBatch` (a `Draws`)."""

    __slots__ = ("batch", "device", "index", "key", "shape", "version")

    def __init__(self, batch: _FieldBatch, index: int) -> None:
        self.batch, self.index = batch, index
        self.key, self.shape, self.device = batch.keys[index], batch.shape, "cpu"
        self.version = batch.version

    def bits(self, draw: int) -> torch.Tensor:
        """See `Draws.bits`."""
        return self.batch.row(self.index, "bits", draw)

    def uniform(self, draw: int) -> torch.Tensor:
        """See `Draws.uniform`."""
        return self.batch.row(self.index, "uniform", draw)

    def below(self, draw: int, n: int) -> torch.Tensor:
        """See `Draws.below`."""
        return self.batch.row(self.index, "below", draw, n)

    def signs(self, draw: int) -> torch.Tensor:
        """See `Draws.signs`."""
        return self.batch.row(self.index, "signs", draw)

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """See `Draws.normal`."""
        return self.batch.row(self.index, "normal", draw, scale, dtype)
