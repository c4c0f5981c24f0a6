"""Batches: one Hypothesis example carrying several cases.

One Hypothesis example costs milliseconds of drawing and bookkeeping beyond the work itself.
A batch spreads that over several kernel calls: the drawn case and copies of it with derived
seeds (`batch_seeds`), each an ordinary case that replays on its own. `BatchSizer` chooses how
many from the drawn case's size, and `evaluate_within` runs as many of a batch as fit before a
deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kfuzz.targets.registry import Target

if TYPE_CHECKING:
    from kfuzz.execute.executor import Outcome


def batch_seeds(size: int, case: dict[str, Any]) -> list[dict[str, Any]]:
    """`case` and size - 1 copies whose seeds are derived from its seed (the first copy keeps
    it, so shrinking the seed toward 0 still gives the friendliest case first)."""
    if size == 1 or "seed" not in case:
        return [case]
    seed = int(case["seed"])
    # A Weyl sequence spreads the derived seeds over the 32-bit range.
    return [{**case, "seed": (seed + i * 0x9E3779B9) % 2**32} for i in range(size)]


class BatchSizer:
    """Cases per Hypothesis example. A fixed size (`--batch N`) is used as it is; otherwise the
    size follows the drawn case, so that Hypothesis' share of the time stays near `share`:
    batch = (1 - share) / share * h / c, within [1, largest], where h is Hypothesis' cost per
    example and c = c0 + c1 * elements the cost of one case of that size. The costs are a model
    measured with `python -m bench.overhead` and `python -m bench.library_overhead` (h about
    3 ms with drawing and the target phase; c0 about 0.2-0.3 ms, c1 about 7-9 ns per input
    element on this CPU class, a case of a cheap kernel through the executor), not timed during
    the run: timing would make the batch, and so the cases run, differ between two runs with
    the same seed. The
    copies in a batch differ only in their seed, so a larger batch explores fewer shapes and
    regimes per case run and makes every shrink step dearer: `largest` bounds it."""

    HYPOTHESIS_S = 3e-3
    CASE_S = 3e-4
    ELEMENT_S = 1e-8

    def __init__(self, fixed: int | None = None, *, share: float = 0.1, largest: int = 32,
                 elements: Callable[[dict[str, Any]], int | None] | None = None) -> None:
        self.fixed = fixed
        self.share, self.largest = share, largest
        self.elements = elements or (lambda case: None)
        self.cases = 0
        self.examples = 0
        self.last = fixed or 1

    def size_for(self, case: dict[str, Any]) -> int:
        """The batch for an example drawn as `case` (1 when its size is unknown)."""
        if self.fixed:
            return self.fixed
        n = self.elements(case)
        if n is None:
            return 1
        cost = self.CASE_S + self.ELEMENT_S * n
        want = (1 - self.share) / self.share * self.HYPOTHESIS_S / cost
        return max(1, min(self.largest, math.ceil(want)))

    def observe(self, cases: int) -> None:
        """One example ran `cases` cases."""
        self.cases += cases
        self.examples += 1
        self.last = cases

    @property
    def mean(self) -> float:
        """Cases per example over the run so far."""
        return self.cases / self.examples if self.examples else float(self.last)


def case_elements(target: Target, case: dict[str, Any]) -> int | None:
    """Input elements of `case` when the target can tell without building it (its `size`, else
    the product of a "shape" field); None otherwise."""
    try:
        if target.size is not None:
            return int(target.size(case))
        shape = case.get("shape")
        if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
            return math.prod(shape)
    except Exception:  # a malformed case: the executor will say so
        return None
    return None


def evaluate_within(
    evaluate: Callable[[list[dict[str, Any]]], list[Outcome]], cases: list[dict[str, Any]],
    deadline: float,
) -> list[Outcome]:
    """`evaluate` a batch of cases, as many as fit before `deadline` (`time.perf_counter()`):
    with one, the first case, then as many more as the time per case so far says fit, so that
    a batch of large cases cannot overrun a budget. Returns the outcomes of the cases run, in
    order; raises what `evaluate` raises."""
    if len(cases) == 1 or deadline == math.inf:
        return evaluate(cases)
    outcomes: list[Outcome] = []
    chunk = 1
    while len(outcomes) < len(cases):
        began = time.perf_counter()
        part = cases[len(outcomes): len(outcomes) + chunk]
        outcomes += evaluate(part)
        now = time.perf_counter()
        if now >= deadline:
            break
        per_case = max((now - began) / len(part), 1e-6)
        chunk = max(1, int((deadline - now) / per_case))
    return outcomes
