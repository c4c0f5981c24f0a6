"""The run path: executors, the closest call, target selection, the runs table."""

from __future__ import annotations

import json
import sqlite3

import pytest
from kfuzz.errors import KfuzzError
from kfuzz.execute.executor import InProcessExecutor, Job, Outcome
from kfuzz.run.campaigns import Watched, closeness
from kfuzz.run.executors import make_executor
from kfuzz.run.plan import RunOptions, select_targets
from kfuzz.run.runner import run
from kfuzz.search.campaign import CampaignConfig


def test_one_function_builds_every_kind_of_executor():
    from kfuzz.execute.isolation import IsolatedExecutor

    assert isinstance(make_executor(), InProcessExecutor)
    isolated = make_executor(isolate=True)
    timed = make_executor(case_timeout=5.0, plugins=["x.py"])
    assert isinstance(isolated, IsolatedExecutor) and isolated.case_timeout == 60.0
    assert isinstance(timed, IsolatedExecutor) and timed.case_timeout == 5.0
    assert timed.plugins == ["x.py"]


class _Canned:
    """An executor whose outcome for each job is the one its case describes."""

    def evaluate(self, jobs):
        return [Outcome(job.case["status"], outputs=job.case["outputs"]) for job in jobs]

    def close(self):
        pass


def _metrics(over, ratio=0.0, max_rel=0.0):
    return {"worst_over_allowed": over, "mismatch_ratio": ratio, "max_rel": max_rel}


def test_the_closest_call_is_the_output_nearest_its_bound_over_every_case():
    watched = Watched(_Canned())
    cases = [
        {"status": "pass", "outputs": {"y": _metrics(0.2), "z": _metrics(0.7)}},
        {"status": "pass", "outputs": {"y": _metrics(0.9)}},
        {"status": "error", "outputs": {}},
        {"status": "pass", "outputs": {"y": _metrics(0.5, max_rel=9.0)}},
    ]
    watched.evaluate([Job("t", "k", "o", case) for case in cases])
    assert watched.closest.output == "y" and watched.closest.score == 0.9
    assert watched.closest.case == cases[1]
    # Failing beats passing; metrics stored before worst_over_allowed rank by their ratio.
    watched.evaluate([Job("t", "k", "o", {"status": "fail", "outputs": {"y": _metrics("inf")}})])
    assert watched.closest.status == "fail" and watched.closest.score == float("inf")
    assert json.dumps(watched.closest.to_dict())  # JSON-able, inf included
    assert closeness({"mismatch_ratio": 0.25, "max_rel": 0.1}) == (0.25, 0.25, 0.1)


@pytest.mark.parametrize("names, all, message", [
    ([], False, "no target given; name one (see `kfuzz targets`) or pass --all"),
    (["ops.softmax"], True, "give target names or --all, not both"),
    (["ops.nope"], False, "no target 'ops.nope'; known: "),
])
def test_target_selection_errors(names, all, message):
    with pytest.raises(KfuzzError) as info:
        select_targets(names, all=all)
    assert str(info.value).startswith(message)


def test_all_leaves_out_the_benchmark_targets():
    names = select_targets([], all=True)
    assert "ops.softmax" in names and not [n for n in names if n.startswith("faults.")]


def test_a_run_is_recorded_with_each_campaign_and_its_closest_call(tmp_path):
    db = tmp_path / "c.db"
    report = run(RunOptions(targets=["ops.softmax", "ops.rmsnorm"], campaign=CampaignConfig(
        target="", kernel="eager_fp32", max_examples=10, seed=3)), db=db, argv=["x"])
    assert [c.target for c in report.campaigns] == ["ops.softmax", "ops.rmsnorm"]
    conn = sqlite3.connect(db)
    status, argv, results = conn.execute("select status, argv, results from runs").fetchone()
    conn.close()
    assert status == "done" and json.loads(argv) == ["x"]
    stored = json.loads(results)
    assert [r["target"] for r in stored] == ["ops.softmax", "ops.rmsnorm"]
    assert all(r["examples"] == 10 and r["closest"]["output"] == "y" for r in stored)
    assert report.exit_code() == (1 if report.findings else 0)
