"""What the generator of every materialisation version offers: a CPU `torch.Generator` (seeded
with the case's seed, so a target that draws with `torch.randn(..., generator=gen)` still runs)
that also builds an input's values, integers and sparse indices the way its version does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from kfuzz.errors import CaseError


class InputGenerator(torch.Generator):
    """The interface of a version's generator (`kfuzz.cases.materialise.versions`). `name`
    keys an input in versions that key inputs by name; the others ignore it. Shapes arrive as
    tuples of ints, already checked by the functions of `kfuzz.cases.materialise`. (Not an
    ABC: torch.Generator's metaclass does not combine with ABCMeta.)"""

    def __new__(cls, seed: int, *args: Any, **kwargs: Any) -> InputGenerator:
        # A CPU torch.Generator, whatever the subclass's own arguments; torch takes a device.
        self = super().__new__(cls, "cpu")  # type: ignore[call-arg]
        self.manual_seed(int(seed) % (2**63))
        return self

    def values(self, shape: tuple[int, ...], dtype: torch.dtype, dist: Mapping[str, Any],
               name: str | None) -> torch.Tensor:
        """A tensor of `shape` and `dtype` drawn from the distribution description `dist`.
        Raises CaseError for a malformed description."""
        raise NotImplementedError

    def integers(self, shape: tuple[int, ...], low: int, high: int,
                 name: str | None) -> torch.Tensor:
        """An int64 tensor of `shape`, uniform in [low, high) (high > low)."""
        raise NotImplementedError

    def sparse_indices(self, tokens: int, spec: Mapping[str, Any],
                       name: str | None) -> torch.Tensor:
        """A [tokens, k] int32 index tensor from a sparse index set description. Raises
        CaseError for a malformed description."""
        raise NotImplementedError


def index_spec(spec: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(n_rows, k, n_valid, window) of a sparse index set description (every version reads it
    alike). Raises CaseError when it
    is malformed or out of bounds."""
    try:
        n, k = int(spec["n_rows"]), int(spec["k"])
        n_valid, window = int(spec["n_valid"]), int(spec["window"])
    except (KeyError, TypeError, ValueError):
        raise CaseError(f"sparse index set {spec!r} needs ints n_rows, k, n_valid, window") from None
    if n < 1 or k < 1 or not 0 <= n_valid <= k or window < 0:
        raise CaseError(f"sparse index set {dict(spec)!r} is out of bounds")
    return n, k, n_valid, window
