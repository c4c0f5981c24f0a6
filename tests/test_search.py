"""The search loop: finds, shrinks, keeps going, stores every distinct finding."""

from __future__ import annotations

import json

import pytest
from kfuzz.errors import ContractViolation
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.search.batch import BatchSizer
from kfuzz.search.campaign import CampaignConfig, run_campaign


def _run(**kw):
    seen = []
    result = run_campaign(CampaignConfig(**kw), on_finding=seen.append)
    return result, seen


def test_finding_is_reported_raw_then_shrunk_then_peak():
    result, seen = _run(target="ops.softmax", kernel="eager_lowp",
                        comparator={"mode": "exact"}, max_examples=80, seed=2)
    kinds = [f.kind for f in seen]
    assert kinds[0] == "raw" and "shrunk" in kinds
    shrunk = next(f for f in seen if f.kind == "shrunk")
    assert shrunk.replaces == seen[0].fingerprint
    assert shrunk.shrink["size_after"] <= shrunk.shrink["size_before"]
    assert result.examples == 80
    assert result.peak_ratio > 0


@pytest.mark.slow
def test_same_seed_same_campaign():
    a, _ = _run(target="ops.rmsnorm", kernel="eager_lowp", max_examples=60, seed=11)
    b, _ = _run(target="ops.rmsnorm", kernel="eager_lowp", max_examples=60, seed=11)
    assert [f.fingerprint for f in a.findings] == [f.fingerprint for f in b.findings]
    assert a.examples == b.examples == 60


@pytest.mark.slow
def test_search_continues_after_a_finding_and_stores_distinct_buckets():
    # A kernel that is wrong on y for every case and raises on wide rows: two buckets.
    result, _ = _run(target="ops.softmax", kernel="tests.helpers_kernels:softmax_two_faults",
                     max_examples=150, seed=0, batch=1)
    failures = {f.failure for f in result.findings if f.kind == "shrunk"}
    assert failures == {"mismatch", "error"}
    assert result.rounds >= 3
    error = next(f for f in result.findings if f.failure == "error")
    assert error.case["shape"][1] == 100  # shrunk to the smallest width that raises
    assert "ValueError: too wide" in error.outcome.error


def test_the_batch_grows_when_cases_are_cheap_and_stays_fixed_when_asked():
    cheap, _ = _run(target="ops.softmax", kernel="eager_fp32", max_examples=300, seed=1,
                    pins={"shape": [1, 8]})
    assert cheap.batch > 4 and cheap.batch_mean > 2
    assert cheap.examples == 300
    fixed, _ = _run(target="ops.softmax", kernel="eager_fp32", max_examples=40, seed=1, batch=3)
    assert 2.5 <= fixed.batch_mean <= 3  # the last example is cut to the cases left


def test_batch_sizer_keeps_hypothesis_share_near_a_tenth_and_follows_the_case():
    sizer = BatchSizer(largest=1000, elements=lambda case: case["n"])
    sizes = {n: sizer.size_for({"n": n}) for n in (8, 24_576, 200_000)}
    assert sizes[8] > sizes[24_576] > sizes[200_000] >= 1
    def share(n: int, size: int) -> float:
        case_s = BatchSizer.CASE_S + BatchSizer.ELEMENT_S * n
        return BatchSizer.HYPOTHESIS_S / (BatchSizer.HYPOTHESIS_S + size * case_s)

    for n, size in sizes.items():
        # The smallest batch that keeps Hypothesis' share under a tenth.
        assert share(n, size) <= 0.1 + 1e-9 and (size == 1 or share(n, size - 1) > 0.1)
    assert BatchSizer(largest=32, elements=lambda case: 8).size_for({}) == 32
    assert BatchSizer(5).size_for({"n": 8}) == 5
    assert BatchSizer(elements=lambda case: None).size_for({}) == 1


