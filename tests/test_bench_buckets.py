"""The bug-finding benchmark holds each shrunk case to the smallest known case of its own failure
bucket (bench/bug_finding.py), and bench/smallest.py finds the smallest grid case per bucket. A
stand-in executor decides each case's bucket, so nothing here runs a kernel or depends on
speed, except one small brute-force search on a real fault."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from kfuzz.execute.executor import Job, Outcome

import bench.bug_finding as bf
import bench.smallest as sm
from bench.render import bug_finding as render_bug_finding
from bench.render import smallest as render_smallest
from bench.seeded import by_name

MACHINE = {"cpu": "x", "cores": 2, "os": "Linux", "python": "3", "torch": "2",
           "torch_threads": 1, "hypothesis": "6", "load_average": [0.0]}
FAULT = by_name("bf16_accumulate")  # faults.rmsnorm: a [rows, h] case has 2 * rows * h elements
ROUNDING, WRONG = "error:Rounding", "error:Wrong"


def _case(h: int, how: str) -> dict[str, Any]:
    """A case of 2 * h elements whose failure the stand-in executor reads from its "x"."""
    return {"shape": [1, h], "dtype": "bfloat16", "x": {"kind": how}, "eps": 1e-6, "seed": 0,
            "materialise": 2}


class _ByKind:
    """Runs nothing: the fault's kernel fails a case in the bucket its "x" kind names
    ("rounding", "wrong"; "pass" passes), the reference kernel passes every case."""

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        out = []
        for job in jobs:
            kind = job.case["x"]["kind"]
            if job.kernel == FAULT.reference or kind == "pass":
                out.append(Outcome(status="pass"))
            else:
                out.append(Outcome(status="error", error_type=kind.capitalize()))
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def by_kind(monkeypatch):
    monkeypatch.setattr(bf, "InProcessExecutor", _ByKind)
    monkeypatch.setattr(sm, "InProcessExecutor", _ByKind)


def _row(*shrunk: dict[str, Any], uniform: dict[str, Any] | None = None) -> dict[str, Any]:
    runs = [{"seed": i, "detected": True, "size": 2 * c["shape"][1], "case": c,
             "shrink": {"seconds": 1.0}, "reference_passes": True} for i, c in enumerate(shrunk)]
    uni = [{"seed": 0, "detected": True, "size": 2 * uniform["shape"][1], "case": uniform,
            "reference_passes": True}] if uniform else []
    return {"fault": FAULT.name, "kfuzz_runs": runs, "uniform_runs": uni, "kfuzz": {}}


def test_a_shrunk_case_is_held_to_its_own_buckets_smallest_not_a_smaller_one_of_another(by_kind):
    brute = {FAULT.name: {"size": 20, "case": _case(10, "rounding"), "by_bucket": {
        ROUNDING: {"size": 20, "case": _case(10, "rounding")},
        WRONG: {"size": 400, "case": _case(200, "wrong")}}}}
    row = _row(_case(150, "wrong"), _case(300, "wrong"))
    bf.held_to_smallest(row, bf._known_cases(FAULT, row, brute, {}, {}))
    # Against the smallest case of its own bucket (300 elements, this run's first shrunk case),
    # not the 20-element case of the rounding bucket, which the shrinker could not reach.
    assert row["kfuzz"]["shrunk_over_smallest"] == [1.0, 2.0]
    assert row["kfuzz"]["shrunk_over_smallest_any"] == [15.0, 30.0]
    assert row["kfuzz"]["shrunk_buckets"] == [WRONG, WRONG]
    assert bf.worst_shrunk([row]) == {FAULT.name: 2.0}
    assert row["smallest_known"]["size"] == 20
    assert row["smallest_known_by_bucket"][WRONG] == {
        "size": 300, "source": "kfuzz shrink", "case": _case(150, "wrong")}
    assert row["smallest_known_by_bucket"][ROUNDING]["source"] == "brute force"


def test_every_source_lowers_the_bar_of_the_bucket_its_case_fails_in(by_kind, tmp_path):
    brute = {FAULT.name: {"size": 20, "case": _case(10, "rounding"), "by_bucket": {
        ROUNDING: {"size": 20, "case": _case(10, "rounding")}}}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"faults": [{
        "fault": FAULT.name,
        "smallest_known": {"size": 10, "source": "kfuzz shrink", "case": _case(5, "rounding")},
        "smallest_known_by_bucket": {
            # 180 elements; one that passes now no longer counts.
            WRONG: {"size": 180, "source": "kfuzz shrink", "case": _case(90, "wrong")},
            "error:Gone": {"size": 8, "source": "kfuzz shrink", "case": _case(4, "pass")}}}]}))
    recorded = {FAULT.name: [{"fault": FAULT.name, "source": "by hand",
                              "case": _case(80, "wrong")}]}
    row = _row(_case(120, "wrong"), uniform=_case(500, "rounding"))
    bf.held_to_smallest(row, bf._known_cases(FAULT, row, brute, bf._known(str(earlier)),
                                             recorded))
    assert row["smallest_known_by_bucket"][WRONG] == {
        "size": 160, "source": "by hand", "case": _case(80, "wrong")}
    assert row["smallest_known"]["source"] == "kfuzz shrink (an earlier run)"
    assert row["kfuzz"]["shrunk_over_smallest"] == [1.5]
    assert row["kfuzz"]["shrunk_over_smallest_any"] == [24.0]
    assert set(row["smallest_known_by_bucket"]) == {ROUNDING, WRONG}
    assert row["uniform_runs"][0]["buckets"] == [ROUNDING]


def test_an_older_brute_force_result_without_buckets_is_run_to_learn_its_bucket(by_kind):
    brute = {FAULT.name: {"size": 100, "case": _case(50, "wrong")}}
    row = _row(_case(75, "wrong"))
    bf.held_to_smallest(row, bf._known_cases(FAULT, row, brute, {}, {}))
    assert row["smallest_known_by_bucket"][WRONG]["source"] == "brute force"
    assert row["kfuzz"]["shrunk_over_smallest"] == [1.5]


def test_the_brute_force_search_records_the_first_case_of_each_bucket(by_kind, monkeypatch):
    grid = [_case(1, "pass"), _case(2, "rounding"), _case(3, "rounding"), _case(5, "wrong"),
            _case(6, "wrong"), _case(2 * sm.REACH + 1, "pass"), _case(2 * sm.REACH + 2, "wrong")]
    fault = FAULT.__class__(**{**FAULT.__dict__, "grid": lambda: iter(reversed(grid))})
    found = sm.smallest_failing(fault)
    assert (found["size"], found["tried"]) == (4, 2)
    assert {b: (e["size"], e["tried"]) for b, e in found["by_bucket"].items()} == {
        ROUNDING: (4, 2), WRONG: (10, 4)}
    # Up to REACH times the first failing size: the case one element pair past it is not run.
    assert (found["searched"], found["searched_to_size"]) == (5, 12)
    assert found["by_bucket"][WRONG]["reference_passes"] is True


def test_a_real_faults_buckets_each_hold_a_case_failing_in_them():
    fault = by_name("window_off_by_one")
    found = sm.smallest_failing(fault, limit=400)
    assert len(found["by_bucket"]) >= 2
    assert found["size"] == min(e["size"] for e in found["by_bucket"].values())
    for bucket, entry in found["by_bucket"].items():
        assert bucket in bf._failing_buckets(fault, entry["case"])


def _doc(kfuzz: dict[str, Any], **extra: Any) -> dict[str, Any]:
    runs = [{"size": 300, "case": _case(150, "wrong"), "shrink": {"seconds": 1.0}}]
    return {"seeds": 1, "budget": 5.0, "fixed_seeds": [0], "command": "c", "date": "d",
            "machine": MACHINE, "faults": [{
                "fault": FAULT.name, "needs": "n", "uniform_hit_rate": {"samples": 1, "rate": 1},
                "fixed": {"detected": True, "seeds": [{"failed": True}]},
                "kfuzz": {"detected": 1, "runs": 1, "median_examples": 1, "median_seconds": 1,
                          **kfuzz},
                "uniform": {"detected": 1, "runs": 1, "median_examples": 1, "median_seconds": 1},
                "kfuzz_vs_uniform": "equal", "kfuzz_runs": runs, "uniform_runs": [],
                "smallest_known": {"size": 20, "source": "brute force",
                                   "case": _case(10, "rounding")}, **extra}]}


def _shrink_row(text: str) -> list[str]:
    line = [ln for ln in text.splitlines() if ln.startswith(f"| {FAULT.name} | 20 ")][0]
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_shrinking_table_shows_the_bucket_and_both_ratios():
    doc = _doc({"shrunk_over_smallest": [1.0], "shrunk_over_smallest_any": [15.0],
                "shrunk_buckets": [WRONG]},
               smallest_known_by_bucket={WRONG: {"size": 300, "source": "kfuzz shrink",
                                                 "case": _case(150, "wrong")}})
    row = _shrink_row(render_bug_finding(doc))
    assert row[3:7] == [f"`{WRONG}`: 300 (kfuzz shrink)", "1.0", "15.0", "yes"]
    # Results from before buckets: the one ratio they hold is against any bucket's smallest.
    old = _shrink_row(render_bug_finding(_doc({"shrunk_over_smallest": [15.0]})))
    assert old[3:7] == ["-", "-", "15.0", "-"]


def test_the_smallest_table_shows_each_buckets_smallest_and_dashes_for_older_results():
    new = {"fault": "f", "target": "t", "kernel": "k", "size": 4, "tried": 2, "grid_cases": 9,
           "reference_passes": True, "case": _case(2, "rounding"), "searched": 5,
           "searched_to_size": 12, "reach": sm.REACH,
           "by_bucket": {ROUNDING: {"size": 4, "reference_passes": True},
                         WRONG: {"size": 10, "reference_passes": True}}}
    old = {k: v for k, v in new.items() if k not in ("searched", "searched_to_size", "reach",
                                                     "by_bucket")}
    doc = {"command": "c", "date": "d", "machine": MACHINE}
    text = render_smallest({**doc, "faults": [new]})
    assert f"`{ROUNDING}` 4<br>`{WRONG}` 10 | 12 |" in text
    assert f"up to {sm.REACH} times" in text
    text = render_smallest({**doc, "faults": [old]})
    assert "| True | - | - |" in text and "times its size" not in text
