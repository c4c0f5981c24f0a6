"""Shrinking one failure, after Hypothesis' own pass: a session built from the failing case and
its outcome, a way to run a case and the case space, and nothing of the search that found it.

The session runs a table of named passes (`PASSES`), each with its counters:

- "reduce": the size-directed pass (`kfuzz.shrink.passes.shrink`) from a failing case, to a
  fixed point or its deadline;
- "widen": values drawn on the reduced case's structure with a size the reduction could not
  halve cut and the others grown back toward the case it started from
  (`WitnessSearch.redraw_wider`);
- "redraw": values drawn on structures below the size (`WitnessSearch.redraw_smaller`);
- "draw": cases of the whole space below the size (`WitnessSearch.draw_smaller`).

It reduces the smallest failure Hypothesis passed through (when that one is smaller than
Hypothesis' result) for at most FIRST_REDUCE of the time, then Hypothesis' result with what is
left of that time if the first reduction reached its fixed point, and keeps the smaller result.
Then it searches for a smaller failure, "widen" first (while each one it finds reduces to a
smaller case; where it finds none and the reduction was cut short, the reduction goes on from
where it stopped), "redraw" when that finds none and "draw" when neither does, and reduces
each one found, until a search finds none within SMALLER_PATIENCE of the shrink time, the case
is within 2x of the simplest case of the space (the smallest there is: a smaller failure
cannot be worth the wait), or the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import canonical_json
from kfuzz.shrink.passes import shrink
from kfuzz.shrink.space import Case, CaseSpace
from kfuzz.shrink.witnesses import SMALLER_PATIENCE, Evaluate, Scores, WitnessSearch

# The passes, in the order a session first runs them.
PASSES = ("reduce", "widen", "redraw", "draw")
# The share of the session's time the first reduction has before "widen" searches the
# structure it started from; it then goes on from where it stopped.
FIRST_REDUCE = 0.5


@dataclass
class ShrinkPass:
    """A named pass of a session and what it did: how often it ran (`calls`), how often it
    made progress (`successes`: a reduction kept, or a smaller failure found), the cases it
    ran and the seconds it took."""

    name: str
    function: Callable[..., Any]
    progress: Callable[[Any], bool]
    calls: int = 0
    successes: int = 0
    cases: int = 0
    seconds: float = 0.0

    def stats(self) -> dict[str, Any]:
        """The counters as a JSON-able dict (seconds rounded to the millisecond)."""
        return {"calls": self.calls, "successes": self.successes, "cases": self.cases,
                "seconds": round(self.seconds, 3)}


@dataclass
class SessionResult:
    """What a session ends with: the smallest failing case and its outcome, the reductions
    that led there (labels, in order), whether every reduction ran to its fixed point
    (`complete`), and each pass's counters by name (`ShrinkPass.stats`)."""

    case: Case
    outcome: Outcome
    reductions: list[str] = field(default_factory=list)
    complete: bool = True
    passes: dict[str, dict[str, Any]] = field(default_factory=dict)