def test_batches_shrink_to_one_case_that_fails_on_its_own():
    result, _ = _run(target="ops.softmax", kernel="eager_lowp", comparator={"mode": "exact"},
                     max_examples=160, seed=5, batch=8)
    shrunk = [f for f in result.findings if f.kind == "shrunk"]
    assert shrunk
    executor = InProcessExecutor()
    for finding in shrunk:
        # One case, not the batch it came in: replayed alone it fails the same way.
        assert isinstance(finding.case, dict) and "seed" in finding.case
        alone = executor.evaluate([Job(finding.target, finding.kernel, finding.oracle,
                                       finding.case, finding.comparator)])[0]
        assert alone.failed
        assert alone.buckets() == finding.outcome.buckets()
    assert result.examples >= 40


def test_time_budget_ends_the_search():
    # No example limit and a case space Hypothesis cannot exhaust in a second: only the
    # budget can end this search.
    result, _ = _run(target="ops.softmax", kernel="eager_fp32", budget=1.0, seed=0)
    assert result.stopped == "budget"
    assert result.examples > 0
    assert result.seconds >= 1.0


def test_kernel_breaking_its_contract_aborts_with_the_error():
    with pytest.raises(ContractViolation):
        _run(target="ops.softmax", kernel="tests.helpers_kernels:softmax_wrong_dtype",
             max_examples=5)


class _Recording(InProcessExecutor):
    def __init__(self):
        super().__init__()
        self.cases = []

    def evaluate(self, jobs):
        self.cases += [j.case for j in jobs]
        return super().evaluate(jobs)


def test_a_budget_run_reaches_hypothesis_targeting_phase_and_runs_no_case_twice(monkeypatch):
    # A budget run goes in rounds of ROUND_EXAMPLES, each with Hypothesis' targeting phase
    # (which climbs the feedback scores); a later round's repeats of earlier cases are skipped.
    from hypothesis.internal.conjecture import engine
    from kfuzz.search import campaign as search

    phases = []
    original = engine.ConjectureRunner.optimise_targets

    def recording(self, **kw):
        phases.append(self.call_count)
        return original(self, **kw)

    monkeypatch.setattr(engine.ConjectureRunner, "optimise_targets", recording)
    monkeypatch.setattr(search, "ROUND_EXAMPLES", 40)
    executor = _Recording()
    result = run_campaign(CampaignConfig(target="ops.softmax", kernel="eager_fp32", budget=4.0,
                                         seed=3, batch=1, pins={"shape": [2, 3]}),
                          executor=executor)
    assert result.rounds >= 2 and phases  # several rounds, and targeting ran
    keys = [repr(sorted(c.items())) for c in executor.cases]
    assert len(keys) == len(set(keys)) == result.examples  # no case run twice


def _new_draw_share(cases):
    """The share of cases that differ from the case before them in at least half of their
    fields, the seed not counted (bench/draws.py's measure)."""
    fields = [{k: repr(v) for k, v in c.items() if k != "seed"} for c in cases]
    new = sum(2 * sum(a.get(k) != b.get(k) for k in a.keys() | b.keys()) >= len(b)
              for a, b in zip(fields, fields[1:], strict=False))
    return new / (len(cases) - 1)


def test_rounds_alternate_fresh_draws_and_hypothesis_generation(monkeypatch):
    # The first round draws every example anew; the second is Hypothesis' own generation,
    # where most cases are mutations of an earlier one or hill-climbing steps.
    from kfuzz.search import campaign as search
    from kfuzz.search import fresh

    assert fresh.AVAILABLE and fresh.fresh_settings() == {"backend": "kfuzz-fresh"}
    monkeypatch.setattr(search, "ROUND_EXAMPLES", 80)
    executor = _Recording()
    result = run_campaign(CampaignConfig(target="ops.softmax", kernel="eager_fp32",
                                         max_examples=160, seed=1, batch=1),
                          executor=executor)
    assert result.rounds == 2 and not result.findings and len(executor.cases) == 160
    fresh_share = _new_draw_share(executor.cases[:80])
    hypothesis_share = _new_draw_share(executor.cases[80:])
    assert fresh_share >= 0.8 > 0.5 > hypothesis_share, (fresh_share, hypothesis_share)


