"""Strategies: bounds hold, shrinking heads for the small case, arguments validated when built."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_shapes_respect_bounds_multiples_and_max_numel(data):
    shape = data.draw(fst.shapes(fst.Dim(1, 64), 3, fst.Dim(2, 4096, multiple_of=32),
                                 max_numel=20_000))
    rows, fixed, cols = shape
    assert 1 <= rows <= 64 and fixed == 3 and 32 <= cols <= 4096 and cols % 32 == 0
    assert math.prod(shape) <= 20_000


def test_shapes_shrink_to_the_smallest_shape():
    shape = find(fst.shapes(fst.Dim(1, 64), fst.Dim(8, 512, multiple_of=8), max_numel=1 << 16),
                 lambda s: True)
    assert shape == [1, 8]


def test_wide_sides_reach_both_small_and_large_sizes():
    seen = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(fst.sides(min_side=1, max_side=8192))
    def collect(n):
        seen.append(n)

    collect()
    assert min(seen) <= 8 and max(seen) >= 2048


@settings(max_examples=200, deadline=None)
@given(fst.distributions(allow_nonfinite=True))
def test_distributions_are_plain_json(dist):
    assert json.loads(json.dumps(dist, allow_nan=False)) == dist
    assert dist["kind"] in fst.DISTRIBUTION_KINDS


def test_distributions_shrink_toward_a_unit_normal():
    assert find(fst.distributions(), lambda d: True) == {"kind": "normal", "scale": 1.0}


def test_uniform_ranges_include_one_sided_ones():
    lows = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(fst.distributions(kinds=("uniform",)))
    def collect(d):
        assert d["high"] > d["low"]
        lows.append(d["low"])

    collect()
    assert any(low >= 0 for low in lows) and any(low < 0 for low in lows)


@settings(max_examples=100, deadline=None)
@given(fst.sparse_index_sets(max_rows=300, max_k=64))
def test_sparse_index_sets_are_consistent(spec):
    assert 0 <= spec["n_valid"] <= spec["k"] <= 64
    assert 0 <= spec["window"] <= spec["k"]
    assert 1 <= spec["n_rows"] <= 300


def test_sparse_index_sets_shrink_to_a_plain_one_slot_set():
    spec = find(fst.sparse_index_sets(max_rows=10, max_k=8), lambda s: True)
    assert spec == {"n_rows": 1, "k": 1, "n_valid": 1, "window": 0, "ragged": False,
                    "duplicates": False, "sorted": False, "out_of_range": False}


def test_sparse_index_sets_are_often_full_size():
    full = []

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(fst.sparse_index_sets(max_rows=4096, max_k=512))
    def collect(spec):
        full.append(spec["k"] == spec["n_valid"] == 512 and spec["n_rows"] >= 512)

    collect()
    assert sum(full) >= 20


def test_valid_lengths_shrink_to_full():
    assert find(fst.valid_lengths(max_length=7), lambda n: True) == 7


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fst.sides(min_side=10, max_side=5), "max_side=5 < min_side=10"),
        (lambda: fst.sides(min_side=3, max_side=5, multiple_of=8),
         "no multiple of 8 in [3, 5]; widen the bounds"),
        (lambda: fst.sides(multiple_of=0), "multiple_of=0 must be >= 1"),
        (lambda: fst.shapes(fst.Dim(64, 64), fst.Dim(64, 64), max_numel=100),
         "the smallest shape has 4096 elements, over max_numel=100"),
        (lambda: fst.dtypes(["float8"]), "unknown dtype 'float8'"),
        (lambda: fst.dtypes([]), "dtypes() needs at least one option"),
        (lambda: fst.distributions(kinds=("cauchy",)), "unknown distribution kind 'cauchy'"),
        (lambda: fst.distributions(min_scale_exp=3, max_scale_exp=1),
         "min_scale_exp=3 > max_scale_exp=1; swap them"),
        (lambda: fst.sparse_index_sets(max_rows=4, max_k=4, max_window=-1),
         "max_window=-1 must be >= 0"),
        (lambda: fst.sparse_index_sets(max_rows=4, max_k=0), "max_k=0 must be >= 1"),
        (lambda: fst.valid_lengths(max_length=-1), "max_length=-1 must be >= 0"),
    ],
    ids=["inverted-sides", "no-multiple", "multiple-zero", "numel-too-small", "bad-dtype",
         "no-dtypes", "bad-kind", "inverted-scales", "negative-window", "zero-k", "negative-length"],
)
def test_arguments_are_validated_when_built(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value).startswith(message)
