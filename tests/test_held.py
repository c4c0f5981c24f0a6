"""Pinned fields are held, not drawn: a case strategy built with `case_dicts` inside `holding`
takes a held field's value without a draw, and draws exactly as `st.fixed_dictionaries`
without pins."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.dicts import case_dicts, holding
from kfuzz.execute.executor import InProcessExecutor
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.targets import registry


class Recording(InProcessExecutor):
    """Runs jobs in process and keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list = []

    def evaluate(self, jobs):
        self.jobs.extend(jobs)
        return super().evaluate(jobs)


def _drawn(strategy, n: int = 40, seed: int = 7) -> list:
    out = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(case):
        out.append(case)

    draw()
    return out


def _never(value):
    raise AssertionError(f"a held field was drawn ({value!r})")


def test_without_pins_the_cases_are_those_of_fixed_dictionaries():
    target = registry.get("ops.rmsnorm")
    assert _drawn(target.cases(4096)) == _drawn(st.fixed_dictionaries({
        "shape": fst.shapes(fst.Dim(1, 64), fst.Dim(1, 8192), max_numel=4096),
        "dtype": fst.dtypes(("bfloat16", "float16", "float32")),
        "x": fst.distributions(specials=fst.SPECIALS),
        "eps": st.sampled_from([1e-6, 1e-5]),
        "seed": fst.seeds(),
    }, optional={"weight": fst.distributions(kinds=("normal", "log_uniform", "uniform"),
                                             min_scale_exp=-4, max_scale_exp=4, regimes=())}))


def test_a_held_field_takes_its_value_and_is_never_drawn():
    fields = {"a": st.integers(0, 9).map(_never), "b": st.integers(0, 9)}
    with holding({"a": 5, "c": [1, 2]}):
        strategy = case_dicts(fields, optional={"c": st.lists(st.integers()).map(_never),
                                                "d": st.just("d")})
    cases = _drawn(strategy)
    assert all(c["a"] == 5 and c["c"] == [1, 2] and 0 <= c["b"] <= 9 for c in cases)
    assert {"d" in c for c in cases} == {True, False}  # an optional field not held: drawn
    # Built outside `holding`, the same fields are drawn.
    assert {c["b"] for c in _drawn(case_dicts({"b": st.integers(0, 9)}))} > {0}


def test_a_pinned_campaign_holds_its_pins_while_drawing():
    rec = Recording()
    pins = {"shape": [3, 40], "dtype": "float16", "x": {"kind": "normal", "scale": 2.0}}
    run_campaign(CampaignConfig(target="ops.rmsnorm", kernel="eager_fp32", oracle="fp64",
                                max_examples=60, seed=3, pins=pins), executor=rec)
    assert rec.jobs and all({k: j.case[k] for k in pins} == pins for j in rec.jobs)


def test_a_campaign_draws_no_pinned_field_of_a_case_dicts_target(monkeypatch):
    # A target whose shape strategy fails when drawn: pinned, its campaign never draws it.
    base = registry.get("ops.rmsnorm")
    cases = lambda max_numel: case_dicts({  # noqa: E731
        "shape": st.just([2, 8]).map(_never), "dtype": fst.dtypes(("bfloat16",)),
        "x": fst.distributions(kinds=("normal",), regimes=()), "eps": st.just(1e-6),
        "seed": fst.seeds()})
    held = dataclasses.replace(base, name="test.held", cases=cases)
    monkeypatch.setitem(registry._REGISTRY, "test.held", held)
    rec = Recording()
    run_campaign(CampaignConfig(target="test.held", kernel="eager_fp32", oracle="fp64",
                                max_examples=30, seed=1, pins={"shape": [3, 16]}), executor=rec)
    assert rec.jobs and all(j.case["shape"] == [3, 16] for j in rec.jobs)