# -- the shrink session and the search for a smaller failure, as a campaign builds them -------

WIDE_OR_ONE_SIDED = "tests.helpers_kernels:softmax_wrong_when_wide_or_one_sided"


def _space(target_name, pins=None, seed=0):
    """The case space a campaign on `target_name` shrinks in: its cases with `pins` held,
    stamped, drawn anew in fresh draws."""
    from kfuzz.cases.materialise import stamp
    from kfuzz.search.fresh import fresh_settings
    from kfuzz.shrink.space import CaseSpace
    from kfuzz.targets.registry import get

    target = get(target_name)
    pins = dict(pins or {})

    def cases(max_numel):
        return target.cases(max_numel).map(lambda case: stamp({**case, **pins}))

    return CaseSpace(target, cases, max_numel=target.max_numel, pins=pins, seed=seed,
                     fresh=fresh_settings())


def _runner(target_name, kernel=None):
    """An evaluate callable running cases of `target_name` with `kernel` (the target's default
    when None) against its default oracle; None for a case that cannot run."""
    from kfuzz.errors import KfuzzError
    from kfuzz.targets.registry import get

    target = get(target_name)
    executor = InProcessExecutor()

    def evaluate(case):
        job = Job(target_name, kernel or target.default_kernel, target.default_oracle, case)
        try:
            return executor.evaluate([job])[0]
        except KfuzzError:
            return None

    return evaluate


def _shrunk(case, shrink_seconds, passed_through=None):
    """The session's result for `case` (and the failure Hypothesis passed through) on a
    softmax that is wrong on wide or one-sided rows, with the time a campaign would give it."""
    import time

    from kfuzz.shrink.session import ShrinkSession

    evaluate = _runner("ops.softmax", WIDE_OR_ONE_SIDED)
    outcome = evaluate(case)
    assert outcome.failed
    if passed_through is not None:
        passed_through = (passed_through, evaluate(passed_through))
        assert passed_through[1].failed
    session = ShrinkSession(_space("ops.softmax"), evaluate, case, outcome,
                            deadline=time.perf_counter() + shrink_seconds,
                            shrink_seconds=shrink_seconds, passed_through=passed_through)
    return session.run()


