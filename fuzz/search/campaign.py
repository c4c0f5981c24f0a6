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
"""

from __future__ import annotations

import functools
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, find, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from kfuzz.cases.materialise import stamp
from kfuzz.cases.strategies import EXCLUDABLE, MAX_SEED, regimes_in
from kfuzz.enums import Status
from kfuzz.errors import ContractViolation, KfuzzError, OptionError
from kfuzz.execute.executor import Executor, InProcessExecutor, Job, Outcome, contract_outcome
from kfuzz.execute.findings import Finding, canonical_json
from kfuzz.search.batch import BatchSizer, batch_seeds, case_elements
from kfuzz.search.fresh import fresh_settings
from kfuzz.settings import PROFILES
from kfuzz.shrink.passes import is_distribution, shrink, sizes
from kfuzz.targets import registry


@dataclass
class CampaignConfig:
    """What to fuzz and for how long. kernel/oracle None: the target's defaults.
    comparator: Comparator fields that override each output's default (e.g. {"mode": "exact",
    "max_ratio": 0.005}); None keeps the defaults.
    max_examples and budget (seconds) may both be set; the first one spent ends the search.
    seed None: a random seed, reported in the result so that the run can be repeated.
    pins: case fields held at fixed values (e.g. {"shape": [4, 64, 512]}); the search and the
    shrinker vary only the other fields.
    exclude: value regimes left out of the search (names of `kfuzz.cases.strategies.EXCLUDABLE`, e.g.
    "overflow"): regimes a kernel does not promise to handle.
    time_limit (seconds): a bound on the campaign's whole wall time, search and shrinking
    together (`budget` bounds the search alone); a shrink still running at the limit stores
    the smallest failing case it has. `kfuzz run --budget` sets both to the target's share.
    ends_at: a wall-clock time (`time.time()`) by which the campaign ends, whatever else it
    has left: the end of the whole run, the same in every worker process."""

    target: str
    kernel: str | None = None
    oracle: str | None = None
    comparator: Mapping[str, Any] | None = None
    profile: str = "dev"
    max_examples: int | None = None
    budget: float | None = None
    seed: int | None = None
    device: str = "cpu"
    batch: int | None = None
    max_numel: int | None = None
    shrink_seconds: float | None = None
    pins: Mapping[str, Any] | None = None
    exclude: Sequence[str] = ()
    time_limit: float | None = None
    ends_at: float | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise KfuzzError(
                f"unknown profile {self.profile!r}; choose from {', '.join(PROFILES)}"
            )
        for name in ("max_examples", "batch", "max_numel"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, value, " must be at least 1")
        unknown = sorted(set(self.exclude) - set(EXCLUDABLE))
        if unknown:
            raise OptionError("exclude", unknown[0],
                              f" is not a value regime; choose from {', '.join(EXCLUDABLE)}")
        for name in ("budget", "time_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise OptionError(name, value, " must be a positive number of seconds")


@dataclass
class CampaignResult:
    """What a campaign did. stopped: "examples", "budget", "exhausted" (Hypothesis ran out
    of distinct cases) or "interrupted"."""

    target: str
    kernel: str
    oracle: str
    seed: int
    examples: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    peak_ratio: float = 0.0
    rounds: int = 0
    stopped: str = "examples"
    # Cases per Hypothesis example: the last example's, and the mean over the run.
    batch: int = 1
    batch_mean: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (findings as fingerprints)."""
        return {
            "target": self.target, "kernel": self.kernel, "oracle": self.oracle,
            "seed": self.seed, "examples": self.examples, "seconds": round(self.seconds, 3),
            "examples_per_second": round(self.examples / self.seconds, 1) if self.seconds else None,
            "peak_ratio": self.peak_ratio, "rounds": self.rounds, "stopped": self.stopped,
            "batch": self.batch, "batch_mean": round(self.batch_mean, 2),
            "findings": [f.fingerprint for f in self.findings],
        }


def _pin(pins: dict[str, Any], target: str, case: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(pins) - set(case))
    if unknown:
        raise _Abort(KfuzzError(
            f"--pin {unknown[0]}: cases of {target!r} have no field {unknown[0]!r}; "
            f"fields: {', '.join(sorted(case))}"
        ))
    return {**case, **pins}


