"""One campaign of a run and the runner interface: `run_one` runs a campaign (watching for the
closest call, skipping a kernel that cannot run here or a target left no time), `RunContext`
is what a runner needs besides the campaigns, and `run_sequential` is the runner of this
process (`kfuzz.run.parallel` and `kfuzz.run.ray` are the others, with the same interface)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from kfuzz.errors import KernelUnavailable, KfuzzError
from kfuzz.execute.executor import Executor, Job, Outcome
from kfuzz.execute.findings import Finding
from kfuzz.run.executors import ExecutorSpec
from kfuzz.search.campaign import CampaignConfig, CampaignResult, ProgressFn, run_campaign
from kfuzz.search.warned import Warned


@dataclass
class Closest:
    """The case that came nearest to failing, or failed worst: the highest `worst_over_allowed`
    (greatest error as a multiple of what its element was allowed) over every output of every
    case run, or, in metrics without that field, the highest mismatch ratio. `score` is that
    number; `metrics` the output's full metrics."""

    target: str
    case: dict[str, Any]
    output: str
    status: str
    score: float
    mismatch_ratio: float
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the metrics' headline numbers, not the worst points)."""
        keys = ("worst_over_allowed", "mismatch_ratio", "max_abs", "max_rel", "max_ulp",
                "rel_l2", "worst_index", "comparator")
        return {"target": self.target, "case": self.case, "output": self.output,
                "status": self.status, "score": _json_number(self.score),
                "metrics": {k: self.metrics[k] for k in keys if k in self.metrics}}


def _json_number(value: float) -> float | str:
    return value if value == value and abs(value) != float("inf") else str(value)


def _number(value: Any) -> float:
    try:
        return float(value)  # metrics encode inf as "inf"
    except (TypeError, ValueError):
        return 0.0


def closeness(metrics: Mapping[str, Any]) -> tuple[float, float, float]:
    """How near an output came to failing, for ordering: `worst_over_allowed` when the metrics
    have it, then the mismatch ratio, then the largest relative error."""
    over = metrics.get("worst_over_allowed")
    ratio = _number(metrics.get("mismatch_ratio"))
    return (_number(over) if over is not None else ratio, ratio, _number(metrics.get("max_rel")))


class Watched:
    """An executor that passes jobs through and remembers the closest call among them."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.closest: Closest | None = None
        self._job: Job | None = None
        self._key: tuple[float, float, float] | None = None

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        outcomes = self.inner.evaluate(jobs)
        for job, outcome in zip(jobs, outcomes, strict=False):
            for name, metrics in outcome.outputs.items():
                key = closeness(metrics)
                if self._key is None or key > self._key:
                    self._key, self._job = key, job
                    status = getattr(outcome.status, "value", outcome.status)
                    self.closest = Closest(job.target, dict(job.case), name, str(status),
                                           key[0], key[1], dict(metrics))
        return outcomes

    def complete_closest(self) -> None:
        """Full metrics for the closest call (a passing case ran with the verdict's summary
        only: max ULP, rel-L2 and the worst points are computed now, once)."""
        if self.closest is None or self._job is None or self.closest.metrics.get("complete", True):
            return
        try:
            with Warned():  # a case the search ran, and counted the warnings of, once already
                again = self.inner.evaluate([replace(self._job, full_metrics=True)])[0]
        except KfuzzError:
            return
        if self.closest.output in again.outputs:
            self.closest.metrics = dict(again.outputs[self.closest.output])

    def close(self) -> None:
        """The inner executor belongs to the caller."""


# Why a target ran no case: the run's budget was spent before its turn, or its share ended
# before its first case did.
NO_TIME = "no time left: the run's budget was spent before this target's turn"
NO_CASE = "no case ran within its share of the budget ({:.1f}s)"


@dataclass
class CampaignRun:
    """One campaign of a run: its config, its result (None when it did not start), the
    closest call it saw, why it was skipped (a kernel that cannot run here, no time left, no
    case run) and why it failed (a configuration problem of this target alone, in a run of
    several). See `state`."""

    config: CampaignConfig
    result: CampaignResult | None = None
    closest: Closest | None = None
    skipped: str | None = None
    failed: str | None = None

    @property
    def name(self) -> str:
        """The run entry's name: the target's, or "TARGET@KERNEL" for an entry that named its
        kernel."""
        return self.config.entry or self.config.target

    @property
    def state(self) -> str:
        """"run" (it ran cases), "skipped" or "failed": a target that ran no case is never
        a pass."""
        if self.failed is not None:
            return "failed"
        return "skipped" if self.skipped is not None else "run"


def run_one(config: CampaignConfig, executor: Executor, *,
            on_finding: Callable[[Finding], object] | None = None,
            progress: ProgressFn | None = None, skip_unavailable: bool = False) -> CampaignRun:
    """Run one campaign on `executor` (see `kfuzz.search.run_campaign`), watching for the
    closest call. With skip_unavailable, a kernel that cannot run here (KernelUnavailable;
    a library kernel whose library is not installed, before any case) makes a skipped
    CampaignRun instead of an error."""
    if config.ends_at is not None and time.time() >= config.ends_at:
        return CampaignRun(config, skipped=NO_TIME)
    watched = Watched(executor)
    if progress is not None and config.entry:
        # The progress line names the entry ("ops.softmax@ort_softmax"), not just its target.
        progress = _renamed(progress, config.entry)
    try:
        _require_libraries(config)
        result = run_campaign(config, executor=watched, on_finding=on_finding, progress=progress)
    except KernelUnavailable as exc:
        if not skip_unavailable:
            raise
        return CampaignRun(config, skipped=str(exc))
    if result.examples == 0:
        return CampaignRun(config, result, skipped=NO_CASE.format(result.seconds))
    if config.ends_at is None or time.time() < config.ends_at:
        watched.complete_closest()
    return CampaignRun(config, result, watched.closest)


def _renamed(progress: ProgressFn, name: str) -> ProgressFn:
    """`progress` with each report's "target" replaced by `name`."""
    return lambda info: progress({**info, "target": name})