@pytest.mark.slow
def test_the_size_pass_also_starts_from_the_smallest_failure_hypothesis_passed_through():
    # Hypothesis keeps the simplest choices, not the smallest case: here it ends on a plain
    # normal at 512 columns after passing through a one-sided failure at 40.
    from kfuzz.cases.materialise import stamp

    one_sided = stamp({"shape": [2, 40], "dtype": "bfloat16",
                       "x": {"kind": "uniform", "low": 0.0, "high": 1.0}, "seed": 3})
    wide = stamp({"shape": [1, 512], "dtype": "bfloat16",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    shrunk = _shrunk(wide, shrink_seconds=20, passed_through=one_sided)
    assert shrunk.case["shape"] == [1, 20] and shrunk.case["x"]["kind"] == "uniform"
    assert "smallest failure Hypothesis passed through" in shrunk.reductions[0]


@pytest.mark.slow
def test_a_smaller_failure_with_other_values_is_searched_for_after_the_reductions():
    # Cut down, the wide normal case stops at 400 columns; a one-sided case fails from 20, and
    # no reduction of the normal one reaches it: the search for a smaller failure does.
    from kfuzz.cases.materialise import stamp
    from kfuzz.targets.registry import get

    wide = stamp({"shape": [4, 1024], "dtype": "bfloat16",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    shrunk = _shrunk(wide, shrink_seconds=30)
    assert get("ops.softmax").case_size(shrunk.case) <= 40, shrunk.case
    assert any(step.startswith("a smaller failure drawn") for step in shrunk.reductions)
    assert shrunk.passes["redraw"]["successes"] + shrunk.passes["draw"]["successes"] >= 1


def test_values_are_redrawn_at_a_smaller_size_of_the_case_in_hand(monkeypatch):
    # At 384 columns (3/4 of 512) or 256 only one-sided values fail: the redraw keeps a shape
    # cut and takes values from fresh draws until a one-sided case turns up (no structures of
    # the space below the size here: the cuts alone).
    import time

    from kfuzz.cases.materialise import stamp
    from kfuzz.shrink import witnesses

    monkeypatch.setattr(witnesses, "BAND", 0)

    evaluate = _runner("ops.softmax", WIDE_OR_ONE_SIDED)
    wide = stamp({"shape": [1, 512], "dtype": "bfloat16",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    outcome = evaluate(wide)
    assert outcome.failed
    search = witnesses.WitnessSearch(_space("ops.softmax", pins={"dtype": "bfloat16"}), evaluate,
                                     outcome.buckets())
    found = search.redraw_smaller(wide, time.perf_counter() + 600, seed=0)
    assert found is not None
    case, got = found
    # A cut by a quarter or by half, values other than the normal ones the case failed with.
    assert case["shape"] in ([1, 384], [1, 256]) and case["x"] != wide["x"], case
    assert case["dtype"] == "bfloat16" and got.failed
    assert got.buckets() & outcome.buckets()


def test_structures_just_below_the_size_are_drawn_from_the_case_space():
    import time

    from kfuzz.shrink import witnesses
    from kfuzz.targets.registry import get

    search = witnesses.WitnessSearch(_space("dsv4.sparse_attn"), lambda case: None, set())
    size = 3000
    band = search.band(size, time.perf_counter() + 600, seed=0)
    sizes = [get("dsv4.sparse_attn").case_size(case) for case in band]
    assert len(band) == witnesses.BAND, len(band)
    assert all(size / 2 <= s < size for s in sizes), sizes
    assert len({json.dumps(case, sort_keys=True) for case in band}) == len(band)


def test_kinds_of_redraw_that_gave_smaller_failures_get_more_of_the_draws(monkeypatch):
    import time

    from kfuzz.cases.materialise import stamp
    from kfuzz.shrink import witnesses

    # A count of draws, not a time, ends the redraws: the shares hold on a loaded machine.
    monkeypatch.setattr(witnesses, "REDRAWS", 300)

    search = witnesses.WitnessSearch(_space("ops.softmax"), _runner("ops.softmax"),
                                     {"no such bucket"})
    # Cuts with fresh values gave three smaller failures so far, the other kinds none.
    search.record[("cut", "fresh")] = witnesses.KindRecord(draws=0, halvings=3)
    wide = stamp({"shape": [4, 256], "dtype": "float32",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    got = search.redraw_smaller(wide, time.perf_counter() + 600, seed=0)
    assert got is None
    draws = {kind: record.draws for kind, record in search.record.items()}
    assert set(draws) == set(witnesses.KINDS)
    assert draws[("cut", "own")] > 20
    for kind, n in draws.items():
        share = 4 if kind == ("cut", "fresh") else 1
        assert abs(n - share * draws[("cut", "own")]) <= share, draws


def test_the_value_settings_that_came_closest_to_failing_are_drawn_again(monkeypatch):
    import time

    from kfuzz.cases.materialise import stamp
    from kfuzz.execute.executor import Outcome
    from kfuzz.shrink import witnesses

    def outcome(ratio, headroom):
        return Outcome(status="pass", outputs={"y": {"mismatch_ratio": ratio,
                                                     "worst_over_allowed": headroom}})

    search = witnesses.WitnessSearch(_space("ops.softmax"), _runner("ops.softmax"),
                                     {"no such bucket"})
    # Kept: the largest mismatch ratio first, then the largest error against what is allowed.
    for i, (ratio, headroom) in enumerate([(0.0, 0.5), (0.001, 0.1), (0.0, 0.9)] * 4):
        search.note_near_miss(outcome(ratio, headroom), {"x": {"kind": "normal", "scale": i}})
    scores = [score for score, _ in search.near_misses]
    assert len(scores) == witnesses.NEAR_MISSES and scores[:4] == [(0.001, 0.1)] * 4
    assert scores[4:] == [(0.0, 0.9)] * 4
    # Near draws carry those settings, with seeds of their own, on structures below the size.
    seen = []

    def recording(case):
        seen.append(case)  # and cannot run: no near miss of its own

    search = witnesses.WitnessSearch(_space("ops.softmax"), recording, {"no such bucket"})
    search.note_near_miss(outcome(0.001, 0.1), {"x": {"kind": "uniform", "low": 7.0, "high": 8.0}})
    monkeypatch.setattr(witnesses, "REDRAWS", 140)  # a count of draws, not a time
    wide = stamp({"shape": [4, 256], "dtype": "float32",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    search.redraw_smaller(wide, time.perf_counter() + 600, seed=0)
    near = [c for c in seen if c["x"].get("low") == 7.0]
    assert len(near) >= len(seen) // 7 - 1 and len({c["seed"] for c in near}) > 1
    assert all(c["shape"][0] * c["shape"][1] < 1024 for c in near)


@pytest.mark.usefixtures("default_sigint")
def test_an_interrupt_swallowed_where_python_ignores_exceptions_still_stops_the_campaign():
    # Ctrl-C raised inside a garbage-collector callback is printed and dropped by Python; the
    # handler's note of it stops the campaign at its next case all the same.
    import signal

    class Swallowing(InProcessExecutor):
        calls = 0

        def evaluate(self, jobs):
            Swallowing.calls += 1
            if Swallowing.calls == 5:
                try:
                    signal.raise_signal(signal.SIGINT)
                except KeyboardInterrupt:
                    pass  # dropped, as Python drops it in a callback
            return super().evaluate(jobs)

    config = CampaignConfig(target="ops.softmax", kernel="eager_fp32", budget=60, seed=0,
                            batch=1)
    result = run_campaign(config, executor=Swallowing())
    assert result.stopped == "interrupted" and result.examples <= 6  # the next case is not run


def test_hypothesis_shrink_pass_ends_when_it_finds_no_smaller_failure(monkeypatch):
    import kfuzz.search.campaign as campaign

    # No patience at all: Hypothesis' pass ends at its first try, and the size-directed pass
    # shrinks the failure with the rest of the time.
    monkeypatch.setattr(campaign, "HYPOTHESIS_PATIENCE", 0.0)
    _, seen = _run(target="ops.softmax", kernel="eager_lowp", comparator={"mode": "exact"},
                   max_examples=80, seed=2, shrink_seconds=600)
    shrunk = next(f for f in seen if f.kind == "shrunk")
    assert shrunk.shrink["hypothesis"] == "stalled" and shrunk.shrink["complete"]
    # Hypothesis kept only the failure it was given; the size-directed pass made it smaller.
    assert shrunk.shrink["steps"] == 1 + len(shrunk.shrink["reductions"])
    assert shrunk.shrink["size_hypothesis"] == shrunk.shrink["size_before"]
    assert shrunk.shrink["reductions"]
    assert shrunk.shrink["size_after"] < shrunk.shrink["size_hypothesis"]
    # Patient enough: Hypothesis' pass runs to its end.
    monkeypatch.setattr(campaign, "HYPOTHESIS_PATIENCE", 1.0)
    _, seen = _run(target="ops.softmax", kernel="eager_lowp", comparator={"mode": "exact"},
                   max_examples=80, seed=2, shrink_seconds=600)
    shrunk = next(f for f in seen if f.kind == "shrunk")
    assert shrunk.shrink["hypothesis"] == "complete"
