"""Version 1: the generator of every case stored before version 2 (cases without a
"materialise" field). A `torch.Generator` seeded with the case's seed and drawn in call order by
the frozen `kfuzz.cases.materialise.v1`; this module only fits it to `InputGenerator`. Its
draws depend on the order and sizes of the calls, not on input names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from kfuzz.cases.materialise import v1
from kfuzz.cases.materialise.base import InputGenerator
from kfuzz.cases.materialise.distributions import MODIFIERS
from kfuzz.errors import CaseError

# Every modifier but "nonfinite" (which version 1 applies) came with version 2.
_NEWER = frozenset(MODIFIERS) - {"nonfinite"}


class SequentialGenerator(InputGenerator):
    """The version-1 generator for `seed` (any int; reduced modulo 2**63). `source`: a plain
    `torch.Generator` to draw from instead of this one (see `drawing_from`)."""

    def __init__(self, seed: int, source: torch.Generator | None = None) -> None:
        # Not a reference to itself when drawing from itself: that would be a cycle.
        self.source = source

    @classmethod
    def drawing_from(cls, gen: torch.Generator) -> SequentialGenerator:
        """A version-1 generator whose draws come from (and advance) `gen`: what a plain
        `torch.Generator` a caller made has always built."""
        return cls(0, gen)

    def _gen(self) -> torch.Generator:
        return self if self.source is None else self.source

    def values(self, shape: tuple[int, ...], dtype: torch.dtype, dist: Mapping[str, Any],
               name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.values`; raises CaseError for a modifier version 1 lacks."""
        extra = sorted(_NEWER & set(dist))
        if extra:
            raise CaseError(f"distribution modifiers {extra} need a version-2 case")
        return v1.values(self._gen(), shape, dtype, dist)

    def integers(self, shape: tuple[int, ...], low: int, high: int,
                 name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.integers`: `torch.randint`."""
        return torch.randint(low, high, shape, generator=self._gen())

    def sparse_indices(self, tokens: int, spec: Mapping[str, Any],
                       name: str | None = None) -> torch.Tensor:
        """See `InputGenerator.sparse_indices`."""
        return v1.sparse_indices(self._gen(), tokens, spec)
