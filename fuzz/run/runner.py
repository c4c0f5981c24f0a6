"""The run path: what `kfuzz run`, `kfuzz.fuzz` and the benchmarks all call.

`run(RunOptions(...), db=...)` selects targets, checks the options against them (device, pins,
comparator, kernel and oracle), splits the budget, picks the seed shared by shards, builds
executors, records the run in the corpus's runs table, and hands the campaigns to one of three
runners with one interface, `Runner`: `run_sequential` (this process), `kfuzz.run.parallel.
run_parallel` (worker processes) and `kfuzz.run.ray.run_on_ray` (Ray tasks). Each runner
runs every campaign through `run_one`, so all three judge cases, skip unavailable kernels and
track the closest call the same way.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from kfuzz.errors import KernelUnavailable, KfuzzError, OptionError
from kfuzz.execute.executor import Executor, InProcessExecutor, Job, Outcome
from kfuzz.execute.findings import Finding
from kfuzz.search.campaign import CampaignConfig, CampaignResult, ProgressFn, run_campaign
from kfuzz.settings import DEFAULT_CASE_TIMEOUT, PROFILES
from kfuzz.targets import registry

DEVICES = ("cpu", "cuda")


# -- executors --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecutorSpec:
    """How to build the executor that runs a campaign's cases; plain data, so that it travels
    to worker processes and Ray tasks. isolate: a worker process per executor (a crash or a
    hang becomes a finding); case_timeout implies it. plugins: what the worker must load."""

    isolate: bool = False
    case_timeout: float | None = None
    plugins: tuple[str, ...] = ()

    def build(self) -> Executor:
        """A new executor (see `make_executor`)."""
        return make_executor(isolate=self.isolate, case_timeout=self.case_timeout,
                             plugins=self.plugins)


def make_executor(*, isolate: bool = False, case_timeout: float | None = None,
                  plugins: Sequence[str] = ()) -> Executor:
    """The one place executors are built: in-process, or in a worker process with `isolate`
    or a `case_timeout` (default DEFAULT_CASE_TIMEOUT seconds when isolated). Raises
    KfuzzError for a case_timeout that is not positive."""
    if not (isolate or case_timeout):
        return InProcessExecutor()
    from kfuzz.execute.isolation import IsolatedExecutor

    return IsolatedExecutor(case_timeout=case_timeout or DEFAULT_CASE_TIMEOUT, plugins=plugins)


# -- one campaign -----------------------------------------------------------------------------

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


class _Watched:
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
    closest call. With skip_unavailable, a kernel that cannot run here (KernelUnavailable)
    makes a skipped CampaignRun instead of an error."""
    if config.ends_at is not None and time.time() >= config.ends_at:
        return CampaignRun(config, skipped=NO_TIME)
    watched = _Watched(executor)
    try:
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


# -- runners ----------------------------------------------------------------------------------

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


def runner_for(workers: int, ray: bool) -> Runner:
    """The runner for a run on `workers` processes, or on Ray."""
    if ray:
        from kfuzz.run.ray import run_on_ray

        return run_on_ray
    if workers > 1:
        from kfuzz.run.parallel import run_parallel

        return run_parallel
    return run_sequential


# -- a whole run ------------------------------------------------------------------------------

@dataclass
class RunOptions:
    """Everything a run is asked to do, by field; `kfuzz run`'s flags map onto these one to
    one. targets: names (or `all`: every target in `--all`, skipping those whose kernel cannot
    run here). campaign: what every campaign does, a `kfuzz.search.CampaignConfig` whose
    target is ignored; its comparator may also be a mode name or a `Comparator` (see
    `comparator_overrides`). workers, ray, ray_address: where the campaigns run; isolate,
    case_timeout, plugins: how their executors are built (`ExecutorSpec`)."""

    targets: Sequence[str] = ()
    all: bool = False
    campaign: CampaignConfig = field(default_factory=lambda: CampaignConfig(target=""))
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    isolate: bool = False
    case_timeout: float | None = None
    plugins: Sequence[str] = ()