def _require_libraries(config: CampaignConfig) -> None:
    """Raises KernelUnavailable when the campaign's kernel or oracle is a library kernel whose
    library is not installed here (`kfuzz.targets.libraries.require`)."""
    from kfuzz.targets import registry
    from kfuzz.targets.libraries import require

    target = registry.get(config.target)
    for role, name in (("kernel", config.kernel or target.default_kernel),
                       ("oracle", config.oracle or target.default_oracle)):
        try:
            variant = registry.resolve(target, role, name)
        except KfuzzError:
            continue  # the campaign reports it
        require(config.target, variant)


@dataclass
class RunContext:
    """What a runner needs besides the campaigns. store/db: where findings go (None: nowhere);
    budget: the run's whole time budget, which the sequential runner re-splits as campaigns
    end (each campaign's `ends_at` is the run's end); address: the Ray cluster; runs: every
    CampaignRun so far, in completion order (kept when the run is interrupted). keep_going:
    a target whose campaign raises a configuration error is recorded as failed and the run
    goes on (a run of several targets)."""

    executor: ExecutorSpec = ExecutorSpec()
    workers: int = 1
    store: Any = None
    run_id: int | None = None
    budget: float | None = None
    skip_unavailable: bool = False
    keep_going: bool = False
    address: str | None = None
    progress: ProgressFn | None = None
    on_done: Callable[[CampaignRun], object] | None = None
    runs: list[CampaignRun] = field(default_factory=list)

    @property
    def db(self) -> str | None:
        """The corpus path, for runners whose workers open it themselves."""
        return None if self.store is None else str(self.store.path)

    def record(self, finding: Finding) -> None:
        """Store a finding as soon as it exists."""
        if self.store is not None:
            self.store.record_finding(finding, run_id=self.run_id)

    def finished(self, run: CampaignRun) -> None:
        """Note a campaign that ended."""
        self.runs.append(run)
        if self.on_done:
            self.on_done(run)


class Runner(Protocol):
    """Runs campaigns: appends each CampaignRun to `context.runs` (via `context.finished`) as
    it ends and returns them. Raises KfuzzError for configuration problems."""

    def __call__(self, configs: Sequence[CampaignConfig], context: RunContext) -> list[CampaignRun]:
        ...


def run_sequential(configs: Sequence[CampaignConfig], context: RunContext) -> list[CampaignRun]:
    """Run campaigns one after another in this process on one executor, each with its share
    of what is left of the budget. See `Runner`."""
    executor = context.executor.build()
    try:
        for i, config in enumerate(configs):
            if config.ends_at is not None:
                # Each target's share of what is left: a target that ends early (or a skipped
                # one) leaves its time to the rest, one that overran takes it from them.
                share = (config.ends_at - time.time()) / (len(configs) - i)
                if share > 0:
                    config = dataclasses.replace(config, budget=share, time_limit=share)
            try:
                run = run_one(config, executor, on_finding=context.record,
                              progress=context.progress, skip_unavailable=context.skip_unavailable)
            except KfuzzError as exc:
                if not context.keep_going:
                    raise
                run = CampaignRun(config, failed=str(exc))
            context.finished(run)
            if run.result is not None and run.result.stopped == "interrupted":
                break
    finally:
        executor.close()
    return context.runs
