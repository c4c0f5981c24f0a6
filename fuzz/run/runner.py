"""The run path: what `kfuzz run`, `kfuzz.fuzz` and the benchmarks all call.

`run(RunOptions(...), db=...)` makes the plan (`kfuzz.run.plan`: targets, checks, budget
shares, seed, executor spec), records the run in the corpus's runs table, and hands the
campaigns to one of three runners with one interface, `kfuzz.run.campaigns.Runner`:
`run_sequential` (this process), `kfuzz.run.parallel.run_parallel` (worker processes) and
`kfuzz.run.ray.run_on_ray` (Ray tasks). Each runner
runs every campaign through `run_one`, so all three judge cases, skip unavailable kernels and
track the closest call the same way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfuzz.cases.pins import left_out
from kfuzz.errors import KfuzzError
from kfuzz.execute.findings import Finding
from kfuzz.run.campaigns import NO_TIME, CampaignRun, RunContext, Runner, run_sequential
from kfuzz.run.plan import RunOptions, plan, reserve
from kfuzz.search.campaign import CampaignResult, ProgressFn


@dataclass
class RunReport:
    """What a run did: every entry (a target, or TARGET@KERNEL) as a CampaignRun (run,
    skipped or failed).
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
        """(entry, why) for each entry that ran no case: its kernel cannot run here, or the
        budget left it no time. An entry is named as `CampaignRun.name`."""
        return [(r.name, r.skipped) for r in self.runs if r.state == "skipped"]

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(entry, the error) for each entry whose campaign a configuration problem
        stopped, in a run of several entries."""
        return [(r.name, r.failed) for r in self.runs if r.failed is not None]

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
        """Per entry a JSON-able summary: its target (and "entry", TARGET@KERNEL, for an
        entry that named its kernel), its state ("run", "skipped", "failed"),
        its share of the budget, and the campaign's summary with its closest call, or the
        reason it was skipped or failed: what the runs table stores and `--json` prints."""
        out = []
        for run in self.runs:
            entry: dict[str, Any] = {"target": run.config.target, "state": run.state}
            if run.config.entry:
                entry["entry"] = run.config.entry
            if run.result is not None:
                closest = run.closest.to_dict() if run.closest else None
                entry.update(run.result.to_dict(), closest=closest)
            if run.skipped is not None:
                entry["skipped"] = run.skipped
            if run.failed is not None:
                entry["failed"] = run.failed
            if run.config.time_limit is not None:
                entry["budget"] = round(run.config.time_limit, 3)
            if left_out(run.config.pins):
                entry["left_out"] = left_out(run.config.pins)
            out.append(entry)
        return out


def runner_for(workers: int, ray: bool) -> Runner:
    """The runner for a run on `workers` processes, or on Ray."""
    if ray:
        from kfuzz.run.ray import run_on_ray

        return run_on_ray
    if workers > 1:
        from kfuzz.run.parallel import run_parallel

        return run_parallel
    return run_sequential


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
                                 targets=[c.entry or c.target for c in configs],
                                 device=template.device)
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
        # A target skipped for want of time: left none (NO_TIME), or started and ran no case.
        fix = "; give it a larger --budget" if any(
            r.skipped == NO_TIME or r.result is not None for r in report.runs) else ""
        raise KfuzzError(f"{'--all: ' if options.all else ''}no target ran ({reasons}){fix}")
    return report
