"""Outcomes: metrics objects in the process, plain data across the worker pipe and the corpus."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from hypothesis import strategies as st
from kfuzz.execute.executor import Job, Outcome, run_case
from kfuzz.judge.comparator import Comparator
from kfuzz.judge.compare import Metrics
from kfuzz.targets.registry import OutputSpec, Target, Variant


def _two_outputs() -> Target:
    """A target whose kernel gets output "good" right and output "bad" wrong by 1."""
    return Target(
        name="test.two_outputs", doc="two outputs", signature="fn(x)",
        cases=lambda max_numel: st.just({"seed": 0}),
        inputs=lambda case, g: {"x": torch.randn(8, generator=g)},
        expect=lambda case: {"good": OutputSpec((8,), torch.float32),
                             "bad": OutputSpec((8,), torch.float32)},
        kernels={"k": Variant("k", lambda x: {"good": x * 2, "bad": x * 2 + 1})},
        oracles={"o": Variant("o", lambda x: {"good": x * 2, "bad": x * 2})},
        comparators={"good": Comparator(), "bad": Comparator()},
        default_kernel="k", default_oracle="o",
    )


def _run(target: Target, kernel: str, *, full: bool = False, case=None) -> Outcome:
    job = Job(target.name, kernel, "o", case or {"seed": 0}, full_metrics=full)
    return run_case(target, target.kernels[kernel], target.oracles["o"], job)


def test_a_passing_output_gets_a_summary_unless_full_metrics_are_asked_for() -> None:
    target = _two_outputs()
    good_only = replace(target, kernels={"k": Variant("k", lambda x: {"good": x * 2, "bad": x * 2})})
    passing = _run(good_only, "k")
    assert passing.status == "pass"
    assert all(isinstance(m, Metrics) and not m.complete for m in passing.outputs.values())
    assert passing.outputs["good"]["worst_over_allowed"] == 0.0
    full = _run(good_only, "k", full=True)
    assert all(m.complete for m in full.outputs.values())
    assert full.outputs["good"].max_abs == 0.0


def test_a_failing_outcome_has_full_metrics_for_every_output() -> None:
    outcome = _run(_two_outputs(), "k")
    assert outcome.status == "fail"
    good, bad = outcome.outputs["good"], outcome.outputs["bad"]
    assert good.complete and good.passed and good.max_abs == 0.0
    assert bad.complete and not bad.passed and bad.mismatches == 8 and bad.worst_points
    assert outcome.buckets() == {"bad:mismatch:wrong"}  # off by 1: far beyond a rounding
    assert outcome.worst_over_allowed() == bad.worst_over_allowed > 1


def test_outcome_round_trips_through_json_as_the_worker_pipe_sends_it() -> None:
    outcome = _run(_two_outputs(), "k")
    wire = json.loads(json.dumps(outcome.to_dict(), allow_nan=False))
    back = Outcome.from_dict(wire)
    assert back.status == outcome.status and back.seconds == outcome.seconds
    assert all(isinstance(m, Metrics) for m in back.outputs.values())
    assert back.to_dict() == outcome.to_dict()
    assert back.buckets() == outcome.buckets()


def test_outcomes_made_from_plain_dicts_still_work() -> None:
    metrics = {"mismatch_ratio": 0.5, "mismatches": 2, "passed": False, "nonfinite_mismatches": 0}
    outcome = Outcome("fail", {"y": metrics})
    assert outcome.worst_ratio() == 0.5 and outcome.buckets() == {"y:mismatch"}
    assert outcome.to_dict()["outputs"] == {"y": metrics}
    assert outcome.worst_over_allowed() == 0.0  # none recorded
