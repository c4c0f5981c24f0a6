"""What a campaign draws: the target's case strategy with the run's pins applied and its
excluded regimes left out, every case stamped for the current materialisation; and the
target's seed cases (`Target.examples`), treated alike, which a campaign runs first.

One drawn case in `PLAIN_SHARE` is plain (`kfuzz.cases.strategies.plain_draws`): sizes uniform
over their ranges and no regime, as a hand-written random test samples the space, so that on a
fault that lives where kfuzz's regimes rarely go (mid-sized cases, say) the search needs at
most a small constant factor more cases than uniform sampling."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st
from kfuzz.cases.dicts import holding
from kfuzz.cases.materialise import stamp
from kfuzz.cases.pins import OneOf, apply_pins
from kfuzz.cases.strategies import plain_draws, regimes_in
from kfuzz.errors import KfuzzError
from kfuzz.targets.registry import Target


class Abort(BaseException):
    """Carries a KfuzzError (a configuration problem) out through Hypothesis, which would
    otherwise shrink it as a failure."""

    def __init__(self, error: KfuzzError) -> None:
        super().__init__(str(error))
        self.error = error


def pinned(pins: Mapping[str, Any], target: str, case: dict[str, Any]) -> dict[str, Any]:
    """`case` with the `--pin` fields held. Raises Abort for a field the case lacks."""
    unknown = sorted(set(pins) - set(case))
    if unknown:
        raise Abort(KfuzzError(
            f"--pin {unknown[0]}: cases of {target!r} have no field {unknown[0]!r}; "
            f"fields: {', '.join(sorted(case))}"
        ))
    return apply_pins(dict(pins), case)  # a OneOf pin (a kernel's dtypes) keeps or replaces


# One case in PLAIN_SHARE is drawn plainly (the flag is the case's first choice; it shrinks
# toward regular draws).
PLAIN_SHARE = 8


def with_plain_share(cases: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """`cases`, one draw in PLAIN_SHARE made under `plain_draws`."""
    @st.composite
    def draw(draw: st.DrawFn) -> dict[str, Any]:
        with plain_draws(draw(st.integers(0, PLAIN_SHARE - 1)) == PLAIN_SHARE - 1):
            return draw(cases)

    return draw()


def campaign_cases(target: Target, max_numel: int, pins: Mapping[str, Any],
                   exclude: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """The campaign's cases within `max_numel`: one in PLAIN_SHARE plain, pinned, without
    excluded regimes, stamped."""
    # Fields pinned to one value are held, not drawn, by strategies built with `case_dicts`.
    with holding({k: v for k, v in (pins or {}).items() if not isinstance(v, OneOf)}):
        cases = with_plain_share(target.cases(max_numel))
    if pins:
        cases = cases.map(functools.partial(pinned, dict(pins), target.name))
    if exclude:
        # Regimes a kernel does not promise to handle (e.g. near-overflow inputs).
        excluded = set(exclude)
        cases = cases.filter(lambda case: not regimes_in(case) & excluded)
    # Every drawn case is built by the current, position-stable materialisation.
    return cases.map(stamp)


def seed_cases(target: Target, pins: Mapping[str, Any],
               exclude: Sequence[str]) -> list[dict[str, Any]]:
    """The target's seed cases, pinned and stamped as drawn cases are; those using an
    excluded regime left out."""
    cases = [pinned(pins, target.name, dict(c)) if pins else dict(c) for c in target.examples]
    return [stamp(c) for c in cases if not regimes_in(c) & set(exclude)]
