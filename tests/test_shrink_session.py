"""The shrink session through its public surface: a start case, an evaluate callable and the
case space, nothing of the search. Toy predicates on softmax cases stand for kernels; draws
are bounded by count and deadlines are far away, so no result depends on the machine's speed."""

from __future__ import annotations

import struct
import time

import pytest
from kfuzz.cases.materialise import generator_for, stamp
from kfuzz.execute.executor import Outcome
from kfuzz.search.fresh import fresh_settings
from kfuzz.shrink import witnesses
from kfuzz.shrink.session import PASSES, ShrinkSession
from kfuzz.shrink.space import CaseSpace
from kfuzz.targets.registry import get

SOFTMAX = get("ops.softmax")
FAR = 600.0  # seconds: a deadline no test reaches


def _space(pins=None, seed=0):
    """The softmax case space as a campaign builds it: pinned fields held, cases stamped."""
    pins = dict(pins or {})

    def cases(max_numel):
        return SOFTMAX.cases(max_numel).map(lambda case: stamp({**case, **pins}))

    return CaseSpace(SOFTMAX, cases, max_numel=1 << 14, pins=pins, seed=seed,
                     fresh=fresh_settings())


def _outcome(failed):
    if failed:
        return Outcome(status="error", error="ToyError: toy", error_type="ToyError")
    return Outcome(status="pass", outputs={"y": {"passed": True, "mismatch_ratio": 0.0,
                                                 "worst_over_allowed": 0.5}})


class Toy:
    """An evaluate callable: fails (bucket "error:ToyError") when `fails(case)`; counts the
    cases it runs and keeps them."""

    def __init__(self, fails):
        self.fails = fails
        self.cases = []

    def __call__(self, case):
        self.cases.append(case)
        return _outcome(self.fails(case))


def _session(toy, case, *, space=None, **kw):
    return ShrinkSession(space or _space(), toy, case, toy(case),
                         deadline=time.perf_counter() + FAR, shrink_seconds=FAR, **kw)


def _elements_over(case, threshold):
    x = SOFTMAX.inputs(case, generator_for(case))["x"].float()
    return int((x > threshold).sum())


def _wide(cols, rows=1, kind="normal", seed=0):
    x = ({"kind": "normal", "scale": 1.0} if kind == "normal"
         else {"kind": "uniform", "low": 0.0, "high": 1.0})
    return stamp({"shape": [rows, cols], "dtype": "float32", "x": x, "seed": seed})


def _wide_or_uniform(case):
    """Fails from 400 elements, or from 20 when x is uniform: no reduction of a normal case
    gets below 400, a drawn uniform one fails at 20."""
    size = SOFTMAX.case_size(case)
    return size >= 400 or (case["x"]["kind"] == "uniform" and size >= 20)


def test_the_size_pass_reaches_the_fewest_elements_with_the_property():
    # Fails while two elements of x exceed 2: the session cuts around them, keeps them bit for
    # bit, and stops within 2x of the simplest case (1 element) without searching further.
    toy = Toy(lambda case: _elements_over(case, 2.0) >= 2)
    case = _wide(512, rows=8, seed=3)
    assert toy.fails(case)
    result = _session(toy, case).run()
    assert SOFTMAX.case_size(result.case) == 2 and toy.fails(result.case)
    assert result.outcome.failed and result.complete and result.reductions
    assert list(result.passes) == list(PASSES)
    reduce = result.passes["reduce"]
    assert reduce["calls"] == 1 and reduce["successes"] == 1
    assert reduce["cases"] == len(toy.cases) - 1  # every case but the start's own
    assert reduce["seconds"] >= 0
    assert result.passes["redraw"]["calls"] == result.passes["draw"]["calls"] == 0
    assert result.passes["widen"]["calls"] == 0


def test_a_smaller_failure_with_other_values_is_drawn_then_reduced(monkeypatch):
    monkeypatch.setattr(witnesses, "REDRAWS", 300)
    monkeypatch.setattr(witnesses, "SMALLER_TRIES", 30)
    toy = Toy(_wide_or_uniform)
    result = _session(toy, _wide(512)).run()
    assert SOFTMAX.case_size(result.case) == 20 and result.case["x"]["kind"] == "uniform"
    assert any(step.startswith("a smaller failure drawn") for step in result.reductions)
    # The first search found one; the second (at 20, where nothing smaller fails) found none,
    # neither by redraws nor by draws of the whole space.
    redraw, draw = result.passes["redraw"], result.passes["draw"]
    assert (redraw["calls"], redraw["successes"]) == (2, 1)
    assert (draw["calls"], draw["successes"]) == (1, 0)
    assert 0 < draw["cases"] <= 30
    assert result.passes["reduce"]["calls"] == 2  # from the start, and from the one drawn


