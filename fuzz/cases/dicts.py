"""Case dicts whose pinned fields are not drawn: `case_dicts` is `st.fixed_dictionaries` for a
target's case strategy, except that a field the run holds at one value (`holding`, what a
`--pin` sets) becomes that value with no draw at all.

A pinned field is set after drawing in any case (`kfuzz.cases.pins.apply_pins`), so this
changes no case a campaign runs, only its cost: drawing a shape or a value description and
throwing it away is most of what a Hypothesis example costs (about 1.8 ms against 0.8 ms for
`ops.rmsnorm` with shape, dtype and x pinned, `python -m bench.overhead`). Without pins the
strategy is `st.fixed_dictionaries` itself, so unpinned campaigns draw exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st

_HELD: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "kfuzz_held_fields", default=None)


@contextlib.contextmanager
def holding(values: Mapping[str, Any]) -> Iterator[None]:
    """Within it, case strategies built by `case_dicts` hold the fields of `values` at their
    values instead of drawing them (a campaign builds its target's strategy inside it)."""
    token = _HELD.set(dict(values))
    try:
        yield
    finally:
        _HELD.reset(token)


def case_dicts(required: Mapping[str, st.SearchStrategy[Any]],
               optional: Mapping[str, st.SearchStrategy[Any]] | None = None,
               ) -> st.SearchStrategy[dict[str, Any]]:
    """`st.fixed_dictionaries(required, optional=optional)`, but built inside `holding`, each
    held field is its held value (present, if it was an optional one) and draws nothing."""
    optional = dict(optional or {})
    held = _HELD.get() or {}
    if held.keys().isdisjoint(required) and held.keys().isdisjoint(optional):
        return st.fixed_dictionaries(dict(required), optional=optional)
    fixed = {k: st.just(held[k]) if k in held else s for k, s in required.items()}
    fixed.update({k: st.just(held[k]) for k in optional if k in held})
    return st.fixed_dictionaries(fixed, optional={k: s for k, s in optional.items()
                                                  if k not in held})
