"""Shrinking a large failing case: a session started from over 100,000 elements ends under
1,000 when a small failing case exists, within what the default shrink time allows. Counted
in runs and in elements run, never in seconds, so that a loaded machine gives the same answer:
the session is given a deadline no test reaches, and the work it did is what is checked."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from kfuzz.cases.materialise import stamp
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.search.fresh import fresh_settings
from kfuzz.settings import PROFILES
from kfuzz.shrink import passes
from kfuzz.shrink.session import ShrinkSession
from kfuzz.shrink.space import CaseSpace
from kfuzz.targets import registry
from kfuzz.targets.registry import Variant, get, register

FAR = 600.0  # seconds: a deadline no test reaches
# Elements a shrink may run within the default profile's shrink time: the session has at
# least half of it (Hypothesis' own pass the rest), and on a loaded 2-core CPU an attention
# case of this target runs at no less than about a million elements a second (kernel, float64
# oracle and comparison together).
ELEMENTS_PER_SECOND = 1_000_000
ELEMENT_BUDGET = int(PROFILES["dev"].shrink_seconds / 2 * ELEMENTS_PER_SECOND)


def last_row_unmasked(q, k, v, *, causal, scale):
    """Causal attention whose last query row sees every key when there are more keys than
    queries (the row's causal mask lost): wrong on Lq = 1, Lk = 2 and on every larger such
    case."""
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    lq, lk = s.shape[-2], s.shape[-1]
    if causal:
        mask = torch.ones(lq, lk, dtype=torch.bool).tril()
        if lq < lk:
            mask[-1] = True
        s = s.masked_fill(~mask, float("-inf"))
    return (s.softmax(-1) @ v.float()).to(q.dtype)


TARGET = dataclasses.replace(get("ops.sdpa"), name="test.sdpa_last_row",
                             kernels={"last_row": Variant("last_row", last_row_unmasked)},
                             default_kernel="last_row")


@pytest.fixture
def sdpa_registered(monkeypatch):
    """test.sdpa_last_row in the registry for one test only."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    register(TARGET)


class Counted:
    """The session's evaluate callable: runs a case in-process and counts the cases and
    elements it ran."""

    def __init__(self):
        self.executor = InProcessExecutor()
        self.cases = 0
        self.elements = 0

    def __call__(self, case):
        self.cases += 1
        self.elements += TARGET.case_size(case)
        return self.executor.evaluate([Job(TARGET.name, "last_row", "fp64", case)])[0]


def _session(start, counted):
    space = CaseSpace(TARGET, lambda max_numel: TARGET.cases(max_numel).map(stamp),
                      max_numel=TARGET.max_numel, fresh=fresh_settings())
    return ShrinkSession(space, counted, start, counted(start),
                         deadline=time.perf_counter() + FAR, shrink_seconds=FAR, seed=0)


def _start(shape):
    return stamp({"shape": shape, "dtype": "float16", "causal": True,
                  "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
                  "seed": 7})


@pytest.mark.parametrize("shape", [[1, 4, 100, 180, 64], [2, 3, 251, 257, 40]])
def test_a_large_case_shrinks_under_a_thousand_elements_within_the_shrink_time(
        sdpa_registered, shape):
    start = _start(shape)
    assert TARGET.case_size(start) > 100_000
    counted = Counted()
    result = _session(start, counted).run()
    assert result.outcome.failed and counted(result.case).failed
    assert TARGET.case_size(result.case) < 1_000
    b, h, lq, lk, _ = result.case["shape"]
    assert lq < lk  # the fault's condition held all the way down
    # The work done fits the shrink time: elements run, the start's own run included.
    assert counted.elements <= ELEMENT_BUDGET, counted.elements


def test_a_kept_cut_is_pushed_further_by_doubling_steps(monkeypatch):
    # A failure needing at least 3,000 columns, reached from 4,096: cut by a 32nd, then one
    # step at a time, each kept cut a restart of the pass; doubling the step of a kept cut,
    # then bisecting, runs a few cases per halving of what is left to cut. (Most runs of
    # either go to the reductions tried at the fixed point: simplifications, inner cuts,
    # other seeds.)
    target = get("ops.softmax")
    case = stamp({"shape": [1, 4096], "dtype": "float32",
                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0})
    runs = []

    def fails(c):
        runs.append(c)
        return c["shape"][1] >= 3000 and c["shape"][0] == 1

    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert result.case["shape"] == [1, 3000]
    assert any(step.endswith("(gallop)") for step in result.steps)
    assert len(runs) <= 250, len(runs)
    monkeypatch.setattr(passes, "_gallop", lambda target, before, result, f, size, d: size)
    runs.clear()
    assert passes.shrink(target, case, fails, deadline=float("inf")).case["shape"] == [1, 3000]
    assert len(runs) > 500  # without it, many more runs to the same case


def _sparse_case(n_rows, k, *, window=0, ragged=False, seed=11):
    """A dsv4.sparse_attn case, one token and head, n_valid = k, no duplicates."""
    normal = {"kind": "normal", "scale": 1.0}
    return stamp({"shape": [1, 1, 64], "index": {
        "n_rows": n_rows, "k": k, "n_valid": k, "window": window, "ragged": ragged,
        "duplicates": False, "sorted": False, "out_of_range": False},
        "q": normal, "kv": normal, "sink": normal, "seed": seed})


def test_a_failure_on_two_named_rows_moves_to_a_cache_of_two_shared_rows():
    # Fails while the token has more than 64 valid slots (two tiles) and two cache rows it
    # names (its 3rd and 6th picks) keep their values, each named by some slot: without
    # duplicates the cache needs a row per slot, and a cut of the cache drops or renames
    # rows. With the two rows kept bit for bit and shared by every slot, the cache is two
    # rows.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = _sparse_case(n_rows=300, k=70)
    inputs = target.inputs(case, generator_for(case))
    named = inputs["indices"][0][[2, 5]].long()
    wanted = inputs["kv"][named]

    def fails(c):
        got = target.inputs(c, generator_for(c))
        idx = got["indices"][0]
        rows = got["kv"][idx[idx >= 0].long()]
        return int((idx >= 0).sum()) > 64 and all(
            bool((rows == row).all(-1).any()) for row in wanted)

    assert fails(case)
    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert fails(result.case)
    spec = result.case["index"]
    assert spec["n_rows"] == 2 and spec["duplicates"], spec
    assert any("sharing rows" in step for step in result.steps)
    assert target.case_size(result.case) < target.case_size(case) // 50


def test_a_cache_far_larger_than_its_named_rows_is_cut_to_them_in_one_run():
    # Fails while every slot reads the very row it read at the start (a weight on a rounding
    # tie needs its own row and the row holding its tile's maximum). The slots name 12 of
    # 3,000 cache rows: the cut to the named rows, kept bit for bit and in their order, keeps
    # every slot's row; cuts from the front or of blocks inside the cache take a run per block
    # (thousands of runs) and stop at a fixed point with over a hundred rows.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = _sparse_case(n_rows=3000, k=12, window=2, seed=3)

    def read(c):
        inputs = target.inputs(c, generator_for(c))
        return inputs["kv"][inputs["indices"][0].long()]

    wanted = read(case)
    runs = []

    def fails(c):
        runs.append(c)
        got = read(c)
        return got.shape == wanted.shape and bool((got == wanted).all())

    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert fails(result.case)
    assert result.case["index"]["n_rows"] == 12, result.case["index"]
    assert "index.n_rows 3000->12 keeping the rows named" in result.steps
    assert len(runs) <= 500, len(runs)


def test_a_ragged_token_keeps_its_length_while_its_slots_are_cut(monkeypatch):
    # Fails while the cache keeps its 600 rows (a fault that needs a large cache) and the
    # token's valid slots read, in order, the rows they read at the start. A ragged set draws
    # the token's length below n_valid + 1, so a cut of n_valid (or of k below it) draws
    # another length and fails: k stays at 500 for a token of 28 valid slots. The same set
    # without ragged, n_valid at the token's length, builds the same indices, and from there
    # k comes down to those 28 slots.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = _sparse_case(n_rows=600, k=500, ragged=True, seed=13)

    def read(c):
        inputs = target.inputs(c, generator_for(c))
        idx = inputs["indices"][0]
        return inputs["kv"][idx[idx != -1].long()]

    wanted = read(case)
    assert len(wanted) == 28
    runs = []

    def fails(c):
        runs.append(c)
        got = read(c)
        return (c["index"]["n_rows"] == 600 and got.shape == wanted.shape
                and bool((got == wanted).all()))

    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert fails(result.case)
    spec = result.case["index"]
    assert (spec["k"], spec["n_valid"], spec["ragged"]) == (28, 28, False), spec
    assert "index.ragged off with n_valid 500->28 (every token's length)" in result.steps
    assert len(runs) <= 1000, len(runs)
    monkeypatch.setattr(passes, "even_lengths", lambda target, case: iter(()))
    before = passes.shrink(target, case, fails, deadline=float("inf")).case["index"]
    assert before["k"] == 500 and before["ragged"], before  # without it, every slot stays


def test_a_failure_on_two_rows_of_one_tile_moves_to_those_rows_each_with_a_slot():
    # Fails while two rows the token names past its first 64 slots (the second tile) are
    # still named in one tile of 64 slots, the second one holding that tile's highest score,
    # and no two slots share a row: a weight on a rounding tie measured against its tile's
    # maximum. A cut of any other row moves a slot across the tile edge, and the rows sit past
    # the first few a shrink pairs up early; the block of slots the second tile holds, then
    # the pair with a slot each, reaches the two rows.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = _sparse_case(n_rows=120, k=100, seed=5)

    def read(c):
        inputs = target.inputs(c, generator_for(c))
        idx = inputs["indices"][0].long()
        rows = inputs["kv"][idx.clamp(min=0)].float()
        scores = rows @ inputs["q"][0, 0].float()
        return idx, rows, scores

    idx, rows, scores = read(case)
    tie = rows[70]
    top = rows[64 + int(scores[64:].argmax())]

    def fails(c):
        if c["index"]["duplicates"]:
            return False
        idx, got, scores = read(c)
        at = [int(i) for i in range(len(idx)) if idx[i] >= 0 and (got[i] == tie).all()]
        high = [int(i) for i in range(len(idx)) if idx[i] >= 0 and (got[i] == top).all()]
        if not at or not high or at[0] // 64 != high[0] // 64:
            return False
        tile = slice(at[0] // 64 * 64, at[0] // 64 * 64 + 64)
        return bool(scores[tile][idx[tile] >= 0].max() == scores[high[0]])

    assert fails(case)
    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert fails(result.case)
    spec = result.case["index"]
    assert (spec["n_rows"], spec["k"]) == (2, 2), spec
    assert any("a slot each" in step or "keeping the rows slots" in step
               for step in result.steps), result.steps


def test_a_failure_on_a_few_rows_together_moves_to_four_of_them():
    # Fails with the whole cache of 10 rows, and with four rows two of which are the token's
    # first and last picks: a weight on a tie and the maximum it is measured against, with
    # the output's magnitude (and so its error class) kept only by some sets of rows. No one
    # row can go alone (9 rows pass), so no cut of one row or block keeps it; four rows kept
    # bit for bit, each with a slot of its own, do.
    from kfuzz.cases.materialise import generator_for

    target = get("dsv4.sparse_attn")
    case = _sparse_case(n_rows=10, k=10, seed=3)

    def named(c):
        inputs = target.inputs(c, generator_for(c))
        idx = inputs["indices"][0]
        return inputs["kv"][idx[idx >= 0].long()].float()

    rows = named(case)
    first, last = rows[0], rows[-1]

    def fails(c):
        got = named(c)
        return (len(torch.unique(got, dim=0)) in (4, 10) and bool((got == first).all(-1).any())
                and bool((got == last).all(-1).any()))

    assert fails(case)
    result = passes.shrink(target, case, fails, deadline=float("inf"))
    assert fails(result.case)
    assert result.case["index"]["n_rows"] == 4, result.steps
    assert any("4 keeping rows" in step and "a slot each" in step for step in result.steps)