def test_the_smallest_failure_passed_through_is_reduced_too(monkeypatch):
    monkeypatch.setattr(witnesses, "REDRAWS", 50)
    monkeypatch.setattr(witnesses, "SMALLER_TRIES", 10)
    toy = Toy(_wide_or_uniform)
    uniform = _wide(40, rows=2, kind="uniform")
    result = _session(toy, _wide(512), passed_through=(uniform, toy(uniform))).run()
    assert result.reductions[0] == "from the smallest failure Hypothesis passed through (80 elements)"
    assert SOFTMAX.case_size(result.case) == 20 and result.case["x"]["kind"] == "uniform"
    # Both starts reduced, then each failure the searches found.
    found = sum(result.passes[name]["successes"] for name in ("widen", "redraw", "draw"))
    assert result.passes["reduce"]["calls"] == 2 + found
    assert result.passes["reduce"]["successes"] >= 2


def test_pinned_fields_stay_and_cases_that_cannot_run_do_not_fail(monkeypatch):
    monkeypatch.setattr(witnesses, "REDRAWS", 50)
    monkeypatch.setattr(witnesses, "SMALLER_TRIES", 10)
    space = _space(pins={"seed": 7})
    # Cannot run an odd number of columns (None), fails from 6 columns otherwise.
    runs = Toy(lambda case: case["shape"][1] >= 6)
    result = ShrinkSession(space, lambda case: None if case["shape"][1] % 2 else runs(case),
                           _wide(64, seed=7), runs(_wide(64, seed=7)),
                           deadline=time.perf_counter() + FAR, shrink_seconds=FAR).run()
    assert result.case["shape"] == [1, 6] and result.case["seed"] == 7
    assert all(case["seed"] == 7 for case in runs.cases)


def test_known_buckets_are_not_what_a_candidate_must_fail_in():
    # The start fails in a known bucket and a new one: a candidate must keep the new one.
    both = Outcome(status="error", error_type="New")
    session = ShrinkSession(_space(), lambda case: None, _wide(8), both,
                            deadline=time.perf_counter() + FAR, shrink_seconds=FAR,
                            known={"error:Old"})
    assert session.wanted(both) == {"error:New"}
    assert session.wanted(Outcome(status="error", error_type="Old")) == {"error:Old"}


def test_a_passed_deadline_stops_the_session_with_the_start_case():
    toy = Toy(lambda case: True)
    start = _wide(512, rows=4)
    result = ShrinkSession(_space(), toy, start, toy(start), deadline=time.perf_counter() - 1,
                           shrink_seconds=1).run()
    assert result.case == start and not result.complete and not result.reductions
    assert result.passes["reduce"]["calls"] == 1 and result.passes["reduce"]["cases"] == 0


def test_the_space_draws_its_simplest_case_once_and_hands_out_fresh_draws_each_once():
    space = _space(seed=5)
    assert space.floor() == 1 and space.floor() == 1
    values = [space.fresh_values(time.perf_counter() + FAR, batch=10) for _ in range(25)]
    # Pools of 10 fresh draws, seeded one after the other, each draw handed out once.
    pools = [space.draws(space.max_numel, seed=5 + drawn, deadline=time.perf_counter() + FAR,
                         draws=10, most=10) for drawn in (0, 10, 20)]
    assert values == [case for pool in pools for case in pool][:25]
    assert space.draws(0, seed=0, deadline=time.perf_counter() + FAR, draws=5, most=5) == []


@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_near_misses_keep_the_closest_value_settings(kind):
    search = witnesses.WitnessSearch(_space(), lambda case: None, {"error:ToyError"})

    def outcome(ratio, headroom):
        return Outcome(status="pass", outputs={"y": {"mismatch_ratio": ratio,
                                                     "worst_over_allowed": headroom}})

    for i, (ratio, headroom) in enumerate([(0.0, 0.5), (0.001, 0.1), (0.0, 0.9)] * 4):
        search.note_near_miss(outcome(ratio, headroom), {"x": {"kind": kind, "scale": i}})
    search.note_near_miss(outcome(1.0, 1.0), {})  # no values: nothing to keep
    scores = [score for score, _ in search.near_misses]
    assert len(scores) == witnesses.NEAR_MISSES and scores[:4] == [(0.001, 0.1)] * 4
    assert scores[4:] == [(0.0, 0.9)] * 4


def _rare_row_sum(case):
    """Fails when the mixed bits of the sum of some row of x have their top 16 bits clear (a
    rare value, about one row in 65,536; zeros apart): cutting the columns changes every row's sum, so
    no cut of them keeps the failing row, while other seeds fail too, the more often the
    more rows a case has."""
    x = SOFTMAX.inputs(case, generator_for(case))["x"].double()
    return any(total != 0 and _mixed(total) >> 48 == 0 for total in x.sum(-1).tolist())


