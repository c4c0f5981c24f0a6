"""The case space a shrink draws from: the cases of a search (a strategy per bound on the
elements), its pins, and the draws a shrink makes of it without running anything (the
simplest case, fresh draws, value settings each used once).

A `CaseSpace` lives as long as the search that built it: its simplest case and its pool of
fresh value settings are drawn once and serve every failure shrunk in that search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from kfuzz.targets.registry import Target

Case = dict[str, Any]
Strategy = Callable[[int], st.SearchStrategy[Case]]


class StopDraws(BaseException):
    """Raised by a test that `run_draws` runs to end its draws at once. A BaseException, so
    that Hypothesis does not take it for a failure and shrink it."""


def run_draws(
    strategy: Callable[[], st.SearchStrategy[Case]], test: Callable[[Case], None], *,
    seed: int, max_examples: int, **options: Any,
) -> None:
    """Run `test` on the cases of the strategy `strategy()` builds, with Hypothesis (seeded,
    quiet, no database, `options` added to its settings), until `test` raises StopDraws or
    `max_examples` are drawn. Returns quietly then, and also when `test` raises an Exception
    or the strategy cannot be built (no case within its bound); any other BaseException
    `test` raises (an interrupt, a case it was looking for) propagates."""
    try:
        run = hypothesis_seed(seed)(settings(
            max_examples=max_examples, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, **options,
        )(given(strategy())(test)))
        run()
    except (StopDraws, Exception):  # done, or no case of the target is that small
        return


class CaseSpace:
    """The cases a shrink may draw: `cases(max_numel)` gives the search's strategy for cases
    of at most `max_numel` elements (pins and exclusions applied), `max_numel` is the search's
    own bound, `pins` the fields every case keeps, `seed` where the space's own draws start.
    `fresh` holds the Hypothesis settings under which every example is an independent draw
    (a backend that draws anew), used for the space's fresh draws; none: Hypothesis' own
    generation."""

    def __init__(
        self, target: Target, cases: Strategy, *, max_numel: int,
        pins: Mapping[str, Any] | None = None, seed: int = 0,
        fresh: Mapping[str, Any] | None = None,
    ) -> None:
        self.target = target
        self.cases = cases
        self.max_numel = max_numel
        self.pins = dict(pins or {})
        self.seed = seed
        self.fresh_options = dict(fresh or {})
        self._floor: int | None = None
        # Fresh draws whose value settings are handed out by `fresh_values`, each once.
        self._pool: list[Case] = []
        self._drawn = 0

    def size(self, case: Case) -> int:
        """The size of `case` (`Target.case_size`: its input elements). Raises what the
        target raises for a case outside its space."""
        return self.target.case_size(case)

    def pinned(self, case: Case) -> bool:
        """Whether every pinned field of `case` holds its pinned value."""
        from kfuzz.cases.pins import holds

        return holds(self.pins, case)

    def floor(self) -> int:
        """The size of the simplest case of the space (pins and exclusions kept), which the
        strategies order to be its smallest: a failure that small needs no search for a
        smaller one. 0 when no case can be found. Drawn once, then remembered."""
        if self._floor is None:
            try:
                simplest = find(self.cases(self.max_numel), lambda case: True,
                                settings=settings(database=None, max_examples=100,
                                                  suppress_health_check=list(HealthCheck),
                                                  verbosity=Verbosity.quiet))
                self._floor = self.size(simplest)
            except Exception:  # no case at all (an unsatisfiable pin): nothing to skip
                self._floor = 0
        return self._floor

    def draws(
        self, max_numel: int, *, seed: int, deadline: float, draws: int, most: int,
        keep: Callable[[Case], bool] = lambda case: True,
    ) -> list[Case]:
        """Up to `most` of `draws` fresh draws of the cases within `max_numel` that `keep`
        accepts, in order, drawn before `time.perf_counter()` passes `deadline` (nothing is
        run). Empty when the space has no case within `max_numel`."""
        found: list[Case] = []
        drawn = 0

        def test(case: Case) -> None:
            nonlocal drawn
            if time.perf_counter() > deadline or len(found) >= most or drawn >= draws:
                raise StopDraws()
            drawn += 1
            if keep(case):
                found.append(case)

        run_draws(lambda: self.cases(max_numel), test, seed=seed, max_examples=draws,
                  phases=[Phase.generate], **self.fresh_options)
        return found

    def fresh_values(self, deadline: float, *, batch: int) -> Case | None:
        """A fresh draw of the space not handed out before, for its value settings (None
        when none can be drawn before `deadline`). Drawn `batch` at a time: one Hypothesis
        run per draw would cost more than running a small case."""
        if not self._pool:
            self._pool = self.draws(self.max_numel, seed=self.seed + self._drawn,
                                    deadline=deadline, draws=batch, most=batch)[::-1]
            self._drawn += len(self._pool)
        return self._pool.pop() if self._pool else None