class ShrinkSession:
    """Shrinks `case`, which failed with `outcome`, within `space`. `evaluate` runs a case (its
    Outcome; None when it cannot run). `passed_through`: the smallest failure Hypothesis
    passed through, reduced too when it is smaller than `case`. `known`: buckets already
    reported, so that a candidate must fail in one of its start's other buckets (in any of
    them when all are known). `deadline` (`time.perf_counter()`) ends the session;
    `shrink_seconds`, the finding's whole shrink time, sets how long a search for a smaller
    failure waits (SMALLER_PATIENCE of it). `seed` seeds those searches (one more per search);
    `scores` gives an outcome's feedback scores for the draws to climb."""

    def __init__(
        self, space: CaseSpace, evaluate: Evaluate, case: Case, outcome: Outcome, *,
        deadline: float, shrink_seconds: float, passed_through: tuple[Case, Outcome] | None = None,
        known: Iterable[str] = (), seed: int = 0, scores: Scores | None = None,
    ) -> None:
        self.space = space
        self._evaluate = evaluate
        self.case, self.outcome = case, outcome
        self.passed_through = passed_through
        self.known = frozenset(known)
        self.deadline = deadline
        self.shrink_seconds = shrink_seconds
        self.seed = seed
        self.scores = scores
        self.cases_run = 0
        self.passes = {p.name: p for p in (
            ShrinkPass("reduce", self._reduce, lambda got: bool(got.reductions)),
            ShrinkPass("widen", self._widen, lambda got: got is not None),
            ShrinkPass("redraw", self._redraw, lambda got: got is not None),
            ShrinkPass("draw", self._draw, lambda got: got is not None),
        )}

    def wanted(self, outcome: Outcome) -> set[str]:
        """The buckets a candidate must fail in to stand for `outcome`: its buckets not yet
        known (all of them when every one is)."""
        return outcome.buckets() - self.known or outcome.buckets()

    def run(self) -> SessionResult:
        """Shrink to the end (see the module docstring). Returns the smallest failing case
        reached, with the reductions applied and every pass's counters."""
        best, start = self._from_starts()
        best = self._smaller_failures(best, start)
        best.passes = {name: p.stats() for name, p in self.passes.items()}
        return best

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run the pass `name`, counting it."""
        shrink_pass = self.passes[name]
        cases, began = self.cases_run, time.perf_counter()
        got = shrink_pass.function(*args, **kwargs)
        shrink_pass.calls += 1
        shrink_pass.successes += shrink_pass.progress(got)
        shrink_pass.cases += self.cases_run - cases
        shrink_pass.seconds += time.perf_counter() - began
        return got

    def _run_case(self, case: Case) -> Outcome | None:
        self.cases_run += 1
        return self._evaluate(case)

    def _from_starts(self) -> tuple[SessionResult, Case]:
        """The size-directed pass, within FIRST_REDUCE of the time left, from the smallest
        failure Hypothesis passed through (when it is smaller), then from Hypothesis' result
        with what that leaves of the window, if the first reached its fixed point: the
        smaller result, complete when each start reduced reached its fixed point, and the
        case it was reduced from."""
        starts: list[tuple[Case, Outcome, str | None]] = [(self.case, self.outcome, None)]
        if self.passed_through is not None:
            smallest, outcome = self.passed_through
            size = self.space.size(smallest)
            if size < self.space.size(self.case):
                starts.insert(0, (smallest, outcome, "from the smallest failure Hypothesis "
                                                     f"passed through ({size} elements)"))
        results: list[SessionResult] = []
        ends = time.perf_counter() + (self.deadline - time.perf_counter()) * FIRST_REDUCE
        for case, outcome, label in starts:
            if results and not results[-1].complete:
                # The smaller start had the whole window and is not done: where each run
                # costs a second (a compilation), splitting the window would halve the
                # reduction of the case most likely to end smallest.
                break
            got = self._call("reduce", case, outcome, deadline=ends)
            if label is not None:
                got = replace(got, reductions=[label, *got.reductions])
            results.append(got)
        at = min(range(len(results)), key=lambda i: self.space.size(results[i].case))
        return replace(results[at], complete=all(r.complete for r in results)), starts[at][0]

    def _smaller_failures(self, best: SessionResult, start: Case) -> SessionResult:
        """Search for a smaller failure, then reduce it, until a search finds none, the case
        is within 2x of the simplest case of the space, or the deadline passes. `start`: the
        case `best` was reduced from (the failure found, after each one), toward which "widen"
        grows its structures while each failure it finds reduces to a smaller case."""
        witnesses = WitnessSearch(self.space, self._run_case, self.wanted(best.outcome),
                                  scores=self.scores)
        tries = 0
        widen = True
        while time.perf_counter() < self.deadline:
            size = self.space.size(best.case)
            if size <= 2 * self.space.floor():
                # Within 2x of the simplest case of the space, the smallest there is: a
                # smaller failure cannot be worth the wait (and a case at the floor has none).
                break
            seed = self.seed + tries
            tries += 1
            give_up = min(self.deadline, time.perf_counter() + self.shrink_seconds * SMALLER_PATIENCE)
            found = widened = None
            if widen:
                found = widened = self._call("widen", witnesses, start, best.case, give_up, seed)
            if found is None and not best.complete:
                # The first reduction had part of the time: it goes on from where it stopped.
                more = self._call("reduce", best.case, best.outcome, deadline=self.deadline)
                best = replace(best, case=more.case, outcome=more.outcome, complete=more.complete,
                               reductions=[*best.reductions, *more.reductions])
                widen = True
                continue
            found = (found or self._call("redraw", witnesses, best.case, give_up, seed)
                     or self._call("draw", witnesses, size, give_up, seed))
            if found is None:
                break
            # While the reduction in hand is unfinished, a failure found gets half of the time.
            until = self.deadline if best.complete else (time.perf_counter() + self.deadline) / 2
            reduced = self._call("reduce", *found, deadline=until)
            smaller = self.space.size(reduced.case) < size
            widen = widened is not None and smaller
            if smaller:
                start = found[0]
                label = (f"a failure drawn wider ({self.space.size(found[0])} elements)"
                         if widened is not None else
                         f"a smaller failure drawn ({self.space.size(found[0])} elements)")
                best = replace(best, case=reduced.case, outcome=reduced.outcome,
                               complete=reduced.complete,
                               reductions=[*best.reductions, label, *reduced.reductions])
        return best

    def _reduce(self, case: Case, outcome: Outcome, *, deadline: float) -> SessionResult:
        """The size-directed pass from `case` until `deadline`, keeping candidates that fail
        in a bucket `outcome` stands for; pinned fields stay as pinned."""
        wanted = self.wanted(outcome)
        outcomes: dict[str, Outcome] = {}

        def still_fails(candidate: Case) -> bool:
            if not self.space.pinned(candidate):
                return False
            got = self._run_case(candidate)
            if got is None:
                return False  # e.g. a candidate the kernel's output contract rejects
            outcomes[canonical_json(candidate)] = got
            return bool(got.buckets() & wanted)

        result = shrink(self.space.target, case, still_fails, deadline=deadline)
        final = outcomes.get(canonical_json(result.case), outcome)
        return SessionResult(result.case, final, result.steps, result.complete)

    @staticmethod
    def _widen(witnesses: WitnessSearch, start: Case, case: Case, deadline: float,
               seed: int) -> tuple[Case, Outcome] | None:
        return witnesses.redraw_wider(start, case, deadline, seed=seed)

    @staticmethod
    def _redraw(witnesses: WitnessSearch, case: Case, deadline: float,
                seed: int) -> tuple[Case, Outcome] | None:
        return witnesses.redraw_smaller(case, deadline, seed=seed)

    @staticmethod
    def _draw(witnesses: WitnessSearch, size: int, deadline: float,
              seed: int) -> tuple[Case, Outcome] | None:
        return witnesses.draw_smaller(size, deadline, seed=seed)
