"""Materialise: same case, same bits; every distribution lands where it says."""

from __future__ import annotations

import pytest
import torch
from kfuzz.cases.materialise import dtype_of, generator, sparse_indices, values
from kfuzz.errors import CaseError

DISTS = [
    {"kind": "normal", "scale": 4.0},
    {"kind": "uniform", "low": 2.0, "high": 3.0},
    {"kind": "log_uniform", "min_exp": -3, "max_exp": 5, "signed": False},
    {"kind": "outliers", "scale": 1.0, "fraction": 0.1, "magnitude": 4096.0},
    {"kind": "constant_rows", "value": 5.0, "fraction": 1.0},
    {"kind": "edge", "edge": "overflow", "spread": 1},
    {"kind": "edge", "edge": "underflow", "spread": 2},
    {"kind": "edge", "edge": "subnormal", "spread": 0},
]


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d["kind"] + d.get("edge", ""))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_same_seed_same_bits_other_seed_other_bits(dist, dtype):
    a = values(generator(5), [8, 64], dtype, dist)
    b = values(generator(5), [8, 64], dtype, dist)
    c = values(generator(6), [8, 64], dtype, dist)
    assert a.dtype == dtype and a.shape == (8, 64)
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    if dist["kind"] != "constant_rows":
        assert not torch.equal(a.view(torch.int16), c.view(torch.int16))


def test_distributions_land_where_they_say():
    g = generator(0)
    u = values(g, [4096], torch.float32, DISTS[1])
    assert 2.0 <= u.min() and u.max() <= 3.0
    lu = values(g, [4096], torch.float32, DISTS[2])
    assert lu.min() >= 2.0**-3 * 0.99 and lu.max() <= 2.0**5 * 1.01
    out = values(g, [4096], torch.float32, DISTS[3])
    assert 200 < (out.abs() == 4096).sum() < 600
    const = values(g, [4, 16], torch.float32, DISTS[4])
    assert (const == 5.0).all()
    info = torch.finfo(torch.bfloat16)
    over = values(g, [4096], torch.bfloat16, DISTS[5]).float().abs()
    assert over.min() >= info.max / 4 and torch.isfinite(over).all()
    sub = values(g, [4096], torch.bfloat16, DISTS[7]).float().abs()
    assert (sub <= info.tiny).all() and ((sub > 0) & (sub < info.tiny)).sum() > 4000


def test_nonfinite_injection():
    x = values(generator(1), [10_000], torch.float32,
               {"kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.05, "inf": 0.05}})
    assert 300 < x.isnan().sum() < 700
    assert 300 < x.isinf().sum() < 700
    assert (x == float("inf")).any() and (x == float("-inf")).any()


def test_sparse_indices_window_prefix_scattered_rows_and_padding():
    spec = {"n_rows": 100, "k": 16, "n_valid": 10, "window": 4, "ragged": False,
            "duplicates": False, "sorted": False, "out_of_range": False}
    idx = sparse_indices(generator(3), 5, spec)
    assert idx.dtype == torch.int32 and idx.shape == (5, 16)
    for row in idx.tolist():
        assert row[:4] == [99, 98, 97, 96]
        assert all(0 <= i < 96 for i in row[4:10])
        assert len(set(row[:10])) == 10
        assert row[10:] == [-1] * 6


def test_sparse_indices_ragged_sorted_duplicates_out_of_range():
    spec = {"n_rows": 8, "k": 64, "n_valid": 64, "window": 0, "ragged": True,
            "duplicates": True, "sorted": True, "out_of_range": True}
    idx = sparse_indices(generator(4), 32, spec)
    lengths = (idx != -1).sum(1)
    assert lengths.unique().numel() > 1
    assert (idx >= 8).any()
    in_range = [[i for i in row if 0 <= i < 8] for row in idx.tolist()]
    assert any(len(set(r)) < len(r) for r in in_range)


def test_all_invalid_index_set():
    spec = {"n_rows": 8, "k": 4, "n_valid": 0, "window": 2}
    assert (sparse_indices(generator(0), 3, spec) == -1).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: values(generator(0), [2], torch.float32, {"kind": "cauchy"}),
         "unknown distribution kind 'cauchy'"),
        (lambda: values(generator(0), [2], torch.float32, {"kind": "normal"}),
         "distribution {'kind': 'normal'} lacks 'scale'"),
        (lambda: values(generator(0), [2], torch.float32, [1, 2]), "distribution [1, 2] is not a mapping"),
        (lambda: generator("7"), "seed '7' is not an integer"),
        (lambda: dtype_of("float8"), "unknown dtype 'float8'"),
        (lambda: sparse_indices(generator(0), 1, {"n_rows": 4}), "sparse index set"),
    ],
    ids=["kind", "missing-field", "not-mapping", "seed", "dtype", "index-set"],
)
def test_malformed_cases_raise_case_error(call, message):
    with pytest.raises(CaseError) as info:
        call()
    assert str(info.value).startswith(message)
