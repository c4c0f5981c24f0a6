"""Plain draws: a share of every campaign samples the base space as a hand-written random test
does (sizes uniform over their range, no regime), so that kfuzz is never far worse than
uniform sampling on a fault its regimes rarely reach."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.search.drawn import PLAIN_SHARE, campaign_cases
from kfuzz.targets import registry

RUN = settings(max_examples=600, database=None, derandomize=True, deadline=None,
               phases=[Phase.generate], suppress_health_check=list(HealthCheck))


def _collect(strategy, plain_mode: bool) -> list:
    out = []

    @RUN
    @given(st.data())
    def draw(data):
        with fst.plain_draws(plain_mode):
            out.append(data.draw(strategy))

    draw()
    return out


def test_plain_sizes_are_uniform_over_the_range_regular_ones_favour_small_and_edges():
    middle = range(300, 701)  # 40% of [1, 1000]
    plain = _collect(fst.sides(min_side=1, max_side=1000), True)
    regular = _collect(fst.sides(min_side=1, max_side=1000), False)
    share = sum(s in middle for s in plain) / len(plain)
    # Hypothesis' integers lean toward small values and bounds: about 25% land here, not 40%.
    assert share > 0.2, share
    assert sum(s in middle for s in regular) / len(regular) < share / 2


def test_plain_descriptions_and_shapes_carry_no_regime():
    dists = _collect(fst.distributions(specials=fst.SPECIALS), True)
    assert not any(set(d) & {*fst.REGIMES, "nonfinite"} for d in dists)
    shapes = _collect(fst.shapes(fst.Dim(1, 64), fst.Dim(1, 4096), max_numel=1 << 18), True)
    assert [64, 4096] not in shapes  # the production regime is off
    index = _collect(fst.sparse_index_sets(max_rows=4096, max_k=512), True)
    assert sum(i["k"] == 512 for i in index) < len(index) / 20  # no full-size regime


def test_a_campaign_draws_about_one_case_in_plain_share_plainly():
    # dsv4.sparse_attn's production regime (3 cases in 16 regular ones) is off in plain draws:
    # the production-size cases drop by the plain share.
    target = registry.get("dsv4.sparse_attn")
    cases = []

    @RUN
    @given(campaign_cases(target, target.max_numel, {}, ()))
    def draw(case):
        cases.append(case)

    draw()
    regimes = sum(bool(fst.regimes_in(c) - {"padding_split", "padding_holes"}) for c in cases)
    assert regimes / len(cases) < 1 - 1 / (2 * PLAIN_SHARE)
