"""The search: Hypothesis draws cases, the executor runs them, failures are shrunk.

A campaign runs in rounds. In each round Hypothesis generates cases and steers toward large
mismatch ratios (`hypothesis.target` per output); the first case that fails in a way not yet
seen this campaign (a new *bucket*: output x mismatch/nonfinite, or the exception type of an
error) fails the Hypothesis test, which Hypothesis then shrinks to a minimal case. The shrunk
case is reported, its bucket becomes known, and the next round goes on searching with what is
left of the budget, so one campaign can store several distinct findings. Failures in known
buckets do not stop the search. The worst case seen (highest mismatch ratio) is reported at the
end beside the shrunk ones.

Rounds are at most `ROUND_EXAMPLES` Hypothesis examples long, each with its own Hypothesis seed.
They alternate, the first one fresh: in a fresh round (`kfuzz.search.fresh`) every example is an
independent draw, which finds rare combinations of independent choices; a round of Hypothesis'
own generation mutates its examples and, from half of the round on, climbs the `feedback`
scores. No case runs twice: a drawn case Hypothesis has drawn before (a later round's small
examples, a pinned field's choices) runs with a fresh seed instead.

One Hypothesis example may carry a batch of cases: the drawn case and copies of it with
derived seeds (`batch_seeds`), so that Hypothesis' per-example overhead (about 0.5 ms on a CPU)
is spread over several kernel calls. By default the batch follows the drawn case's size
(`BatchSizer`: Hypothesis' share of the time near 10%). Each copy is an ordinary case: the one
that fails is the one stored, and it replays on its own.

After Hypothesis' own shrink, a failure goes to a shrink session (`kfuzz.shrink.session`),
which knows the case space (`kfuzz.shrink.space.CaseSpace`, one per campaign) and how to run a
case, and nothing else of the search. Configuration and results are `kfuzz.search.config`'s,
the scores the search climbs `kfuzz.search.feedback`'s.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from kfuzz.enums import Status
from kfuzz.errors import ContractViolation, KfuzzError
from kfuzz.execute.executor import Executor, InProcessExecutor, Job, Outcome, contract_outcome
from kfuzz.execute.findings import Finding, canonical_json
from kfuzz.search.batch import BatchSizer, batch_seeds, case_elements, evaluate_within
from kfuzz.search.config import CampaignConfig, CampaignResult
from kfuzz.search.constants import seed_only_draws
from kfuzz.search.coverage import Coverage
from kfuzz.search.drawn import Abort, campaign_cases, seed_cases
from kfuzz.search.feedback import feedback, raw_metrics
from kfuzz.search.fresh import fresh_settings
from kfuzz.search.interrupts import catch_interrupts, restore
from kfuzz.search.storage import HypothesisStorage
from kfuzz.search.warned import Warned
from kfuzz.settings import PROFILES
from kfuzz.shrink.session import ShrinkSession
from kfuzz.shrink.space import CaseSpace
from kfuzz.targets import registry

# Re-exported: where callers have always imported them from.
__all__ = ["ROUND_EXAMPLES", "CampaignConfig", "CampaignResult", "FindingFn", "HypothesisStorage",
           "ProgressFn", "feedback", "raw_metrics", "run_campaign"]


# Hypothesis examples per round (see the module docstring). Hypothesis starts climbing the
# `feedback` scores after half of a round's examples.
ROUND_EXAMPLES = 400
# Hypothesis' shrink pass ends when it finds no smaller failure for this share of the shrink
# time: it orders cases by their choices, not size, and where runs cost much (a compiling
# kernel) can spend its half on simpler, larger ones; the size-directed pass gets the rest.
HYPOTHESIS_PATIENCE = 0.15
# Seed step of a repeated drawn case (odd, unlike the batch copies' step).
_RESEED = 0x632BE5AB
# Drawn cases remembered to catch repeats; past this the memory starts afresh.
SEEN_LIMIT = 200_000


class _Failed(Exception):
    """Fails the Hypothesis test on a case in a new bucket, so that Hypothesis shrinks it."""


class _Stop(BaseException):
    """Ends a round at once (budget spent). A BaseException so Hypothesis does not shrink it."""


class _Stalled(_Stop):
    """Ends Hypothesis' shrink pass: no smaller failure for a while (HYPOTHESIS_PATIENCE)."""


ProgressFn = Callable[[dict[str, Any]], None]
FindingFn = Callable[[Finding], object]