def raw_metrics(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """Per output, the headline errors of an outcome (what a raw failure showed)."""
    keys = ("mismatches", "mismatch_ratio", "max_abs", "max_rel", "worst_over_allowed", "max_ulp")
    return {name: {k: m.get(k) for k in keys if k in m} for name, m in outcome.outputs.items()}


def feedback(outcome: Outcome) -> dict[str, float]:
    """What `hypothesis.target` climbs, per output: the mismatch ratio; the worst element's
    error as a fraction of what the comparator allows (log2, so that near misses climb toward
    failures); the largest ULP distance (log2); and what the target reports about the case
    (`Target.features`). A crash, hang or error scores 1 on its status."""
    if outcome.status not in ("pass", "fail"):
        return {outcome.status: 1.0}
    out: dict[str, float] = {f"feature:{k}": v for k, v in outcome.features.items()
                             if math.isfinite(v)}
    for name, m in outcome.outputs.items():
        out[name] = float(m["mismatch_ratio"])
        for key, label in (("worst_over_allowed", "headroom"), ("max_ulp", "ulp")):
            value = getattr(m, key, None)
            if isinstance(value, (int, float)) and value > 0:
                # Capped: an infinite error (a NaN or Inf mismatch) is as far as it goes.
                out[f"{name}:{label}"] = min(math.log2(value), 1024.0)
    return out


# Hypothesis examples per round (see the module docstring). Hypothesis starts climbing the
# `feedback` scores after half of a round's examples.
ROUND_EXAMPLES = 400
# The search for a smaller failure gives up after this many draws in a row that are no smaller,
# or after running this many smaller cases (or SMALLER_PATIENCE of the shrink time).
SMALLER_DRAWS = 200
SMALLER_TRIES = 3000
# Each search for a smaller failure gives up after this share of the shrink time without one:
# a rare value (a rounding tie, an outlier a BF16 sum absorbs) can take thousands of draws to
# show on a smaller case, while a case already at its smallest waits this long for nothing.
SMALLER_PATIENCE = 0.5
# Draws of the values on structures below the size of a failing case before the search for
# a smaller failure gives up (`_redraw_smaller`), and how many fresh draws of the case space
# (whose value settings it uses, each once) are drawn at a time.
REDRAWS = 20_000
VALUE_POOL = 200
# Value settings of the fresh draws that came closest to failing, drawn again (`_redraw_smaller`).
NEAR_MISSES = 8
# Structures of the case space just below the size of a failing case (`_band`): how many, out
# of how many draws.
BAND = 32
BAND_DRAWS = 200
# Seed step of a repeated drawn case (odd, unlike the batch copies' step).
_RESEED = 0x632BE5AB
# Drawn cases remembered to catch repeats; past this the memory starts afresh.
SEEN_LIMIT = 200_000


class _Failed(Exception):
    """Fails the Hypothesis test on a case in a new bucket, so that Hypothesis shrinks it."""


class _Stop(BaseException):
    """Ends a round at once (budget spent). A BaseException so Hypothesis does not shrink it."""


class _Witness(BaseException):
    """Carries a smaller failing case out of the search for one (see _draw_smaller)."""

    def __init__(self, case: dict[str, Any], outcome: Outcome) -> None:
        super().__init__("a smaller failure")
        self.case, self.outcome = case, outcome


class _Abort(BaseException):
    """Carries a KfuzzError (a configuration problem) out through Hypothesis."""

    def __init__(self, error: KfuzzError) -> None:
        super().__init__(str(error))
        self.error = error


ProgressFn = Callable[[dict[str, Any]], None]
FindingFn = Callable[[Finding], object]


class HypothesisStorage:
    """While it is entered, Hypothesis keeps its files in kfuzz's cache directory
    ($XDG_CACHE_HOME/kfuzz/hypothesis, else ~/.cache/kfuzz/hypothesis), not in `.hypothesis/`
    of the working directory: kfuzz keeps no example database (database=None), but Hypothesis
    caches the constants it reads from local source files there while it generates
    (`hypothesis.internal.constants_ast`). A place the user chose (HYPOTHESIS_STORAGE_DIRECTORY,
    or `set_hypothesis_home_dir`) is left alone, and the previous one comes back on exit, for
    the user's own Hypothesis tests in the same process. Re-entrant."""

    def __enter__(self) -> None:
        import os
        from pathlib import Path

        from hypothesis import configuration

        self.previous: Any = None
        self.changed = False
        setter = getattr(configuration, "set_hypothesis_home_dir", None)
        if setter is None or os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
            return
        self.previous = getattr(configuration, "__hypothesis_home_directory", None)
        default = getattr(configuration, "__hypothesis_home_directory_default", None)
        if self.previous is not None and self.previous != default:
            return  # chosen by the user, or by an enclosing HypothesisStorage
        try:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        except RuntimeError:  # no home directory
            import tempfile

            cache = Path(tempfile.gettempdir()) / f"kfuzz-{os.getuid()}"
        setter(cache / "kfuzz" / "hypothesis")
        self.changed = True

    def __exit__(self, *exc: object) -> None:
        if self.changed:
            from hypothesis import configuration

            configuration.set_hypothesis_home_dir(self.previous)


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
    with HypothesisStorage():
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
        self.strategy = cases.map(lambda case: batch_seeds(self.batcher.size_for(case), case))
        self.known: set[str] = set()
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
        self.smallest: tuple[int, dict[str, Any], Outcome] | None = None
        self.start = 0.0
        # The search's deadline (budget), and the campaign's (time_limit), which bounds
        # shrinking too.
        self.deadline = float("inf")
        self.limit = float("inf")
        # The size of the simplest case of the space (see _floor).
        self.floor: int | None = None
        self.last_progress = 0.0
        # Drawn cases run this campaign, by key: how often Hypothesis drew each (see _test).
        self.seen: dict[str, int] = {}
        self.round_calls = 0
        self.round_new = 0
        self.empty_rounds = 0
        # Set by the SIGINT handler (see _catch_interrupts).
        self.interrupted = False
        # Draws and halvings of the size of each kind of draw in _redraw_smaller (per finding).
        self.redraw_record: dict[tuple[int, str], list[float]] = {}
        # The value settings of fresh draws that came closest to failing (per finding).
        self.near_misses: list[tuple[tuple[float, float], dict[str, Any]]] = []
        # Fresh draws whose value settings _redraw_smaller uses, each once.
        self.value_pool: list[dict[str, Any]] = []
        self.values_drawn = 0

    def _cases(self, max_numel: int) -> st.SearchStrategy[dict[str, Any]]:
        """The campaign's cases within `max_numel`: pinned, without excluded regimes, stamped."""
        cases = self.target.cases(max_numel)
        if self.config.pins:
            cases = cases.map(functools.partial(_pin, dict(self.config.pins), self.target.name))
        if self.config.exclude:
            # Regimes a kernel does not promise to handle (e.g. near-overflow inputs).
            excluded = set(self.config.exclude)
            cases = cases.filter(lambda case: not regimes_in(case) & excluded)
        # Every drawn case is built by the current, position-stable materialisation.
        return cases.map(stamp)

    # -- the Hypothesis test --------------------------------------------------------------

    def _job(self, case: dict[str, Any]) -> Job:
        return Job(self.target.name, self.kernel, self.oracle, case, self.comparator,
                   self.config.device)

    def _test(self, cases: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        if self.shrinking:
            if now > self.shrink_deadline:
                raise _Stop()
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
            raise _Abort(exc) from None
        cases = cases[: len(outcomes)]
        if not self.shrinking:
            self.result.examples += len(cases)
            self.round_new += len(cases)
        self.batcher.observe(len(cases))
        if len(self.seen) > SEEN_LIMIT:
            self.seen.clear()
        self._judge(cases, outcomes, now)

    def _catch_interrupts(self) -> dict[int, Any]:
        """Note Ctrl-C (and SIGTERM, where the caller made it raise KeyboardInterrupt as the
        CLI does) as well as raising KeyboardInterrupt, so that an interrupt raised where
        Python ignores exceptions (a garbage-collector callback, such as Hypothesis' own)
        still stops the campaign at its next case. Returns the handlers to restore (none off
        the main thread, where handlers cannot be set)."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def interrupted(signum: int, frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is signal.default_int_handler:  # else the caller's own way stands
                previous[signum] = handler
                signal.signal(signum, interrupted)
        return previous

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
        the search's): with one, the first case, then as many more as the time per case so
        far says fit, so that a batch of large cases cannot overrun a budget. The outcomes of
        the cases run, in order."""
        deadline = self.shrink_deadline if self.shrinking else self.deadline
        if len(cases) == 1 or deadline == math.inf:
            return self._evaluate(cases)
        outcomes: list[Outcome] = []
        chunk = 1
        while len(outcomes) < len(cases):
            began = time.perf_counter()
            part = cases[len(outcomes): len(outcomes) + chunk]
            outcomes += self._evaluate(part)
            now = time.perf_counter()
            if now >= deadline:
                break
            per_case = max((now - began) / len(part), 1e-6)
            chunk = max(1, int((deadline - now) / per_case))
        return outcomes

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
            # Hypothesis' pass gets half of the shrink time, the size-directed pass the rest.
            # (Giving Hypothesis less on large cases made them shrink worse: its first steps
            # switch off whole regimes, such as the production size, in one move.)
            self.shrink_deadline = min(self.shrink_started + self.shrink_seconds / 2, self.limit)
            self.raw = self._finding(case, outcome, "raw")
            self.on_finding(self.raw)
            self.shrink_steps = 0
            self.smallest = None
            # Draws and halvings of the size of each kind of draw in _redraw_smaller, and the
            # near misses among its fresh draws.
            self.redraw_record = {}
            self.near_misses = []
        self.shrink_steps += 1
        self.candidate = (case, outcome)
        # Hypothesis keeps the case with the simplest choices, which need not be the smallest:
        # it may trade a few thousand elements for a plainer distribution. Keep the smallest
        # failure in the raw case's bucket too; the size-directed pass starts from both.
        size = self.target.case_size(case)
        if (self.raw is not None and outcome.buckets() & (self.raw.outcome.buckets() - self.known)
                and (self.smallest is None or size < self.smallest[0])):
            self.smallest = (size, case, outcome)

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
        previous = self._catch_interrupts()
        try:
            while self._examples_left() > 0 and time.perf_counter() < self.deadline:
                if not self._round():
                    break
            else:  # the examples or the time ran out between rounds (after a shrink)
                self.result.stopped = "examples" if self._examples_left() <= 0 else "budget"
        except KeyboardInterrupt:
            self.result.stopped = "interrupted"
            self._store_candidate(complete=False, reduce=False)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self._store_peak()
        self.result.seconds = time.perf_counter() - self.start
        self.result.batch, self.result.batch_mean = self.batcher.last, self.batcher.mean
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
        test = hypothesis_seed(self.seed + self.result.rounds - 1)(
            hyp_settings(given(self.strategy)(self._test))
        )
        try:
            test()
        except _Stop:
            if self.shrinking:
                self._store_candidate(complete=False)
                return True
            self.result.stopped = "budget" if time.perf_counter() >= self.deadline else "examples"
            return False
        except _Abort as abort:
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

    def _store_candidate(self, *, complete: bool, reduce: bool = True) -> None:
        if self.candidate is None:
            return
        case, outcome = self.candidate
        hypothesis_size = self.target.case_size(case)
        steps: list[str] = []
        if reduce:
            end = min(self.shrink_started + self.shrink_seconds, self.limit)
            starts = [(case, outcome)]
            if self.smallest is not None and self.smallest[0] < hypothesis_size:
                starts.insert(0, self.smallest[1:])
            results = []
            for i, (start_case, start_outcome) in enumerate(starts):
                # The first start gets half of the time left, the last one what remains.
                share = end if i == len(starts) - 1 else (time.perf_counter() + end) / 2
                got = self._reduce(start_case, start_outcome, deadline=share)
                if start_case is not case:
                    label = ("from the smallest failure Hypothesis passed through "
                             f"({self.target.case_size(start_case)} elements)")
                    got = (got[0], got[1], [label, *got[2]], got[3])
                results.append(got)
            case, outcome, steps, reduced = min(
                results, key=lambda r: self.target.case_size(r[0]))
            complete = complete and all(r[3] for r in results)
            case, outcome, steps = self._smaller_witnesses(case, outcome, steps, end)
        finding = self._finding(case, outcome, "shrunk")
        finding.shrink = {
            "seconds": round(time.perf_counter() - self.shrink_started, 3),
            "steps": self.shrink_steps + len(steps),
            "complete": complete,
            "size_before": self.target.case_size(self.raw.case) if self.raw else None,
            "size_hypothesis": hypothesis_size,
            "size_after": self.target.case_size(case),
            "reductions": steps,
            # Shrinking drives the error down to just over the threshold: keep what the raw
            # case showed too.
            "raw_metrics": raw_metrics(self.raw.outcome) if self.raw else None,
        }
        finding.replaces = self.raw.fingerprint if self.raw else None
        self.known |= outcome.buckets()
        self.result.findings.append(finding)
        self.on_finding(finding)
        self.candidate = None

    def _wanted(self, outcome: Outcome) -> set[str]:
        """The buckets a shrink candidate must fail in: the finding's new ones (all of its
        buckets when every one is already known)."""
        return outcome.buckets() - self.known or outcome.buckets()

    def _smaller_witnesses(
        self, case: dict[str, Any], outcome: Outcome, steps: list[str], end: float
    ) -> tuple[dict[str, Any], Outcome, list[str]]:
        """Search for a smaller failure, then reduce it, until a search finds none within
        SMALLER_PATIENCE of the shrink time or the finding's shrink time is spent. Reductions
        keep the values a failure was found with; a fault whose trigger depends on the values
        (an outlier absorbing a BF16 sum, every score of a head below a threshold) then keeps
        the long axis those values need, while a smaller case with other values fails too.
        Each search first draws values on structures below its size (`_redraw_smaller`: cuts
        of the case in hand, and cases of the space just below its size), then draws cases of
        the whole space below its size (`_draw_smaller`)."""
        wanted = self._wanted(outcome)
        tries = 0
        while time.perf_counter() < end:
            size = self.target.case_size(case)
            if size <= 2 * self._floor():
                # Within 2x of the simplest case of the space, the smallest there is: a
                # smaller failure cannot be worth the wait (and a case at the floor has none).
                break
            seed = self.seed + tries
            tries += 1
            give_up = min(end, time.perf_counter() + self.shrink_seconds * SMALLER_PATIENCE)
            found = (self._redraw_smaller(case, wanted, give_up, seed=seed)
                     or self._draw_smaller(size, wanted, give_up, seed=seed))
            if found is None:
                break
            reduced = self._reduce(*found, deadline=end)
            if self.target.case_size(reduced[0]) < size:
                label = f"a smaller failure drawn ({self.target.case_size(found[0])} elements)"
                case, outcome, steps = reduced[0], reduced[1], [*steps, label, *reduced[2]]
        return case, outcome, steps

    def _floor(self) -> int:
        """The size of the simplest case of the campaign's space (pins and exclusions kept),
        which the strategies order to be its smallest: a failure that small needs no search
        for a smaller one. 0 when it cannot be found."""
        if self.floor is None:
            try:
                simplest = find(self._cases(self.max_numel), lambda case: True,
                                settings=settings(database=None, max_examples=100,
                                                  suppress_health_check=list(HealthCheck),
                                                  verbosity=Verbosity.quiet))
                self.floor = self.target.case_size(simplest)
            except Exception:  # no case at all (an unsatisfiable pin): nothing to skip
                self.floor = 0
        return self.floor

    def _redraw_smaller(
        self, case: dict[str, Any], wanted: set[str], deadline: float, *, seed: int
    ) -> tuple[dict[str, Any], Outcome] | None:
        """A failure in a bucket of `wanted` below the size of `case`, from many draws of the
        values on a few structures (sizes and other fields that are not values):

        - the case's own structure with each size cut by a quarter and by half, and
        - up to BAND structures of the case space between half the size and the size.

        Faults that need a rare value (a rounding tie, an outlier a sum absorbs) fail more
        often the more elements a case has, so the structures just below the size are where
        a smaller failure is most likely. A draw's values are the structure's own (for a cut,
        those of `case`, which it failed with), those of `case` on a structure of the space,
        those of a fresh draw of the case space, or those of a fresh draw that came close to
        failing (`_note_near_miss`); each draw has a new seed. The seven kinds of draw share
        the draws, one at a time, in proportion to one plus the halvings of the size their
        smaller failures have given for this finding. Pinned fields stay as pinned. None when
        none fails within REDRAWS draws or before `deadline`."""
        size = self.target.case_size(case)
        pinned = dict(self.config.pins or {})
        cuts = []
        for _, smaller in sizes(self.target, case):
            # smaller_steps order: the floor, half, three quarters: 3/4 first, then half (the
            # floor where it is the only cut, from 2 to 1 or from 128 to 64 in steps of 64).
            for kept, _new in (smaller[1:3] or smaller[:1])[::-1]:
                if (self.target.case_size(kept) < size
                        and all(kept.get(k) == v for k, v in pinned.items())):
                    cuts.append(kept)
        groups = (cuts, self._band(size, deadline, seed=seed))
        own = {k: v for k, v in case.items() if is_distribution(v) and k not in pinned}
        # Kinds of draw: (group, values) with values the structure's own ("own"; for a cut,
        # those of `case`), those of `case` ("case") or fresh ones ("fresh"). A kind whose
        # smaller failures have shrunk this finding gets more of the draws: a share of one
        # plus the halvings of the size they gave (a cut from 512 to 128 elements: 2).
        # "near": the value settings of the fresh draws that came closest to failing, each
        # again with other seeds on other structures (near misses climb toward failures); a
        # fresh draw while there is none.
        kinds = [(group, values) for group, values in (
            (0, "own"), (0, "fresh"), (0, "near"), (1, "own"), (1, "case"), (1, "fresh"),
            (1, "near")) if groups[group]]
        if not kinds:
            return None
        record = self.redraw_record
        for kind in kinds:
            record.setdefault(kind, [0, 0.0])
        near = self.near_misses
        rng = random.Random(seed)
        turns = [0, 0]  # structures used, per group
        near_turn = 0  # near misses used
        for _ in range(REDRAWS):
            if time.perf_counter() > deadline:
                return None
            kind = min(kinds, key=lambda k: record[k][0] / (1 + record[k][1]))
            record[kind][0] += 1
            group, values = kind
            shapes = groups[group]
            candidate = dict(shapes[turns[group] % len(shapes)])
            turns[group] += 1
            drawn = None
            if values == "case":
                candidate.update(own)
            elif values == "near" and near:
                candidate.update(near[near_turn % len(near)][1])
                near_turn += 1
            elif values != "own" and (drawn := self._fresh_values(deadline)) is not None:
                fixed = {k: v for k, v in candidate.items()
                         if k != "seed" and not is_distribution(v)}
                candidate = {**drawn, **fixed}
            if "seed" not in pinned:
                candidate["seed"] = rng.randrange(MAX_SEED + 1)
            try:
                got = self._witness(candidate, wanted)
            except _Witness as found:
                record[kind][1] += math.log2(size / max(1, self.target.case_size(found.case)))
                return found.case, found.outcome
            if drawn is not None and got is not None and got.status == Status.PASS:
                self._note_near_miss(got, {k: v for k, v in candidate.items()
                                           if is_distribution(v) and k not in pinned})
        return None

    def _note_near_miss(self, outcome: Outcome, values: dict[str, Any]) -> None:
        """Keep `values` among the NEAR_MISSES value settings of this finding whose draws came
        closest to failing: the largest mismatch ratio, then the worst element's error as a
        fraction of what the comparator allows."""
        if not values:
            return
        score = (outcome.worst_ratio(), outcome.worst_over_allowed())
        near = self.near_misses
        if len(near) < NEAR_MISSES or score > near[-1][0]:
            near.append((score, values))
            near.sort(key=lambda entry: entry[0], reverse=True)
            del near[NEAR_MISSES:]

    def _band(self, size: int, deadline: float, *, seed: int) -> list[dict[str, Any]]:
        """Up to BAND fresh draws of the campaign's case space of between half of `size` and
        `size` elements (out of at most BAND_DRAWS draws, before `deadline`)."""
        return self._fresh_draws(
            min(size - 1, self.max_numel), seed=seed, deadline=deadline, draws=BAND_DRAWS,
            most=BAND, keep=lambda case: size <= 2 * self.target.case_size(case) < 2 * size)

    def _fresh_values(self, deadline: float) -> dict[str, Any] | None:
        """A fresh draw of the campaign's case space not used before, whose value settings
        `_redraw_smaller` combines with a structure (None when none can be drawn before
        `deadline`). Drawn VALUE_POOL at a time: one Hypothesis run per draw would cost more
        than running a small case."""
        if not self.value_pool:
            self.value_pool = self._fresh_draws(
                self.max_numel, seed=self.seed + self.values_drawn, deadline=deadline,
                draws=VALUE_POOL, most=VALUE_POOL)[::-1]
            self.values_drawn += len(self.value_pool)
        return self.value_pool.pop() if self.value_pool else None

    def _fresh_draws(
        self, max_numel: int, *, seed: int, deadline: float, draws: int, most: int,
        keep: Callable[[dict[str, Any]], bool] = lambda case: True,
    ) -> list[dict[str, Any]]:
        """Up to `most` of `draws` fresh draws of the campaign's cases within `max_numel` that
        `keep` accepts, in order, drawn before `deadline` (nothing is run)."""
        found: list[dict[str, Any]] = []
        drawn = 0

        def test(case: dict[str, Any]) -> None:
            nonlocal drawn
            if time.perf_counter() > deadline or len(found) >= most or drawn >= draws:
                raise _Stop()
            drawn += 1
            if keep(case):
                found.append(case)

        self._first_witness(lambda: self._cases(max_numel), test, seed=seed,
                            max_examples=draws, phases=[Phase.generate], **fresh_settings())
        return found

    def _draw_smaller(
        self, size: int, wanted: set[str], deadline: float, *, seed: int
    ) -> tuple[dict[str, Any], Outcome] | None:
        """A case of fewer than `size` elements failing in a bucket of `wanted`, drawn from the
        campaign's case space (shrinking toward small cases first) until `deadline`; None if
        none turns up, or the space has no case that small."""

        too_big = tried = 0

        def test(case: dict[str, Any]) -> None:
            nonlocal too_big, tried
            if time.perf_counter() > deadline or tried >= SMALLER_TRIES:
                raise _Stop()
            if self.target.case_size(case) >= size:
                too_big += 1
                if too_big >= SMALLER_DRAWS:
                    raise _Stop()  # the space has (next to) no smaller case
                return
            too_big = 0
            tried += 1
            got = self._witness(case, wanted)
            if got is not None:
                # Near misses climb toward a failure, as in the search.
                for label, score in feedback(got).items():
                    target(score, label=label)

        return self._first_witness(lambda: self._cases(min(size - 1, self.max_numel)), test,
                                   seed=seed, max_examples=10**6,
                                   phases=[Phase.generate, Phase.target])

    def _witness(self, case: dict[str, Any], wanted: set[str]) -> Outcome | None:
        """Run `case`; raise _Witness when it fails in a bucket of `wanted`. Its outcome
        otherwise (None when the case cannot run)."""
        try:
            got = self._evaluate([case])[0]
        except KfuzzError:
            return None
        if got.buckets() & wanted:
            raise _Witness(case, got)
        return got

    @staticmethod
    def _first_witness(
        cases: Callable[[], st.SearchStrategy[dict[str, Any]]],
        test: Callable[[dict[str, Any]], None], *, seed: int, max_examples: int, **options: Any,
    ) -> tuple[dict[str, Any], Outcome] | None:
        """Run `test` over the strategy `cases()` builds with Hypothesis (seeded, quiet,
        `options` added to its settings) until it raises _Witness: that case and outcome;
        None otherwise, or when the strategy cannot be built (no case that small)."""
        try:
            run = hypothesis_seed(seed)(settings(
                max_examples=max_examples, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, **options,
            )(given(cases())(test)))
            run()
        except _Witness as found:
            return found.case, found.outcome
        except (_Stop, Exception):  # time is up, or no case of the target is that small
            return None
        return None

    def _reduce(
        self, case: dict[str, Any], outcome: Outcome, *, deadline: float
    ) -> tuple[dict[str, Any], Outcome, list[str], bool]:
        """The size-directed pass (kfuzz.shrink) from `case` (Hypothesis' result, or the
        smallest failure it passed through) until `deadline`; pinned fields stay as pinned."""
        wanted = self._wanted(outcome)
        pinned = dict(self.config.pins or {})
        outcomes: dict[str, Outcome] = {}

        def still_fails(candidate: dict[str, Any]) -> bool:
            if any(candidate.get(k) != v for k, v in pinned.items()):
                return False
            try:
                got = self._evaluate([candidate])[0]
            except KfuzzError:
                return False  # e.g. a candidate the kernel's output contract rejects
            outcomes[canonical_json(candidate)] = got
            return bool(got.buckets() & wanted)

        result = shrink(self.target, case, still_fails, deadline=deadline)
        final = outcomes.get(canonical_json(result.case), outcome)
        return result.case, final, result.steps, result.complete

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
