"""The search for a smaller failure: cases below the size of a failing one that fail in one of
the same buckets, found by drawing rather than by reducing.

Reductions keep the values a failure was found with; a fault whose trigger depends on the
values (an outlier a BF16 sum absorbs, every score of a head below a threshold) then keeps the
long axis those values need, while a smaller case with other values fails too. Two searches
look for one: `WitnessSearch.redraw_smaller` draws values on a few structures below the size
(sizes and other fields that are not values), `WitnessSearch.draw_smaller` draws cases of the
whole space below the size.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import Phase, target
from hypothesis import strategies as st
from kfuzz.cases.materialise import COORDS_KEY, VERSION_KEY
from kfuzz.cases.strategies import MAX_SEED
from kfuzz.enums import Status
from kfuzz.execute.executor import Outcome
from kfuzz.shrink.passes import integer_fields, is_distribution, resize, size_cuts, sizes
from kfuzz.shrink.space import Case, CaseSpace, StopDraws, run_draws

# The search of the whole space gives up after this many draws in a row that are no smaller,
# or after running this many smaller cases (or SMALLER_PATIENCE of the shrink time).
SMALLER_DRAWS = 200
SMALLER_TRIES = 3000
# Each search for a smaller failure gives up after this share of the shrink time without one:
# a rare value (a rounding tie, an outlier a BF16 sum absorbs) can take thousands of draws to
# show on a smaller case, while a case already at its smallest waits this long for nothing.
SMALLER_PATIENCE = 0.5
# Draws of the values on structures below the size of a failing case before the redraws give
# up (`redraw_smaller`), and how many fresh draws of the case space (whose value settings they
# use, each once) are drawn at a time.
REDRAWS = 20_000
VALUE_POOL = 200
# Value settings of the fresh draws that came closest to failing, drawn again.
NEAR_MISSES = 8
# Structures of the case space just below the size of a failing case (`band`): how many, out
# of how many draws.
BAND = 32
BAND_DRAWS = 200
# Kinds of redraw, in the order ties go: (structures, values). Structures: "cut", the case's
# own with a size cut, or "band", cases of the space just below its size. Values: the
# structure's own ("own"; for a cut, those the case failed with), those of the case ("case"),
# a fresh draw's ("fresh"), or a near miss's ("near"; a fresh draw while there is none).
KINDS = (("cut", "own"), ("cut", "fresh"), ("cut", "near"), ("band", "own"), ("band", "case"),
         ("band", "fresh"), ("band", "near"))

# Draws on the structure of a reduced failure with a size the reduction could not halve cut and
# the others grown back toward the case it was reduced from (`redraw_wider`), before that
# search gives up, and the steps in which they grow.
WIDE_DRAWS = 64
WIDE_LEVELS = 4

Evaluate = Callable[[Case], Outcome | None]
Scores = Callable[[Outcome], Mapping[str, float]]


class _Found(BaseException):
    """Carries a smaller failing case out of a draw (through Hypothesis, which would shrink an
    Exception)."""

    def __init__(self, case: Case, outcome: Outcome) -> None:
        super().__init__("a smaller failure")
        self.case, self.outcome = case, outcome


@dataclass
class KindRecord:
    """What one kind of redraw did for a finding: its draws, and the halvings of the size its
    smaller failures gave (a cut from 512 to 128 elements: 2)."""

    draws: int = 0
    halvings: float = 0.0


class WitnessSearch:
    """The search for a smaller failure of one finding. `evaluate` runs a case (its Outcome,
    None when it cannot run); a case failing in a bucket of `wanted` is a smaller failure.
    `scores` (an outcome's feedback scores, per label) lets the draws of the whole space climb
    toward failures, as a search does. `record` (per kind of redraw) and `near_misses` (the
    value settings that came closest to failing, best first, with their scores) build up over
    the searches of the finding."""

    def __init__(
        self, space: CaseSpace, evaluate: Evaluate, wanted: Iterable[str], *,
        scores: Scores | None = None,
    ) -> None:
        self.space = space
        self.evaluate = evaluate
        self.wanted = set(wanted)
        self.scores = scores
        self.record: dict[tuple[str, str], KindRecord] = {}
        self.near_misses: list[tuple[tuple[float, float], Case]] = []

    def redraw_smaller(self, case: Case, deadline: float, *, seed: int) -> tuple[Case, Outcome] | None:
        """A failure below the size of `case`, from many draws of the values on a few
        structures: the case's own with each size cut by a quarter and by half, and up to BAND
        structures of the space between half the size and the size (`band`). Faults that need
        a rare value fail more often the more elements a case has, so the structures just
        below the size are where a smaller failure is most likely. Each draw has a new seed;
        its values come as its kind says (KINDS). The kinds share the draws, one at a time, in
        proportion to one plus the halvings their smaller failures gave (`record`). Pinned
        fields stay as pinned. Returns the failing case and its outcome; None when none fails
        within REDRAWS draws or before `time.perf_counter()` passes `deadline`."""
        size = self.space.size(case)
        groups = {"cut": self._cuts(case, size), "band": self.band(size, deadline, seed=seed)}
        own = {k: v for k, v in case.items() if is_distribution(v) and k not in self.space.pins}
        kinds = [kind for kind in KINDS if groups[kind[0]]]
        if not kinds:
            return None
        for kind in kinds:
            self.record.setdefault(kind, KindRecord())
        rng = random.Random(seed)
        turns = dict.fromkeys(groups, 0)  # structures used, per group
        near_turn = 0  # near misses used
        for _ in range(REDRAWS):
            if time.perf_counter() > deadline:
                return None
            kind = min(kinds, key=lambda k: self.record[k].draws / (1 + self.record[k].halvings))
            self.record[kind].draws += 1
            group, values = kind
            candidate = dict(groups[group][turns[group] % len(groups[group])])
            turns[group] += 1
            drawn = None
            if values == "case":
                candidate.update(own)
            elif values == "near" and self.near_misses:
                candidate.update(self.near_misses[near_turn % len(self.near_misses)][1])
                near_turn += 1
            elif values != "own" and (
                    drawn := self.space.fresh_values(deadline, batch=VALUE_POOL)) is not None:
                fixed = {k: v for k, v in candidate.items() if k != "seed" and not is_distribution(v)}
                candidate = {**drawn, **fixed}
            if "seed" not in self.space.pins:
                candidate["seed"] = rng.randrange(MAX_SEED + 1)
            try:
                got = self._witness(candidate)
            except _Found as found:
                self.record[kind].halvings += math.log2(size / max(1, self.space.size(found.case)))
                return found.case, found.outcome
            if drawn is not None and got is not None and got.status == Status.PASS:
                self.note_near_miss(got, {k: v for k, v in candidate.items()
                                          if is_distribution(v) and k not in self.space.pins})
        return None

    def redraw_wider(self, start: Case, case: Case, deadline: float, *,
                     seed: int) -> tuple[Case, Outcome] | None:
        """A failure on the structure of `case`, reduced from the failing case `start`, with
        one of the sizes the reduction could not halve (or, where it halved every one, of those
        above their smallest) cut as a reduction would cut it (to its smallest, or by half) and
        the sizes it did cut grown back toward `start`'s.

        A size whose every cut changes the values that count (the head dim under a dot
        product: every score) loses the failing elements at almost any cut, so the reduction
        leaves it about where it was, while a fault that needs a rare value (a weight on a
        rounding tie, one in 65,536) shows with other values on many elements where it almost
        never would on the few of `case`. So the other sizes grow in WIDE_LEVELS steps, all
        by one factor, from `case`'s to `start`'s; the draws go to the smallest structures
        first, a share to each, each with a new seed and `case`'s value settings, pinned
        fields as pinned. Returns the failing case and its outcome; None when every size is at
        its smallest, or none fails within about WIDE_DRAWS draws (one per structure with a pinned
        seed) or before `time.perf_counter()` passes `deadline`."""
        structures = self.wide_structures(start, case)
        if not structures:
            return None
        pinned_seed = "seed" in self.space.pins
        each = min(1, WIDE_DRAWS) if pinned_seed else -(-WIDE_DRAWS // len(structures))
        rng = random.Random(seed)
        for structure in structures:
            for _ in range(each):
                if time.perf_counter() > deadline:
                    return None
                candidate = dict(structure)
                if not pinned_seed:
                    candidate["seed"] = rng.randrange(MAX_SEED + 1)
                try:
                    self._witness(candidate)
                except _Found as found:
                    return found.case, found.outcome
        return None

    def wide_structures(self, start: Case, case: Case) -> list[Case]:
        """The structures `redraw_wider` draws on, smallest first: `case` (its coordinates
        dropped) with each size it holds at more than half of `start`'s (where it halved every
        one: each size above its smallest) cut to where `sizes` cuts it (to its smallest, then
        by half), and every other integer it holds at half of `start`'s or less (sizes, and
        those they bound: valid slots) grown by the factor of each of WIDE_LEVELS steps to
        `start`'s (capped there)."""
        target = self.space.target
        cuts = [(path, value, smaller) for _label, path, value, smaller in size_cuts(target, case)
                if isinstance(value_at(start, path), int) and smaller]
        stuck = [(path, new) for path, value, smaller in cuts
                 if 2 * value > value_at(start, path) for _cut, new in smaller[:2]]
        if not stuck:  # every size halved: each one left above its smallest
            stuck = [(path, new) for path, _value, smaller in cuts for _cut, new in smaller[:2]]
        grown = []
        for _label, path, value in integer_fields(case):
            at_start = value_at(start, path)
            if isinstance(at_start, int) and 0 < 2 * value <= at_start:
                grown.append((path, value, at_start))
        base = {k: v for k, v in case.items() if k != COORDS_KEY}
        if VERSION_KEY in start:
            base[VERSION_KEY] = start[VERSION_KEY]
        top = max((at_start / value for _path, value, at_start in grown), default=1.0)
        structures = []
        for level in range(1, WIDE_LEVELS + 1):
            factor = top ** (level / WIDE_LEVELS)
            for path, new in stuck:
                structure: Case | None = base
                for grown_path, value, at_start in grown:
                    if structure is not None:
                        structure = resize(target, structure, grown_path,
                                           min(at_start, round(value * factor)))
                if structure is not None:
                    structure = resize(target, structure, path, new)
                if (structure is not None and structure not in structures
                        and self.space.pinned(structure)):
                    structures.append(structure)
        return structures

    def _cuts(self, case: Case, size: int) -> list[Case]:
        """The structure of `case` with each size cut by a quarter, then by half (by the one
        cut there is where there is one: from 2 to 1, or from 128 to 64 in steps of 64),
        pinned fields as pinned."""
        cuts = []
        for _, smaller in sizes(self.space.target, case):
            # smaller_steps order: the floor, half, three quarters.
            for kept, _new in (smaller[1:3] or smaller[:1])[::-1]:
                if self.space.size(kept) < size and self.space.pinned(kept):
                    cuts.append(kept)
        return cuts

    def note_near_miss(self, outcome: Outcome, values: Case) -> None:
        """Keep `values` (value settings by field) among the NEAR_MISSES whose draws came
        closest to failing: the largest mismatch ratio, then the worst element's error as a
        fraction of what the comparator allows. Nothing to keep for no values."""
        if not values:
            return
        score = (outcome.worst_ratio(), outcome.worst_over_allowed())
        near = self.near_misses
        if len(near) < NEAR_MISSES or score > near[-1][0]:
            near.append((score, values))
            near.sort(key=lambda entry: entry[0], reverse=True)
            del near[NEAR_MISSES:]

    def band(self, size: int, deadline: float, *, seed: int) -> list[Case]:
        """Up to BAND fresh draws of the space of between half of `size` and `size` elements
        (out of at most BAND_DRAWS draws, before `deadline`), distinct and in order."""
        return self.space.draws(
            min(size - 1, self.space.max_numel), seed=seed, deadline=deadline, draws=BAND_DRAWS,
            most=BAND, keep=lambda case: size <= 2 * self.space.size(case) < 2 * size)

    def draw_smaller(self, size: int, deadline: float, *, seed: int) -> tuple[Case, Outcome] | None:
        """A failure of fewer than `size` elements drawn from the whole space (Hypothesis'
        generation, then its targeting on `scores`), running at most SMALLER_TRIES cases,
        until `deadline` or SMALLER_DRAWS draws in a row that are no smaller. Returns the
        failing case and its outcome; None if none turns up, or the space has no case that
        small."""
        too_big = tried = 0

        def test(case: Case) -> None:
            nonlocal too_big, tried
            if time.perf_counter() > deadline or tried >= SMALLER_TRIES:
                raise StopDraws()
            if self.space.size(case) >= size:
                too_big += 1
                if too_big >= SMALLER_DRAWS:
                    raise StopDraws()  # the space has (next to) no smaller case
                return
            too_big = 0
            tried += 1
            got = self._witness(case)
            if got is not None and self.scores is not None:
                # Near misses climb toward a failure, as in the search.
                for label, score in self.scores(got).items():
                    target(score, label=label)

        return self._first(lambda: self.space.cases(min(size - 1, self.space.max_numel)), test,
                           seed=seed, max_examples=10**6, phases=[Phase.generate, Phase.target])

    def _witness(self, case: Case) -> Outcome | None:
        """Run `case`; raise _Found when it fails in a bucket of `wanted`. Its outcome
        otherwise (None when the case cannot run)."""
        got = self.evaluate(case)
        if got is not None and got.buckets() & self.wanted:
            raise _Found(case, got)
        return got

    @staticmethod
    def _first(
        strategy: Callable[[], st.SearchStrategy[Case]], test: Callable[[Case], None], *,
        seed: int, max_examples: int, **options: Any,
    ) -> tuple[Case, Outcome] | None:
        """The first failure `test` finds (raising _Found) on `run_draws`' draws; None when
        the draws end without one."""
        try:
            run_draws(strategy, test, seed=seed, max_examples=max_examples, **options)
        except _Found as found:
            return found.case, found.outcome
        return None


def value_at(case: Case, path: tuple[Any, ...]) -> Any:
    """The value at `path` in `case` (("shape", 2), ("index", "k")); None where there is none."""
    value: Any = case
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value
