"""Draws that depend on the seed alone. Hypothesis mixes constants it reads from "local" source
files (every module loaded from outside site-packages, which an editable install of kfuzz and
a user's plugin are) into about one draw in twenty; which files are loaded differs between a
driver and its worker processes or Ray tasks, and after any edit, so the same `--seed` would
draw other cases there. While `seed_only_draws` is entered, Hypothesis sees no local constants
(its global ones, the same everywhere, stay)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def seed_only_draws() -> Iterator[None]:
    """Hide Hypothesis' local constants while entered (a no-op on a Hypothesis without them).
    Re-entrant; the constants Hypothesis cached come back on exit."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a Hypothesis without the provider module
        yield
        return
    get = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    current = getattr(providers, "_local_constants", None)
    if get is None or cache is None or current is None or getattr(get, "kfuzz_empty", False):
        yield
        return
    empty = _empty_like(current)

    def no_local_constants() -> Any:
        return empty

    no_local_constants.kfuzz_empty = True  # type: ignore[attr-defined]
    # The per-choice-type pools Hypothesis built from them live in CONSTANTS_CACHE: a fresh,
    # empty cache of the same kind while entered, the old one back on exit.
    providers._get_local_constants = no_local_constants
    providers.CONSTANTS_CACHE = type(cache)(1024)
    try:
        yield
    finally:
        providers._get_local_constants = get
        providers.CONSTANTS_CACHE = cache


def _empty_like(constants: Any) -> Any:
    """A Constants of the same kind as `constants` with every set empty."""
    import copy

    empty = copy.copy(constants)
    for name in ("integers", "floats", "bytes", "strings"):
        value = getattr(constants, name, None)
        if value is not None:
            fresh = copy.copy(value)
            fresh.clear()
            setattr(empty, name, fresh)
    return empty