def _mixed(value):
    """The bits of a float64, mixed (Fibonacci hashing): the top bits depend on all of them."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits * 0x9E3779B97F4A7C15 % (1 << 64)


def test_a_size_no_cut_keeps_is_cut_on_a_grown_structure_with_other_values(monkeypatch):
    # From 16,384 rows of 4 columns, the reduction keeps the failing row but no column cut:
    # one row of 4. Redraws on that row fail about once in 65,536 draws; with fewer columns
    # and the rows grown back toward the start's 16,384, one draw in five fails at the
    # largest, and the one found reduces to one row of one column.
    monkeypatch.setattr(witnesses, "REDRAWS", 200)
    monkeypatch.setattr(witnesses, "SMALLER_TRIES", 30)
    start = _wide(4, rows=16384, seed=26)
    assert _rare_row_sum(start)

    def shrunk():
        toy = Toy(_rare_row_sum)
        result = _session(toy, start).run()
        assert toy.fails(result.case) and result.outcome.failed
        return result, toy

    result, toy = shrunk()
    assert SOFTMAX.case_size(result.case) == 1, result.case
    assert any(step.startswith("a failure drawn wider") for step in result.reductions)
    widen = result.passes["widen"]
    assert widen["successes"] == 1 and widen["cases"] <= witnesses.WIDE_DRAWS, widen
    assert len(toy.cases) <= 400, len(toy.cases)
    monkeypatch.setattr(witnesses, "WIDE_DRAWS", 0)
    result, toy = shrunk()
    assert SOFTMAX.case_size(result.case) == 4, result.case  # without it, one row of 4


def _element_clock(monkeypatch, fails):
    """The session's clock made to count the elements run, not seconds: (clock, evaluate),
    where evaluate answers `fails(case)` and moves the clock on by the case's size."""
    import types

    from kfuzz.shrink import passes, session, space

    clock = [0.0]
    ticking = types.SimpleNamespace(perf_counter=lambda: clock[0])
    for module in (session, passes, witnesses, space):
        monkeypatch.setattr(module, "time", ticking)

    def elements_run(case):
        clock[0] += SOFTMAX.case_size(case)
        return fails(case)

    return clock, elements_run


def test_the_first_reduction_leaves_time_for_the_search_on_a_grown_structure(monkeypatch):
    # The session's clock counts the elements run: 800,000 for the whole shrink. Reducing the
    # 65,536-element start to its fixed point takes more; given all of it, the reduction stops
    # with thousands of rows. Given half, it stops earlier, "widen" draws few columns on
    # grown structures, and the failure it finds reduces to one element within the rest.
    from kfuzz.shrink import session

    clock, elements_run = _element_clock(monkeypatch, _rare_row_sum)
    start = _wide(4, rows=16384, seed=26)

    def shrunk():
        clock[0] = 0.0
        toy = Toy(elements_run)
        return ShrinkSession(_space(), toy, start, toy(start), deadline=800_000,
                             shrink_seconds=800_000).run()

    result = shrunk()
    assert SOFTMAX.case_size(result.case) == 1 and result.complete, result.case
    assert result.passes["widen"]["successes"] == 1
    monkeypatch.setattr(session, "FIRST_REDUCE", 1.0)
    result = shrunk()
    assert SOFTMAX.case_size(result.case) > 1000 and not result.complete, result.case
    assert result.passes["widen"]["calls"] == 0  # all of it, and no time left to search


def test_the_first_window_goes_to_the_smaller_start_until_it_is_reduced(monkeypatch):
    # The session's clock counts the elements run. The smallest failure Hypothesis passed
    # through (80 elements) takes most of the first window to reduce; Hypothesis' own result
    # (512 elements) then gets nothing, where an even split of the window would have spent
    # half of it on cases six times larger before the smaller start was done.
    clock, elements_run = _element_clock(monkeypatch, _wide_or_uniform)
    uniform, wide = _wide(40, rows=2, kind="uniform"), _wide(512)

    def run(deadline):
        clock[0] = 0.0
        toy = Toy(elements_run)
        passed = (uniform, toy(uniform))
        result = ShrinkSession(_space(), toy, wide, toy(wide), deadline=deadline,
                               shrink_seconds=deadline, passed_through=passed).run()
        return result, toy.cases[2:]

    # With time enough, both starts are reduced: the smaller one to its fixed point first.
    result, runs = run(FAR * 1000)
    assert result.reductions[0].startswith("from the smallest failure Hypothesis passed")
    assert SOFTMAX.case_size(result.case) == 20 and result.complete
    sizes = [SOFTMAX.case_size(case) for case in runs]
    first_wide = next(i for i, size in enumerate(sizes) if size > 80)
    assert all(size <= 80 for size in sizes[:first_wide])
    # The two starts' own runs put the clock at 592: a deadline of 920 leaves a first window
    # of 164, which the smaller start needs whole. No case of Hypothesis' result runs (an
    # even split ran its 256-element halving), and the smaller start still reaches 20.
    result, runs = run(920)
    assert all(SOFTMAX.case_size(case) <= 80 for case in runs), runs
    assert result.passes["reduce"]["calls"] >= 1
    assert SOFTMAX.case_size(result.case) == 20