def run_campaign(
    config: CampaignConfig,
    *,
    executor: Executor | None = None,
    on_finding: FindingFn | None = None,
    progress: ProgressFn | None = None,
) -> CampaignResult:
    """Fuzz one target as `config` says. Each finding is passed to `on_finding` as soon as
    it exists (a raw failure first, then its shrunk case, then the run's peak), so a caller
    that stores them loses nothing if the run dies. Raises KfuzzError for configuration
    problems (unknown names, a kernel breaking its output contract)."""
    with HypothesisStorage(), seed_only_draws():
        return _Campaign(config, executor or InProcessExecutor(), on_finding, progress).run()


class _Campaign:
    def __init__(
        self, config: CampaignConfig, executor: Executor, on_finding: FindingFn | None,
        progress: ProgressFn | None,
    ) -> None:
        self.config = config
        self.executor = executor
        self.on_finding = on_finding or (lambda finding: None)
        self.progress = progress
        self.profile = PROFILES[config.profile]
        self.target = registry.get(config.target)
        self.kernel = config.kernel or self.target.default_kernel
        self.oracle = config.oracle or self.target.default_oracle
        # Resolve now so that a bad name fails before any search.
        registry.resolve(self.target, "kernel", self.kernel)
        registry.resolve(self.target, "oracle", self.oracle)
        seed = config.seed if config.seed is not None else self.profile.fixed_seed
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.comparator = dict(config.comparator) if config.comparator else None
        self.max_examples = config.max_examples or (
            None if config.budget else self.profile.max_examples
        )
        self.shrink_seconds = config.shrink_seconds or self.profile.shrink_seconds
        self.batcher = BatchSizer(config.batch or self.profile.batch,
                                  elements=functools.partial(case_elements, self.target))
        if self.max_examples is not None:
            # A short run keeps at least ~50 Hypothesis examples: the copies in a batch differ
            # only in their seed, and the search needs distinct shapes and regimes to explore.
            self.batcher.largest = max(1, min(self.batcher.largest, self.max_examples // 50))
        self.max_numel = config.max_numel or self.target.max_numel
        cases = self._cases(self.max_numel)
        # What the shrinker draws from, for every finding of the campaign.
        self.space = CaseSpace(self.target, self._cases, max_numel=self.max_numel,
                               pins=config.pins, seed=self.seed, fresh=fresh_settings())
        self.strategy = cases.map(lambda case: batch_seeds(self.batcher.size_for(case), case))
        self.known: set[str] = set()
        self.coverage = Coverage(self.target.size, self.max_numel, self.target.specials)
        # Whether the kernel has met its output contract on some case (see _evaluate).
        self.contract_met = False
        self.result = CampaignResult(self.target.name, self.kernel, self.oracle, self.seed)
        self.peak: tuple[tuple[float, int], dict[str, Any], Outcome] | None = None
        # Per-round shrink state: the failure being shrunk (raw, as first seen) and the
        # smallest failing case Hypothesis has reached so far (candidate).
        self.shrinking = False
        self.candidate: tuple[dict[str, Any], Outcome] | None = None
        self.raw: Finding | None = None
        self.shrink_started = 0.0
        self.shrink_deadline = float("inf")
        self.shrink_steps = 0
        self.smaller_at = 0.0  # when Hypothesis' pass last found a smaller failing case
        self.smallest: tuple[int, dict[str, Any], Outcome] | None = None
        self.start = 0.0
        # The search's deadline (budget), and the campaign's (time_limit), which bounds
        # shrinking too.
        self.deadline = float("inf")
        self.limit = float("inf")
        self.last_progress = 0.0
        # Drawn cases run this campaign, by key: how often Hypothesis drew each (see _test).
        self.seen: dict[str, int] = {}
        self.round_calls = 0
        self.round_new = 0
        self.empty_rounds = 0
        # Set by the SIGINT handler (`kfuzz.search.interrupts`).
        self.interrupted = False

    def _cases(self, max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
        return campaign_cases(self.target, max_numel, self.config.pins, self.config.exclude)

    # -- the Hypothesis test --------------------------------------------------------------

    def _job(self, case: dict[str, Any]) -> Job:
        return Job(self.target.name, self.kernel, self.oracle, case, self.comparator,
                   self.config.device)

    def _test(self, cases: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        if self.shrinking:
            if now > self.shrink_deadline:
                raise _Stop()
            if now - self.smaller_at > self.shrink_seconds * HYPOTHESIS_PATIENCE:
                raise _Stalled()
        else:
            # A campaign that started runs at least one example: one that ran none is not a
            # pass (the run reports it as skipped).
            if self._examples_left() <= 0 or (now > self.deadline and self.result.examples):
                raise _Stop()
            self.round_calls += 1
            # No case runs twice. Hypothesis draws repeats (a later round's small examples, or
            # the choices of a pinned field, which the pin overwrites): a repeat runs with a
            # fresh seed instead, a new sample of the same configuration, as a batch copy is.
            # Keyed by the drawn case: its batch copies follow from it.
            key = canonical_json(cases[0])
            repeats = self.seen.get(key, 0)
            self.seen[key] = repeats + 1
            if repeats:
                if "seed" not in cases[0]:
                    return
                seed = (int(cases[0]["seed"]) + repeats * _RESEED) % 2**32
                cases = batch_seeds(len(cases), {**cases[0], "seed": seed})
                key = canonical_json(cases[0])
                if key in self.seen:
                    return
                self.seen[key] = 1
            cases = cases[: int(min(self._examples_left(), len(cases)))]
        try:
            outcomes = self._evaluate_in_time(cases)
        except KfuzzError as exc:
            raise Abort(exc) from None
        cases = cases[: len(outcomes)]
        if not self.shrinking:
            self.result.examples += len(cases)
            self.round_new += len(cases)
            if cases:  # a batch: copies of its first case with other seeds
                self.coverage.add(cases[0], times=len(cases))
        self.batcher.observe(len(cases))
        if len(self.seen) > SEEN_LIMIT:
            self.seen.clear()
        self._judge(cases, outcomes, now)

    def _note_interrupt(self) -> None:
        self.interrupted = True

    def _evaluate(self, cases: list[dict[str, Any]]) -> list[Outcome]:
        """Run `cases`. A kernel that breaks its output contract (shape, dtype, names) on every
        case so far is misconfigured: ContractViolation propagates (exit 2). One that has met
        it on earlier cases breaks it only on some: each such case becomes a "contract"
        outcome, a finding to shrink and store like any other."""
        if self.interrupted:
            raise KeyboardInterrupt
        self._report_progress(time.perf_counter())
        try:
            outcomes = self.executor.evaluate([self._job(c) for c in cases])
        except ContractViolation:
            if not self.contract_met:
                raise
            outcomes = [self._evaluate_one(c) for c in cases]
        if any(o.status in (Status.PASS, Status.FAIL) for o in outcomes):
            self.contract_met = True
        return outcomes

    def _evaluate_in_time(self, cases: list[dict[str, Any]]) -> list[Outcome]:
        """`_evaluate` a batch of cases, as many as fit before the deadline (the shrink's, or
        the search's): the outcomes of the cases run, in order (`evaluate_within`)."""
        deadline = self.shrink_deadline if self.shrinking else self.deadline
        return evaluate_within(self._evaluate, cases, deadline)

    def _evaluate_one(self, case: dict[str, Any]) -> Outcome:
        try:
            return self.executor.evaluate([self._job(case)])[0]
        except ContractViolation as exc:
            return contract_outcome(exc)

    def _judge(self, cases: list[dict[str, Any]], outcomes: list[Outcome], now: float) -> None:
        scores: dict[str, float] = {}
        new_failure = None
        for case, outcome in zip(cases, outcomes, strict=False):
            for label, score in feedback(outcome).items():
                scores[label] = max(scores.get(label, -math.inf), score)
            if not outcome.failed:
                continue
            # The peak is the worst precision failure: highest ratio, then most bad elements
            # (many cases tie at 100%). Crashes, hangs and errors have no ratio to rank.
            worst = (outcome.worst_ratio(),
                     sum(m["mismatches"] for m in outcome.outputs.values()))
            if outcome.status == "fail" and (self.peak is None or worst > self.peak[0]):
                self.peak = (worst, case, outcome)
            if new_failure is None and self._is_new(outcome):
                new_failure = (case, outcome)
        for label, score in scores.items():
            target(score, label=label)
        self._report_progress(now)
        if new_failure is not None:
            self._on_new_failure(*new_failure)
            raise _Failed(sorted(new_failure[1].buckets() - self.known))

    def _is_new(self, outcome: Outcome) -> bool:
        """Whether `outcome` fails in a bucket not yet known this campaign; while a failure is
        being shrunk, in one of the buckets it was first seen in (a shrink must not end in
        another bug: that one is searched for on its own)."""
        new = outcome.buckets() - self.known
        if self.shrinking and self.raw is not None:
            new &= self.raw.outcome.buckets()
        return bool(new)

    def _on_new_failure(self, case: dict[str, Any], outcome: Outcome) -> None:
        if not self.shrinking:
            # First sight of this failure: store it raw at once, then shrink.
            self.shrinking = True
            self.shrink_started = time.perf_counter()
            # Hypothesis' pass gets half of the shrink time at most (HYPOTHESIS_PATIENCE), the
            # size-directed pass the rest. (Giving Hypothesis less on large cases made them
            # shrink worse: its first steps switch off whole regimes, such as the production
            # size, in one move; those steps make the case smaller.)
            self.shrink_deadline = min(self.shrink_started + self.shrink_seconds / 2, self.limit)
            self.smaller_at = self.shrink_started
            self.raw = self._finding(case, outcome, "raw")
            self.on_finding(self.raw)
            self.shrink_steps = 0
            self.smallest = None
        self.shrink_steps += 1
        self.candidate = (case, outcome)
        # Hypothesis keeps the case with the simplest choices, which need not be the smallest:
        # it may trade a few thousand elements for a plainer distribution. Keep the smallest
        # failure in the raw case's bucket too; the size-directed pass starts from both.
        size = self.target.case_size(case)
        if (self.raw is not None and outcome.buckets() & (self.raw.outcome.buckets() - self.known)
                and (self.smallest is None or size < self.smallest[0])):
            self.smallest = (size, case, outcome)
            self.smaller_at = time.perf_counter()

    # -- rounds ---------------------------------------------------------------------------

    def _examples_left(self) -> float:
        if self.max_examples is None:
            return float("inf")
        return self.max_examples - self.result.examples

    def run(self) -> CampaignResult:
        self.start = time.perf_counter()
        if self.config.time_limit:
            self.limit = self.start + self.config.time_limit
        if self.config.ends_at:
            self.limit = min(self.limit, self.start + self.config.ends_at - time.time())
        self.deadline = self.limit
        if self.config.budget:
            self.deadline = min(self.deadline, self.start + self.config.budget)
        previous = catch_interrupts(self._note_interrupt)
        warned = Warned()
        try:
            with warned:
                while self._examples_left() > 0 and time.perf_counter() < self.deadline:
                    if not self._round():
                        break
                else:  # the examples or the time ran out between rounds (after a shrink)
                    self.result.stopped = "examples" if self._examples_left() <= 0 else "budget"
        except KeyboardInterrupt:
            self.result.stopped = "interrupted"
            self._store_candidate(complete=False, reduce=False)
        finally:
            restore(previous)
            self.result.warnings = warned.kinds()
        self._store_peak()
        self.result.seconds = time.perf_counter() - self.start
        self.result.batch, self.result.batch_mean = self.batcher.last, self.batcher.mean
        self.result.coverage = self.coverage.to_dict()
        return self.result

    def _round(self) -> bool:
        """One Hypothesis run of at most ROUND_EXAMPLES examples; True when the search goes on
        (a new finding was stored, or the round used its quota with budget left)."""
        self.result.rounds += 1
        self.shrinking = False
        self.candidate = None
        self.round_calls = self.round_new = 0
        # A short remainder still gets a round of some length: its first examples are the
        # simplest ones, which earlier rounds have usually run already.
        quota = int(min(ROUND_EXAMPLES, max(self._examples_left(), ROUND_EXAMPLES // 4)))
        hyp_settings = settings(
            max_examples=quota,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
            print_blob=False,
            phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
            # Odd rounds (the first one included) are fresh draws, even ones Hypothesis' own.
            **(fresh_settings() if self.result.rounds % 2 else {}),
        )
        test = given(self.strategy)(self._test)
        if self.result.rounds == 1:  # the target's seed cases first, in their order
            seeds = seed_cases(self.target, self.config.pins, self.config.exclude)
            for case in reversed(seeds):  # decorators apply inside out
                test = example(batch_seeds(1, case))(test)
        test = hypothesis_seed(self.seed + self.result.rounds - 1)(hyp_settings(test))
        try:
            test()
        except _Stalled:  # Hypothesis' pass ended by its own rule, not cut short
            self._store_candidate(complete=True, hypothesis="stalled")
            return True
        except _Stop:
            if self.shrinking:
                self._store_candidate(complete=False)
                return True
            self.result.stopped = "budget" if time.perf_counter() >= self.deadline else "examples"
            return False
        except Abort as abort:
            raise abort.error from None
        except Exception:
            # _Failed after shrinking, or Hypothesis' own complaint (e.g. a flaky kernel that
            # failed once and passed on replay): either way the candidate is what we have.
            if self.candidate is None:
                raise
            self._store_candidate(complete=True)
            return True
        if self._examples_left() <= 0:
            self.result.stopped = "examples"
            return False
        self.empty_rounds = 0 if self.round_new else self.empty_rounds + 1
        if self.round_calls < quota or self.empty_rounds >= 3:
            # Hypothesis ran out of distinct cases, or rounds yield no case not run before.
            self.result.stopped = "exhausted"
            return False
        return True

    def _store_candidate(self, *, complete: bool, reduce: bool = True,
                         hypothesis: str | None = None) -> None:
        """Store the failure being shrunk as a shrunk finding: with `reduce`, after the shrink
        session (`kfuzz.shrink.session`) has run on Hypothesis' result with the rest of the
        finding's shrink time; `complete` says whether Hypothesis' own pass ran to its end,
        `hypothesis` how: "complete", "stalled" (`_Stalled`) or "cut" (default: `complete`)."""
        if self.candidate is None:
            return
        hypothesis = hypothesis or ("complete" if complete else "cut")
        case, outcome = self.candidate
        hypothesis_size = self.target.case_size(case)
        steps: list[str] = []
        passes: dict[str, Any] = {}
        if reduce:
            session = ShrinkSession(
                self.space, self._run_case, case, outcome,
                deadline=min(self.shrink_started + self.shrink_seconds, self.limit),
                shrink_seconds=self.shrink_seconds,
                passed_through=self.smallest[1:] if self.smallest is not None else None,
                known=self.known, seed=self.seed, scores=feedback)
            shrunk = session.run()
            case, outcome, steps, passes = (shrunk.case, shrunk.outcome, shrunk.reductions,
                                            shrunk.passes)
            complete = complete and shrunk.complete
        finding = self._finding(case, outcome, "shrunk")
        finding.shrink = {
            "seconds": round(time.perf_counter() - self.shrink_started, 3),
            "steps": self.shrink_steps + len(steps),
            "complete": complete,
            "hypothesis": hypothesis,
            "size_before": self.target.case_size(self.raw.case) if self.raw else None,
            "size_hypothesis": hypothesis_size,
            "size_after": self.target.case_size(case),
            "reductions": steps,
            # Shrinking drives the error down to just over the threshold: keep what the raw
            # case showed too.
            "raw_metrics": raw_metrics(self.raw.outcome) if self.raw else None,
            # Per pass of the shrink session: runs, runs that made progress, cases, seconds.
            "passes": passes,
        }
        finding.replaces = self.raw.fingerprint if self.raw else None
        if self.target.attribute is not None and outcome.status == "fail":  # a chain's stages
            finding.attribution = self.target.attribute(self._job(case))
        self.known |= outcome.buckets()
        self.result.findings.append(finding)
        self.on_finding(finding)
        self.candidate = None

    def _run_case(self, case: dict[str, Any]) -> Outcome | None:
        """Run one case for the shrinker: its outcome, None when it cannot run (a KfuzzError,
        such as a candidate the kernel's output contract rejects)."""
        try:
            return self._evaluate([case])[0]
        except KfuzzError:
            return None

    def _store_peak(self) -> None:
        if self.peak is None:
            return
        _, case, outcome = self.peak
        self.result.peak_ratio = self.peak[0][0]
        finding = self._finding(case, outcome, "peak")
        if any(f.fingerprint == finding.fingerprint for f in self.result.findings):
            return
        self.result.findings.append(finding)
        self.on_finding(finding)

    def _finding(self, case: dict[str, Any], outcome: Outcome, kind: str) -> Finding:
        return Finding(self.target.name, self.kernel, self.oracle, case, outcome, kind,
                       self.comparator, self.config.device)

    def _report_progress(self, now: float) -> None:
        if self.progress is None or now - self.last_progress < 0.5:
            return
        self.last_progress = now
        self.progress({
            "target": self.target.name,
            "examples": self.result.examples,
            "max_examples": self.max_examples,
            "findings": len(self.result.findings),
            "elapsed": now - self.start,
            "budget": self.config.budget,
            "shrinking": self.shrinking,
        })