@dataclass
class RunReport:
    """What a run did: every selected target as a CampaignRun (run, skipped or failed).
    status: "done", "interrupted" or "error" (a configuration problem stopped it; the error
    was raised). budget: the run's budget in seconds (None: none)."""

    runs: list[CampaignRun]
    status: str = "done"
    run_id: int | None = None
    db: str | None = None
    budget: float | None = None

    @property
    def campaigns(self) -> list[CampaignResult]:
        """The campaigns that ran cases, in completion order."""
        return [r.result for r in self.runs if r.result is not None and r.state == "run"]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(target, why) for each target that ran no case: its kernel cannot run here, or the
        budget left it no time."""
        return [(r.config.target, r.skipped) for r in self.runs if r.state == "skipped"]

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(target, the error) for each target whose campaign a configuration problem
        stopped, in a run of several targets."""
        return [(r.config.target, r.failed) for r in self.runs if r.failed is not None]

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every campaign (shrunk and peak)."""
        return [f for c in self.campaigns for f in c.findings]

    def exit_code(self) -> int:
        """130 when interrupted (findings so far are kept), else 2 when a target failed, else
        1 with findings, else 0."""
        if self.status == "interrupted":
            return 130
        if self.failed:
            return 2
        return 1 if self.findings else 0

    def results(self) -> list[dict[str, Any]]:
        """Per selected target a JSON-able summary: its state ("run", "skipped", "failed"),
        its share of the budget, and the campaign's summary with its closest call, or the
        reason it was skipped or failed: what the runs table stores and `--json` prints."""
        out = []
        for run in self.runs:
            entry: dict[str, Any] = {"target": run.config.target, "state": run.state}
            if run.result is not None:
                closest = run.closest.to_dict() if run.closest else None
                entry.update(run.result.to_dict(), closest=closest)
            if run.skipped is not None:
                entry["skipped"] = run.skipped
            if run.failed is not None:
                entry["failed"] = run.failed
            if run.config.time_limit is not None:
                entry["budget"] = round(run.config.time_limit, 3)
            out.append(entry)
        return out


def select_targets(names: Sequence[str], *, all: bool = False) -> list[str]:
    """The targets a run fuzzes: `names`, or with `all` every target marked in_all. Raises
    KfuzzError for both or neither, UnknownTarget for an unknown name."""
    if all:
        if names:
            raise KfuzzError("give target names or --all, not both")
        return [name for name, t in registry.all_targets().items() if t.in_all]
    if not names:
        raise KfuzzError("no target given; name one (see `kfuzz targets`) or pass --all")
    for name in names:
        registry.get(name)
    return list(names)


def check_device(device: str) -> None:
    """Raises OptionError unless `device` is cpu, or cuda[:N] on a machine with that GPU."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise OptionError("device", device, f": kfuzz runs kernels on cpu or cuda (cuda:N), "
                          f"not {device!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise OptionError("device", device, f": torch.cuda.is_available() is False on this "
                              f"machine (torch {torch.__version__}); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise OptionError("device", device, f": this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")


def comparator_overrides(comparator: Any) -> dict[str, Any] | None:
    """Comparator fields to override every output's default with: None, a mode name
    ("exact"), a dict of fields, or a `Comparator` (all its fields). Raises ComparatorError
    for a bad combination."""
    from kfuzz.judge.compare import Comparator

    if comparator is None:
        return None
    if isinstance(comparator, str):
        comparator = {"mode": comparator}
    elif isinstance(comparator, Comparator):
        comparator = comparator.to_dict()
    overrides = dict(comparator)
    # Validate the combination now, against a neutral base, for a one-line error.
    Comparator.from_dict({**Comparator(mode=overrides.get("mode", "allclose")).to_dict(),
                          **overrides})
    return overrides or None


def _check_callables(campaign: CampaignConfig, names: Sequence[str], in_worker: bool) -> None:
    from kfuzz.targets.declare import declared

    for role in ("kernel", "oracle"):
        name = getattr(campaign, role)
        if name and registry.is_local(name) and in_worker:
            raise OptionError(role, name, " exists only in this process (a lambda or a nested "
                              "function); define it at module level to run it in a worker")
    for target_name in names:
        if in_worker and declared(target_name) and not registry.plugins_for(target_name):
            raise OptionError("target", target_name, " was declared in this process only; "
                              "declare it in a module and pass that as a plugin to run it in "
                              "a worker")
    if campaign.kernel is None:
        for target_name in names:
            if not registry.get(target_name).kernels:
                raise OptionError("kernel", None, f": target {target_name!r} has no kernel of "
                                  "its own; pass one (--kernel module:function)")
    # An unknown kernel or oracle is refused before the corpus is opened (a run refused at
    # set-up writes nothing); one that cannot run here is the campaign's to skip.
    for target_name in names:
        target = registry.get(target_name)
        for role, name in (("kernel", campaign.kernel or target.default_kernel),
                           ("oracle", campaign.oracle or target.default_oracle)):
            try:
                registry.resolve(target, role, name)
            except KernelUnavailable:
                pass


def plan(options: RunOptions) -> tuple[list[CampaignConfig], ExecutorSpec]:
    """Check `options` and turn them into campaigns and an executor spec, touching no corpus.
    Raises KfuzzError (OptionError naming the field) for anything that cannot run."""
    for plugin in options.plugins:
        registry.load_plugin(plugin)
    names = select_targets(options.targets, all=options.all)
    if options.workers < 1:
        raise OptionError("workers", options.workers, " must be at least 1")
    template = options.campaign
    ray = options.ray or bool(options.ray_address)
    if ray:
        from kfuzz.run.ray import require_ray

        require_ray()  # the device is checked against the cluster, not this machine
    else:
        check_device(template.device)
    profile = PROFILES[template.profile]
    isolate = bool(options.isolate or options.case_timeout or profile.isolate)
    _check_callables(template, names, isolate or ray or options.workers > 1)
    seed = template.seed
    if seed is None and (options.workers > 1 or ray):
        # One seed for every shard, so that they derive distinct ones from it.
        seed = profile.fixed_seed if profile.fixed_seed is not None else random.randrange(2**32)
    # With workers the campaigns run side by side, each with the budget they share (the
    # sequential runner shares what is left as each campaign ends). A campaign's share bounds
    # its shrinking too.
    budget = template.budget
    share = budget and budget * min(options.workers, len(names)) / len(names)
    configs = [dataclasses.replace(template, target=name, seed=seed, budget=share or None,
                                   time_limit=share or None,
                                   comparator=comparator_overrides(template.comparator))
               for name in names]
    if template.pins:
        from kfuzz.cases.pins import check_pins
        from kfuzz.search.campaign import HypothesisStorage

        with HypothesisStorage():  # the check draws cases: no .hypothesis/ in the cwd
            for config in configs:
                target = registry.get(config.target)
                check_pins(target, template.pins, config.max_numel or target.max_numel)
    spec = ExecutorSpec(isolate=isolate,
                        case_timeout=options.case_timeout or (DEFAULT_CASE_TIMEOUT if isolate
                                                              else None),
                        plugins=tuple(options.plugins))
    return configs, spec


def reserve(budget: float) -> float:
    """Seconds of a run's budget kept back for what follows the campaigns (the closest
    call's metrics, storing the run, the summary)."""
    return min(1.0, 0.05 * budget)


def run(options: RunOptions, *, db: str | Path | None = None, argv: Sequence[str] = (),
        progress: ProgressFn | None = None,
        on_done: Callable[[CampaignRun], object] | None = None,
        started: float | None = None) -> RunReport:
    """Fuzz what `options` asks for and store findings in the corpus at `db` (None: nowhere),
    recording the run (with `argv`) in its runs table. Returns the RunReport; a run stopped
    by Ctrl-C returns with status "interrupted" and what it had. With a budget, the whole
    run (search, shrinking, storing) ends within it, counted from `started` (a `time.time()`;
    default: now). Raises KfuzzError for configuration problems, before the corpus is touched
    when they can be seen up front."""
    from kfuzz.store.corpus import CorpusStore

    started = time.time() if started is None else started
    configs, spec = plan(options)
    template = options.campaign
    if template.budget:
        ends_at = started + template.budget - reserve(template.budget)
        configs = [dataclasses.replace(c, ends_at=ends_at) for c in configs]
    store = CorpusStore(db) if db is not None else None
    run_id = None
    if store is not None:
        run_id = store.start_run(argv=list(argv), profile=template.profile, seed=template.seed,
                                 targets=[c.target for c in configs], device=template.device)
    context = RunContext(executor=spec, workers=options.workers, store=store, run_id=run_id,
                         budget=template.budget, skip_unavailable=options.all,
                         keep_going=len(configs) > 1, address=options.ray_address,
                         progress=progress, on_done=on_done)
    report = RunReport(context.runs, run_id=run_id, db=None if db is None else str(db),
                       budget=template.budget)
    try:
        runner_for(options.workers, options.ray or bool(options.ray_address))(configs, context)
        if any(r.result is not None and r.result.stopped == "interrupted" for r in report.runs):
            report.status = "interrupted"
    except KeyboardInterrupt:
        report.status = "interrupted"
    except BaseException:
        report.status = "error"
        raise
    finally:
        if store is not None:
            store.finish_run(run_id, status=report.status,  # type: ignore[arg-type]
                             examples=sum(c.examples for c in report.campaigns),
                             findings=len(report.findings), results=report.results())
            store.close()
    if not report.campaigns and report.skipped and not report.failed \
            and report.status == "done":
        # Nothing was fuzzed: never a pass.
        reasons = "; ".join(f"{t}: {why}" for t, why in report.skipped)
        fix = "; give it a larger --budget" if any(
            r.skipped in (NO_TIME,) or (r.result is not None) for r in report.runs) else ""
        raise KfuzzError(f"{'--all: ' if options.all else ''}no target ran ({reasons}){fix}")
    return report
